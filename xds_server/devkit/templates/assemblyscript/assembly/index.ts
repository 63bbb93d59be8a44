// The filter: adds response headers and counts requests.
export * from "@solo-io/proxy-runtime/proxy"; // the proxy-wasm ABI exports Envoy calls
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, Counter,
} from "@solo-io/proxy-runtime";

// Edit these and save: `xds-server dev` rebuilds and swaps the filter in Envoy.
const HEADER = "__HEADER__";          // its value is the plugin configuration
const VERSION = "1";                  // sent as __HEADER__-version

class FilterRoot extends RootContext {
  requests: Counter | null = null;     // defined once, on the first request

  createContext(context_id: u32): Context {
    if (this.requests == null) {
      this.requests = new Counter("__METRIC__");
    }
    return new Filter(context_id, this);
  }
}

class Filter extends Context {
  root: FilterRoot;
  userAgent: string = "";

  constructor(context_id: u32, root_context: FilterRoot) {
    super(context_id, root_context);
    this.root = root_context;
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.userAgent = stream_context.headers.request.get("user-agent");
    const requests = this.root.requests;
    if (requests != null) {
      requests.increment(1);
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const configuration = this.root.getConfiguration();
    stream_context.headers.response.add(HEADER, configuration == "" ? "hello" : configuration);
    stream_context.headers.response.add(HEADER + "-version", VERSION);
    if (this.userAgent != "") {
      stream_context.headers.response.add(HEADER + "-user-agent", this.userAgent);
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new FilterRoot(context_id); }, "__ROOT_ID__");
