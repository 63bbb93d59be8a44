// xds-server status page: renders /api/v1/filters, their history and health and
// /api/v1/proxies, and refetches them (debounced) whenever /api/v1/events reports a change,
// and every few seconds for the live health sparklines.
// Every server string goes into the DOM as text (textContent), never as HTML.
"use strict";

(() => {
  const REFRESH_DELAY_MS = 150;   // debounce: a burst of events costs one refetch
  const HISTORY_LIMIT = 20;       // revisions per filter, to name versions by revision
  const MAX_EVENTS = 40;          // lines kept in "Recent events"
  const RECONNECT_MS = 3000;      // after the stream was closed for good
  const HEALTH_WINDOW_S = 300;    // health shown per revision: the last 5 minutes
  const HEALTH_POLL_MS = 5000;    // telemetry changes without events: poll for sparklines
  // The SVG namespace, from the page's own <svg> (no URL literal in this file).
  const SVG = document.getElementById("svg-ns").namespaceURI;

  const $ = (id) => document.getElementById(id);

  // When the admin API requires tokens, open the page as /?access_token=<read token>: the
  // token moves out of the address bar into this tab's sessionStorage, and goes along
  // as a bearer header (fetch) or a query parameter (EventSource cannot set headers).
  const TOKEN = (() => {
    const params = new URLSearchParams(location.search);
    const given = params.get("access_token");
    if (given) {
      sessionStorage.setItem("xds-server-token", given);
      params.delete("access_token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
    }
    return given || sessionStorage.getItem("xds-server-token") || "";
  })();

  // el("td", {className: "x", title: "y", data: {node: "e1"}}, "text", childNode, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "data") Object.assign(node.dataset, value);
      else if (key === "hidden") node.hidden = Boolean(value);
      else node.setAttribute(key === "className" ? "class" : key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const when = (at) => (at ? new Date(at * 1000).toLocaleTimeString() : "");
  const badge = (text, kind) => el("span", {className: `badge ${kind || ""}`.trim()}, text);
  const code = (text, className) => el("code", {className}, text);

  function sourceText(source) {
    if (!source) return "";
    return Object.entries(source).map(([k, v]) => `${k}: ${v}`).join(", ");
  }

  // {node_id: "edge-*", cluster: "*", metadata: {role: "edge"}} -> "node_id=edge-* role=edge"
  function selectorText(selector) {
    const s = selector || {};
    const parts = ["node_id", "cluster"].filter((k) => s[k] && s[k] !== "*").map((k) => `${k}=${s[k]}`);
    for (const [k, v] of Object.entries(s.metadata || {}).sort()) {
      parts.push(`${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
    }
    return parts.length ? parts.join(" ") : "all nodes";
  }

  // ---- data ------------------------------------------------------------------------

  async function getJSON(url) {
    const headers = {Accept: "application/json"};
    if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
    const response = await fetch(url, {cache: "no-store", headers});
    if (response.status === 401) {
      throw new Error(`${url}: HTTP 401: open this page as /?access_token=<a read token>`);
    }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function load() {
    const [filters, proxies] = await Promise.all([getJSON("/api/v1/filters"), getJSON("/api/v1/proxies")]);
    const histories = await Promise.all(filters.filters.map((f) =>
      getJSON(`/api/v1/filters/${encodeURIComponent(f.name)}/history?limit=${HISTORY_LIMIT}`)
        .then((h) => h.history, () => [])));
    const healths = await Promise.all(filters.filters.map((f) =>
      getJSON(`/api/v1/filters/${encodeURIComponent(f.name)}/health?window=${HEALTH_WINDOW_S}`)
        .then((h) => h.revisions || [], () => [])));
    const history = new Map(filters.filters.map((f, i) => [f.name, histories[i]]));
    const health = new Map(filters.filters.map((f, i) => [f.name, healths[i]]));
    return {filters: filters.filters, proxies: proxies.proxies, history, health};
  }

  // filter name -> version -> newest revision that produced it
  function revisionIndex(data) {
    const index = new Map();
    for (const f of data.filters) {
      const byVersion = new Map();
      for (const rev of [...(data.history.get(f.name) || [])].reverse()) {
        for (const v of rev.versions || []) byVersion.set(v, rev.revision);
      }
      for (const s of f.specs) byVersion.set(s.version, f.revision);
      index.set(f.name, byVersion);
    }
    return index;
  }

  function previousRevision(filter, history) {
    return (history || []).find((r) => r.revision < filter.revision && (r.specs || []).length > 0) || null;
  }

  // ---- rendering -------------------------------------------------------------------

  function versionLabel(index, name, version) {
    if (!version) return el("span", {className: "muted"}, "none");
    const rev = index.get(name)?.get(version);
    return el("span", {}, code(version, "version"), rev ? el("span", {className: "muted"}, ` (rev ${rev})`) : "");
  }

  function specRow(kind, revision, spec, version, digest, module) {
    return el("tr", {className: kind, data: {version: version || ""}},
      el("td", {}, kind === "current" ? badge("current", "ok") : badge("previous")),
      el("td", {}, `rev ${revision}`),
      el("td", {}, code(version || "", "version")),
      el("td", {}, code(digest || "", "digest"),
        module && module.size ? el("div", {className: "muted"}, `${module.size} bytes · ${module.layout || ""}`) : ""),
      el("td", {className: "mono"}, sourceText(spec.source)),
      el("td", {}, selectorText(spec.selector), spec.canary ? el("div", {}, badge("canary", "warn"),
        " ", selectorText(spec.canary)) : ""),
      el("td", {}, spec.delivery || ""));
  }

  // An SVG sparkline of `values` (one per bucket), scaled to `top`.
  function sparkline(values, top, className) {
    const width = 120, height = 22;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", `spark ${className}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const step = values.length > 1 ? width / (values.length - 1) : width;
    const points = values.map((v, i) =>
      `${(i * step).toFixed(1)},${(height - 1 - (top ? (v / top) * (height - 2) : 0)).toFixed(1)}`);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
    return svg;
  }

  const ms = (v) => (typeof v === "number" ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : "—");

  function healthRow(h) {
    const requests = h.series.map((p) => p.requests);
    const errors = h.series.map((p) => p.errors_5xx + 0);
    const top = Math.max(1, ...requests);
    const custom = Object.entries(h.custom_metrics || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    return el("tr", {className: `health${h.failing ? " failing" : ""}`,
      data: {revision: String(h.revision), canary: String(h.canary), failing: String(h.failing)}},
      el("td", {}, `rev ${h.revision}`, h.canary ? [" ", badge("canary", "warn")] : ""),
      el("td", {}, h.failing ? badge("failing at runtime", "bad") : badge("ok", "ok")),
      el("td", {className: "num"}, String(h.proxies)),
      el("td", {className: "num requests"}, String(h.requests)),
      el("td", {className: "num errors"}, `${h.errors_5xx} (${(100 * h.error_rate).toFixed(1)}%)`),
      el("td", {className: "num"}, `${ms(h.latency_ms.p50)} / ${ms(h.latency_ms.p99)}`),
      el("td", {className: "num vm-failures"}, String(h.vm_failures)),
      el("td", {className: "sparks"}, sparkline(requests, top, "spark-req"), sparkline(errors, top, "spark-err")),
      el("td", {className: "mono custom"}, custom));
  }

  function renderHealth(entries) {
    if (!entries || !entries.length) {
      return el("p", {className: "muted health-none"}, `no telemetry in the last ${HEALTH_WINDOW_S / 60} minutes`);
    }
    return el("table", {className: "health-table"},
      el("thead", {}, el("tr", {}, ["revision", "runtime", "proxies", "requests", "5xx", "p50 / p99", "VM failures",
        "requests · errors", "custom metrics"].map((h) => el("th", {}, h)))),
      el("tbody", {}, entries.map(healthRow)));
  }

  function renderFilter(f, history, index, health) {
    const prev = previousRevision(f, history);
    const rows = f.specs.map((s) => specRow("current", f.revision, s, s.version, s.module.sha256, s.module));
    if (prev) {
      prev.specs.forEach((s, i) => rows.push(specRow("previous", prev.revision, s, prev.versions[i], prev.digests[i])));
    }
    const counts = f.proxies || {total: 0, acked: 0, nacked: 0};
    const rollout = Object.entries(f.rollout || {}).map(([v, n]) =>
      el("span", {}, versionLabel(index, f.name, v), ` × ${n}`));
    const failing = (health || []).some((h) => h.failing);
    return el("article", {className: `card filter${failing ? " failing" : ""}`, data: {filter: f.name}},
      el("div", {className: "card-head"},
        el("h3", {}, f.name),
        badge(`rev ${f.revision}`),
        failing ? badge("failing at runtime", "bad") : "",
        f.canary ? badge("canary", "warn") : "",
        counts.nacked ? badge(`${counts.nacked} NACKed`, "bad") : "",
        el("span", {className: "muted"}, `${f.action} by ${f.author} at ${when(f.updated_at)}`),
        f.summary ? el("span", {className: "muted"}, `— ${f.summary}`) : ""),
      f.error ? el("p", {className: "nack-box filter-error"}, `last change refused at ${when(f.error_at)}: ${f.error}`) : "",
      el("table", {},
        el("thead", {}, el("tr", {}, ["", "revision", "xDS version", "module sha256", "source", "selector", "delivery"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)),
      el("div", {className: "facts"},
        el("span", {}, "proxies: ", el("b", {}, String(counts.total)), " sent, ",
          el("b", {className: counts.acked ? "ok" : ""}, String(counts.acked)), " ACKed, ",
          el("b", {className: counts.nacked ? "nack" : ""}, String(counts.nacked)), " NACKed"),
        el("span", {className: "rollout"}, "running: ", rollout.length ? rollout : el("span", {}, "nothing ACKed yet")),
        f.good_revision ? el("span", {}, "last good: ", el("b", {}, `rev ${f.good_revision}`)) : "",
        el("span", {className: "canary"}, "canary: ", f.canary
          ? el("b", {className: "warn"}, "staged, waiting for promote") : el("b", {}, "none")),
        f.canary && f.base_versions.length ? el("span", {}, "other nodes keep: ",
          f.base_versions.map((v) => versionLabel(index, f.name, v))) : "",
        prev ? "" : el("span", {}, "no previous revision")),
      el("div", {className: "health", data: {healthFor: f.name}},
        el("h4", {}, `Health, last ${HEALTH_WINDOW_S / 60} minutes (all proxies)`), renderHealth(health)));
  }

  function renderResource(name, r, index) {
    const nacked = r.state === "NACKED";
    const stateKind = {ACKED: "ok", NACKED: "bad", STALE: "warn"}[r.state] || "";
    return el("div", {className: `resource${nacked ? " nack" : ""}`, data: {resource: name, state: r.state}},
      el("b", {}, name), " ", badge(r.state, stateKind), " runs ",
      el("span", {className: "runs"}, versionLabel(index, name, r.version_acked)),
      r.version_sent && r.version_sent !== r.version_acked
        ? el("span", {className: "muted"}, " · sent ", versionLabel(index, name, r.version_sent)) : "",
      // The NACK of what it was sent last is a problem now (red); an older one is history.
      r.last_nack ? el("div", {className: nacked ? "nack-box nack-message" : "old-nack"},
        `${nacked ? "" : "earlier "}NACK of ${r.last_nack.version} at ${when(r.last_nack.at)}: ${r.last_nack.message}`)
        : "");
  }

  function renderProxies(proxies, index) {
    if (!proxies.length) return el("p", {className: "muted"}, "No Envoy has connected yet.");
    return el("div", {className: "card"}, el("table", {},
      el("thead", {}, el("tr", {}, ["node", "cluster", "connection", "Envoy", "filters"].map((h) => el("th", {}, h)))),
      el("tbody", {}, proxies.map((p) => {
        const resources = Object.entries(p.resources);
        const nacked = resources.some(([, r]) => r.state === "NACKED");
        return el("tr", {className: `proxy${nacked ? " proxy-nacked" : ""}`,
          data: {node: p.node_id, connected: String(p.connected)}},
        el("td", {}, code(p.node_id)),
        el("td", {}, p.cluster || el("span", {className: "muted"}, "—")),
        el("td", {}, p.connected ? badge("connected", "ok") : badge("disconnected"),
          el("div", {className: "muted"}, p.connected ? `since ${when(p.connected_since)} from ${p.address}`
            : `at ${when(p.disconnected_at)}`)),
        el("td", {className: "muted"}, p.envoy_version || ""),
        el("td", {}, resources.length ? resources.map(([n, r]) => renderResource(n, r, index))
          : el("span", {className: "muted"}, "nothing requested")));
      }))));
  }

  function render(data) {
    const index = revisionIndex(data);
    $("filter-count").textContent = `(${data.filters.length})`;
    $("proxy-count").textContent = `(${data.proxies.filter((p) => p.connected).length} connected)`;
    $("filters").replaceChildren(...(data.filters.length
      ? data.filters.map((f) => renderFilter(f, data.history.get(f.name), index, data.health.get(f.name)))
      : [el("p", {className: "muted"}, "No filters are served.")]));
    $("proxies").replaceChildren(renderProxies(data.proxies, index));
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  }

  // ---- refresh (debounced, one at a time) -------------------------------------------

  let timer = null;
  let running = false;
  let again = false;

  function scheduleRefresh() {
    if (timer !== null) return;
    timer = setTimeout(async () => {
      timer = null;
      if (running) { again = true; return; }
      running = true;
      try {
        render(await load());
        $("error").hidden = true;
      } catch (err) {
        $("error").textContent = `Could not load the status: ${err.message}`;
        $("error").hidden = false;
      } finally {
        running = false;
        if (again) { again = false; scheduleRefresh(); }
      }
    }, REFRESH_DELAY_MS);
  }

  // ---- live events -----------------------------------------------------------------

  function setLive(state) {
    const labels = {"live-on": "live", reconnecting: "reconnecting", offline: "offline", connecting: "connecting"};
    $("live").className = `live ${state}`;
    $("live").dataset.state = state;
    $("live-text").textContent = labels[state];
  }

  function logEvent(ev) {
    let text;
    if (ev.source === "status") {
      const res = Object.entries(ev.resources || {}).map(([n, v]) => `${n}@${v}`).join(", ");
      text = `${ev.kind.toUpperCase()} ${ev.node_id}${res ? ` ${res}` : ""}${ev.message ? `: ${ev.message}` : ""}`;
    } else if (ev.source === "filter") {
      text = `${ev.name} ${ev.kind} rev ${ev.revision} (${ev.action} by ${ev.author})${ev.message ? `: ${ev.message}` : ""}`;
    } else if (ev.kind === "resync") {
      text = `fell behind: ${ev.dropped} events skipped, reloaded`;
    } else {
      return;
    }
    const bad = ev.kind === "nack" || ev.kind === "rejected";
    const list = $("events");
    list.prepend(el("li", {className: bad ? "nack" : "", data: {kind: ev.kind}}, el("time", {}, when(ev.at)), text));
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function connect() {
    const source = new EventSource(
      "/api/v1/events" + (TOKEN ? `?access_token=${encodeURIComponent(TOKEN)}` : ""));
    source.onopen = () => { setLive("live-on"); scheduleRefresh(); };  // catch up on what was missed
    source.onmessage = (message) => {
      let ev;
      try { ev = JSON.parse(message.data); } catch { return; }
      if (ev.source !== "server" || ev.kind === "resync") scheduleRefresh();
      logEvent(ev);
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setLive("offline");
        setTimeout(connect, RECONNECT_MS);
      } else {
        setLive("reconnecting");
      }
    };
  }

  scheduleRefresh();
  connect();
  setInterval(scheduleRefresh, HEALTH_POLL_MS);
})();
