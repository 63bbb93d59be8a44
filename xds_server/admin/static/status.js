// xds-server status page. Summary first: per filter, versions by state and cluster, NACKs
// grouped by Envoy's message, health per revision (/api/v1/summary); the standalone
// fleet's Envoy resources (listeners, routes, clusters, endpoints) as a compact table from
// the same summary, with their proxies by state and NACK messages. Then the filters'
// details (/api/v1/filters, history, health) and the proxies a page at a time, searched and
// filtered on the server (/api/v1/proxies). Live: /api/v1/events?feed=fleet sends coalesced
// ticks (at most a few a second) carrying the summary and each changed proxy; the page
// applies them in place and refetches only the filters on a filter change and the visible
// page when the set of proxies it shows may have changed.
// Every server string goes into the DOM as text (textContent), never as HTML.
"use strict";

(() => {
  const REFRESH_DELAY_MS = 150;   // debounce: a burst of filter events costs one refetch
  const PAGE_REFRESH_MS = 1000;   // at most one refetch of the visible proxy page a second
  const HISTORY_LIMIT = 20;       // revisions per filter, to name versions by revision
  const MAX_EVENTS = 40;          // lines kept in "Recent events"
  const RECONNECT_MS = 3000;      // after the stream was closed for good
  const HEALTH_WINDOW_S = 300;    // health shown per revision: the last 5 minutes
  const HEALTH_POLL_MS = 5000;    // telemetry changes without events: poll for health
  const PAGE_SIZE = 50;           // proxies per page
  const STATES = ["ACKED", "NACKED", "STALE", "REQUESTED"];
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

  const state = {
    summary: null,          // the newest summary (by seq); health from the last poll
    health: new Map(),      // filter -> summary health rows (from /api/v1/summary)
    filters: null,          // {filters, history, health} for the detail cards
    rows: new Map(),        // node id -> proxy view shown on the current page
    page: {cursor: "", stack: [], next: null, total: 0, known: -1},
  };

  async function loadFilters() {
    const filters = await getJSON("/api/v1/filters");
    const histories = await Promise.all(filters.filters.map((f) =>
      getJSON(`/api/v1/filters/${encodeURIComponent(f.name)}/history?limit=${HISTORY_LIMIT}`)
        .then((h) => h.history, () => [])));
    const healths = await Promise.all(filters.filters.map((f) =>
      getJSON(`/api/v1/filters/${encodeURIComponent(f.name)}/health?window=${HEALTH_WINDOW_S}`)
        .then((h) => h.revisions || [], () => [])));
    return {
      filters: filters.filters,
      history: new Map(filters.filters.map((f, i) => [f.name, histories[i]])),
      health: new Map(filters.filters.map((f, i) => [f.name, healths[i]])),
    };
  }

  function proxyQuery() {
    const params = new URLSearchParams({limit: String(PAGE_SIZE)});
    const fields = {node: "proxy-search", cluster: "proxy-cluster", filter: "proxy-filter", state: "proxy-state"};
    for (const [key, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (value) params.set(key, value);
    }
    if (state.page.cursor) params.set("cursor", state.page.cursor);
    return params;
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

  const narrowed = () => ["proxy-cluster", "proxy-filter", "proxy-state"].some((id) => $(id).value.trim());

  // ---- rendering -------------------------------------------------------------------

  function versionLabel(index, name, version) {
    if (!version) return el("span", {className: "muted"}, "none");
    const rev = index.get(name)?.get(version);
    return el("span", {}, code(version, "version"), rev ? el("span", {className: "muted"}, ` (rev ${rev})`) : "");
  }

  // Who signed the module (its verify policy's verdict), or nothing when no policy covers it.
  function signerText(verdict) {
    if (!verdict || !verdict.image) return "";
    if (!verdict.verified) return el("div", {className: "muted signer"}, "unverified: " + (verdict.reason || ""));
    const who = verdict.key ? `key ${verdict.key.split("/").pop()}` : `${verdict.identity} (${verdict.issuer})`;
    return el("div", {className: "muted signer"}, `signed by ${who} · ${verdict.format}`);
  }

  function specRow(kind, revision, spec, version, digest, module, verdict) {
    return el("tr", {className: kind, data: {version: version || ""}},
      el("td", {}, kind === "current" ? badge("current", "ok") : badge("previous")),
      el("td", {}, `rev ${revision}`),
      el("td", {}, code(version || "", "version")),
      el("td", {}, code(digest || "", "digest"),
        module && module.size ? el("div", {className: "muted"}, `${module.size} bytes · ${module.layout || ""}`) : "",
        signerText(verdict)),
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

  function renderFilter(f, history, index, health, summary) {
    const prev = previousRevision(f, history);
    const rows = f.specs.map((s) => specRow("current", f.revision, s, s.version, s.module.sha256, s.module, s.verdict));
    if (prev) {
      prev.specs.forEach((s, i) => rows.push(specRow("previous", prev.revision, s, prev.versions[i], prev.digests[i],
        undefined, (prev.verdicts || [])[i])));
    }
    // Counts follow the fleet feed (the summary), not the filter view fetched with the card.
    const t = summary ? summary.totals : null;
    const counts = t ? {total: t.ACKED + t.NACKED + t.STALE, acked: t.ACKED, nacked: t.NACKED}
      : (f.proxies || {total: 0, acked: 0, nacked: 0});
    const running = summary ? summary.versions.filter((v) => v.running).map((v) => [v.version, v.running])
      : Object.entries(f.rollout || {});
    const rollout = running.map(([v, n]) => el("span", {}, versionLabel(index, f.name, v), ` × ${n}`));
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
        prev ? "" : el("span", {}, "no previous revision"),
        analysisFacts(f.analysis),
        f.debug ? el("span", {className: "debug", data: {node: f.debug.node}}, "debug override: nodes ",
          el("b", {className: "warn"}, f.debug.node), ` until ${when(f.debug.expires_at)}`) : ""),
      el("div", {className: "health", data: {healthFor: f.name}},
        el("h4", {}, `Health, last ${HEALTH_WINDOW_S / 60} minutes (all proxies)`), renderHealth(health)));
  }

  // The live state of a health-gated rollout: phase, interval n of m, last rates.
  function analysisFacts(a) {
    if (!a) return "";
    const kind = {"rolled-back": "bad", "failed": "bad", "promoted": "ok", "verified": "ok"}[a.phase] || "warn";
    const last = a.last;
    const rate = (side) => side ? `${(side.error_rate * 100).toFixed(1)}% of ${side.requests}` : "-";
    return el("span", {className: "analysis", data: {phase: a.phase}}, `analysis of rev ${a.revision}: `,
      el("b", {className: kind}, a.phase), ` · interval ${a.interval} of ${a.intervals} passed (${a.interval_seconds}s each)`,
      last ? ` · last: ${last.verdict}, errors ${rate(last.canary)}` +
        (last.baseline ? `, baseline ${rate(last.baseline)}` : "") : "");
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

  // ---- summary ---------------------------------------------------------------------

  function stateCells(counts) {
    return STATES.map((s) => el("td", {className: `num state-${s.toLowerCase()}`,
      data: {state: s}}, String(counts[s] || 0)));
  }

  function clusterText(clusters) {
    return Object.entries(clusters || {}).sort(([a], [b]) => a.localeCompare(b, undefined, {numeric: true}))
      .map(([c, n]) => `${c || "(none)"}: ` + STATES.filter((s) => n[s]).map((s) => `${n[s]} ${s}`).join(", "))
      .join(" · ");
  }

  function nackGroup(name, g) {
    const more = g.count > g.nodes.length ? ` and ${g.count - g.nodes.length} more` : "";
    const show = el("button", {type: "button", className: "show-nacked", data: {filter: name}}, "list them");
    show.addEventListener("click", () => showProxies(name, "NACKED"));
    return el("li", {className: "nack-group nack-box", data: {count: String(g.count)}},
      el("b", {className: "nack-count"}, `${g.count} ${g.count === 1 ? "proxy" : "proxies"}`),
      ` NACKed ${g.versions.join(", ")}: `, el("span", {className: "nack-message"}, g.message), " ", show,
      el("div", {className: "muted nodes"}, `${g.nodes.join(", ")}${more}`));
  }

  // Narrow the proxy list to one filter and state (from a summary card) and go there.
  function showProxies(name, st) {
    fillFilterChoices();
    $("proxy-filter").value = name;
    $("proxy-state").value = st;
    resetPage();
    $("proxies-title").scrollIntoView();
  }

  function summaryHealth(rows) {
    if (!rows || !rows.length) return "";
    return el("div", {className: "summary-health"}, rows.map((h) =>
      el("span", {className: `rev-health${h.failing ? " failing" : ""}`, data: {revision: String(h.revision)}},
        `rev ${h.revision}${h.canary ? " (canary)" : ""}: `,
        h.failing ? badge("failing at runtime", "bad") : badge("ok", "ok"),
        ` ${h.requests} requests, ${(100 * h.error_rate).toFixed(1)}% 5xx, ${h.vm_failures} VM failures`)));
  }

  function renderSummaryFilter(f, index) {
    const t = f.totals;
    const health = state.health.get(f.name) || f.health || [];
    const failing = health.some((h) => h.failing);
    const rows = f.versions.map((v) => {
      const all = t.connected > 0 && v.current && v.ACKED === t.connected;
      return el("tr", {className: `version${v.current ? " current" : ""}${all ? " all-acked" : ""}`,
        data: {version: v.version, acked: String(v.ACKED), nacked: String(v.NACKED), running: String(v.running)}},
        el("td", {}, v.version ? versionLabel(index, f.name, v.version) : el("span", {className: "muted"}, "nothing sent")),
        el("td", {}, v.current ? badge(all ? "all ACKed" : "current", all ? "ok" : "") : ""),
        el("td", {className: "num running"}, String(v.running)),
        stateCells(v),
        el("td", {className: "muted clusters"}, clusterText(v.clusters)));
    });
    return el("article", {className: `card summary${f.nacks.length || failing ? " attention" : ""}`,
      data: {summary: f.name, connected: String(t.connected)}},
      el("div", {className: "card-head"},
        el("h3", {}, f.name), f.served ? badge(`rev ${f.revision}`) : badge("not served", "warn"),
        t.NACKED ? badge(`${t.NACKED} NACKed`, "bad") : "",
        failing ? badge("failing at runtime", "bad") : "",
        f.canary ? badge("canary", "warn") : "",
        el("span", {className: "muted"}, `${t.connected} connected` + (t.disconnected ? `, ${t.disconnected} gone` : ""))),
      f.nacks.length ? el("ul", {className: "nack-groups"}, f.nacks.map((g) => nackGroup(f.name, g))) : "",
      summaryHealth(health),
      el("table", {className: "versions"},
        el("thead", {}, el("tr", {}, ["xDS version", "", "running", ...STATES, "by cluster"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
  }

  // One row per Envoy resource: revision, current version, connected proxies by state,
  // the NACK messages (with a link to the NACKing proxies).
  function resourceRow(r) {
    const t = r.totals;
    const nacks = r.nacks.map((g) => {
      const show = el("button", {type: "button", className: "show-nacked", data: {filter: `${r.kind}/${r.name}`}}, "list them");
      show.addEventListener("click", () => showProxies(`${r.kind}/${r.name}`, "NACKED"));
      return el("div", {className: "nack-group nack-box", data: {count: String(g.count)}},
        el("b", {className: "nack-count"}, `${g.count} ${g.count === 1 ? "proxy" : "proxies"}`),
        ` NACKed ${g.versions.join(", ")}: `, el("span", {className: "nack-message"}, g.message), " ", show);
    });
    return el("tr", {className: `resource-row${t.NACKED ? " attention" : ""}`,
      data: {resource: `${r.kind}/${r.name}`, revision: String(r.revision), acked: String(t.ACKED),
        nacked: String(t.NACKED)}},
      el("td", {className: "muted"}, r.kind),
      el("td", {}, code(r.name)),
      el("td", {}, r.served ? `rev ${r.revision}` : badge("not served", "warn")),
      el("td", {}, r.current_versions.map((v) => code(v, "version"))),
      stateCells(t),
      el("td", {className: "num"}, String(t.connected) + (t.disconnected ? ` (+${t.disconnected} gone)` : "")),
      el("td", {}, nacks));
  }

  function renderResources(resources) {
    $("resources-section").hidden = !resources.length;
    $("resource-count").textContent = resources.length ? `(${resources.length})` : "";
    if (!resources.length) { $("resources").replaceChildren(); return; }
    $("resources").replaceChildren(el("div", {className: "card"}, el("table", {className: "resources"},
      el("thead", {}, el("tr", {}, ["kind", "name", "revision", "xDS version", ...STATES, "connected", "NACKs"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, resources.map(resourceRow)))));
  }

  function renderSummary() {
    const sum = state.summary;
    if (!sum) return;
    const index = state.filters ? revisionIndex(state.filters) : new Map();
    $("summary").replaceChildren(...(sum.filters.length ? sum.filters.map((f) => renderSummaryFilter(f, index))
      : [el("p", {className: "muted"}, "No filters are served and no proxy asked for one.")]));
    renderResources(sum.resources || []);
    $("proxy-count").textContent = `(${sum.proxies.connected} connected of ${sum.proxies.known})`;
    const seen = window.__xdsAllAcked || (window.__xdsAllAcked = {});
    for (const f of sum.filters) {
      for (const v of f.versions) {
        const key = `${f.name}@${v.version}`;
        if (v.current && f.totals.connected > 0 && v.ACKED === f.totals.connected && !(key in seen)) {
          seen[key] = Date.now() / 1000;  // when this page first showed everyone on it
        }
      }
    }
    if (!window.__xdsFirstSummary) window.__xdsFirstSummary = performance.now();
    document.body.dataset.summarySeq = String(sum.seq);
    renderFilterCards();
  }

  function setSummary(sum) {
    if (state.summary && sum.seq < state.summary.seq) return;
    state.summary = sum;
    renderSummary();
    fillFilterChoices();
  }

  function renderFilterCards() {
    const data = state.filters;
    if (!data) return;
    const index = revisionIndex(data);
    const bySummary = new Map((state.summary ? state.summary.filters : []).map((f) => [f.name, f]));
    $("filter-count").textContent = `(${data.filters.length})`;
    $("filters").replaceChildren(...(data.filters.length
      ? data.filters.map((f) => renderFilter(f, data.history.get(f.name), index, data.health.get(f.name),
        bySummary.get(f.name)))
      : [el("p", {className: "muted"}, "No filters are served.")]));
  }

  // ---- proxies ---------------------------------------------------------------------

  function proxyRow(p, index) {
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
  }

  function renderProxies() {
    const index = state.filters ? revisionIndex(state.filters) : new Map();
    const views = [...state.rows.values()];
    const pg = state.page;
    const first = pg.stack.length * PAGE_SIZE;
    $("proxy-range").textContent = pg.total ? `${first + 1}–${first + views.length} of ${pg.total}` : "none match";
    $("proxy-prev").disabled = !pg.stack.length;
    $("proxy-next").disabled = !pg.next;
    if (!views.length) {
      $("proxies").replaceChildren(el("p", {className: "muted"},
        state.summary && state.summary.proxies.known ? "No proxy matches." : "No Envoy has connected yet."));
      return;
    }
    $("proxies").replaceChildren(el("div", {className: "card"}, el("table", {},
      el("thead", {}, el("tr", {}, ["node", "cluster", "connection", "Envoy", "filters"].map((h) => el("th", {}, h)))),
      el("tbody", {id: "proxy-rows"}, views.map((p) => proxyRow(p, index))))));
  }

  async function loadPage() {
    const answer = await getJSON(`/api/v1/proxies?${proxyQuery()}`);
    state.rows = new Map(answer.proxies.map((p) => [p.node_id, p]));
    state.page.next = answer.next_cursor;
    state.page.total = answer.total;
    state.page.known = state.summary ? state.summary.proxies.known : -1;
    renderProxies();
    document.body.dataset.pageLoads = String(Number(document.body.dataset.pageLoads || 0) + 1);
  }

  // A tick's change [node, seq, connected, {name: [state, acked, sent = acked, nack = ""]}],
  // applied to the row on this page when newer than what it shows.
  function applyChange(change, at, index) {
    const [node, seq, connected, resources] = change;
    const view = state.rows.get(node);
    if (!view || seq <= (view.seq || 0)) return false;
    view.seq = seq;
    if (connected === null) return true;  // forgotten: the page refetch drops it
    if (view.connected !== connected) {
      if (connected) view.connected_since = at; else view.disconnected_at = at;
    }
    view.connected = connected;
    for (const [name, [st, acked, sent = acked, message = ""]] of Object.entries(resources)) {
      const r = view.resources[name] || (view.resources[name] = {type_url: ""});
      r.state = st;
      r.version_acked = acked;
      r.version_sent = sent;
      if (message) r.last_nack = {version: sent, message, at};
    }
    const old = document.querySelector(`#proxy-rows tr.proxy[data-node="${CSS.escape(node)}"]`);
    if (old) old.replaceWith(proxyRow(view, index));
    return false;
  }

  function applyTick(tick) {
    setSummary(tick.summary);
    const index = state.filters ? revisionIndex(state.filters) : new Map();
    let refetch = false;
    for (const change of tick.changes) refetch = applyChange(change, tick.at, index) || refetch;
    // Which proxies match may have changed: refetch this page (at most once a second).
    if (refetch || (tick.changes.length && narrowed()) || tick.summary.proxies.known !== state.page.known) {
      schedulePage();
    }
    for (const ev of tick.events) logEvent(ev);
    if (tick.events_dropped) logEvent({source: "server", kind: "more", dropped: tick.events_dropped, at: tick.at});
  }

  // ---- refreshes (one at a time each) ----------------------------------------------

  function throttled(run, delay) {
    let timer = null, running = false, again = false;
    const schedule = () => {
      if (timer !== null) return;
      timer = setTimeout(async () => {
        timer = null;
        if (running) { again = true; return; }
        running = true;
        try {
          await run();
          $("error").hidden = true;
        } catch (err) {
          $("error").textContent = `Could not load the status: ${err.message}`;
          $("error").hidden = false;
        } finally {
          running = false;
          if (again) { again = false; schedule(); }
        }
      }, delay);
    };
    return schedule;
  }

  const scheduleSummary = throttled(async () => {
    const sum = await getJSON(`/api/v1/summary?window=${HEALTH_WINDOW_S}`);
    for (const f of sum.filters) state.health.set(f.name, f.health || []);
    if (state.summary && state.summary.seq > sum.seq) renderSummary(); else setSummary(sum);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }, 0);
  const scheduleFilters = throttled(async () => {
    state.filters = await loadFilters();
    renderSummary();
    renderFilterCards();
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  }, REFRESH_DELAY_MS);
  const schedulePage = throttled(loadPage, PAGE_REFRESH_MS);
  const loadPageNow = throttled(loadPage, 0);

  function resetPage() {
    state.page.cursor = "";
    state.page.stack = [];
    loadPageNow();
  }

  function wireControls() {
    let typing = null;
    for (const id of ["proxy-search", "proxy-cluster"]) {
      $(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(resetPage, 200); });
    }
    for (const id of ["proxy-filter", "proxy-state"]) $(id).addEventListener("change", resetPage);
    $("proxy-next").addEventListener("click", () => {
      if (!state.page.next) return;
      state.page.stack.push(state.page.cursor);
      state.page.cursor = state.page.next;
      loadPageNow();
    });
    $("proxy-prev").addEventListener("click", () => {
      if (!state.page.stack.length) return;
      state.page.cursor = state.page.stack.pop();
      loadPageNow();
    });
  }

  function fillFilterChoices() {
    const select = $("proxy-filter");
    const sum = state.summary;
    const names = (sum ? [...sum.filters.map((f) => f.name),
      ...(sum.resources || []).map((r) => `${r.kind}/${r.name}`)] : []).sort();
    const have = [...select.options].map((o) => o.value).filter(Boolean);
    if (names.join("\n") === have.join("\n")) return;
    const chosen = select.value;
    select.replaceChildren(el("option", {value: ""}, "any filter"), ...names.map((n) => el("option", {value: n}, n)));
    select.value = names.includes(chosen) ? chosen : "";
  }

  // ---- live events -----------------------------------------------------------------

  function setLive(state_) {
    const labels = {"live-on": "live", reconnecting: "reconnecting", offline: "offline", connecting: "connecting"};
    $("live").className = `live ${state_}`;
    $("live").dataset.state = state_;
    $("live-text").textContent = labels[state_];
  }

  function logEvent(ev) {
    let text;
    if (ev.source === "status") {
      const res = Object.entries(ev.resources || {}).map(([n, v]) => `${n}@${v}`).join(", ");
      text = `${ev.kind.toUpperCase()} ${ev.node_id}${res ? ` ${res}` : ""}${ev.message ? `: ${ev.message}` : ""}`;
    } else if (ev.source === "filter") {
      text = `${ev.name} ${ev.kind} rev ${ev.revision} (${ev.action} by ${ev.author})${ev.message ? `: ${ev.message}` : ""}`;
    } else if (ev.kind === "resync") {
      text = `fell behind: ${ev.dropped} updates skipped, reloaded`;
    } else if (ev.kind === "more") {
      text = `… and ${ev.dropped} more proxy events`;
    } else {
      return;
    }
    const bad = ev.kind === "nack" || ev.kind === "rejected";
    const list = $("events");
    list.prepend(el("li", {className: bad ? "nack" : "", data: {kind: ev.kind}}, el("time", {}, when(ev.at)), text));
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function connect() {
    const params = new URLSearchParams({feed: "fleet"});
    if (TOKEN) params.set("access_token", TOKEN);
    const source = new EventSource(`/api/v1/events?${params}`);
    source.onopen = () => {  // catch up on what was missed
      setLive("live-on");
      scheduleSummary();
      scheduleFilters();
      loadPageNow();
    };
    source.onmessage = (message) => {
      let ev;
      try { ev = JSON.parse(message.data); } catch { return; }
      if (ev.source === "fleet") {
        applyTick(ev);
      } else if (ev.source === "filter") {
        scheduleFilters();
        logEvent(ev);
      } else if (ev.kind === "resync") {
        scheduleSummary();
        scheduleFilters();
        loadPageNow();
        logEvent(ev);
      }
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

  wireControls();
  scheduleSummary();
  connect();
  setInterval(() => { scheduleSummary(); scheduleFilters(); }, HEALTH_POLL_MS);
})();
