// __NAME__: an HTTP filter for Envoy on the proxy-wasm ABI, with @solo-io/proxy-runtime.
//
// On each response it adds
//   __HEADER__: <plugin configuration, or "hello" when it is empty>
//   __HEADER__-version: VERSION
//   __HEADER__-user-agent: <the request's user-agent header>
// and it counts requests in the counter "__METRIC__" (Envoy's /stats shows it as
// wasmcustom.__METRIC__).
//
// Stay close to this shape: AssemblyScript 0.14's reference counting and this SDK trap
// at run time on some variations (e.g. a field holding the root context), which only
// shows on the second or third request. `xds-server dev` then shows Envoy answering 503.
export * from "@solo-io/proxy-runtime/proxy"; // the proxy-wasm ABI exports Envoy calls
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, Counter,
} from "@solo-io/proxy-runtime";

// Edit these and save: `xds-server dev` rebuilds and swaps the filter in Envoy.
const VERSION = "1";
const HEADER = "__HEADER__";
const VERSION_HEADER = "__HEADER__-version";
const USER_AGENT_HEADER = "__HEADER__-user-agent";

let requests: Counter | null = null; // defined when the first request arrives

class FilterRoot extends RootContext {
  createContext(context_id: u32): Context {
    if (requests == null) {
      requests = new Counter("__METRIC__");
    }
    return new Filter(context_id, this);
  }
}

class Filter extends Context {
  userAgent: string = "";

  constructor(context_id: u32, root_context: FilterRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // Envoy lets a filter read request headers only while they pass: keep what we need.
    this.userAgent = stream_context.headers.request.get("user-agent");
    const counter = requests;
    if (counter != null) {
      counter.increment(1);
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root_context = this.root_context;
    if (root_context.getConfiguration() == "") {
      stream_context.headers.response.add(HEADER, "hello");
    } else {
      stream_context.headers.response.add(HEADER, root_context.getConfiguration());
    }
    stream_context.headers.response.add(VERSION_HEADER, VERSION);
    if (this.userAgent != "") {
      stream_context.headers.response.add(USER_AGENT_HEADER, this.userAgent);
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new FilterRoot(context_id); }, "__ROOT_ID__");
