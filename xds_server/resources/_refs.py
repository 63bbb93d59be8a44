"""What a resource refers to, and the served form of a resource: config sources that
point at this server (ADS) filled in, and wasm filters named by this server given their
`config_discovery` (ECDS), so swapping a filter never touches the listener."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from xds_server.resources._model import ResourceSpec, RouteRule, WasmFilterRef, route_instance

__all__ = ["HCM_TYPE_URL", "References", "per_route_filters", "served_message"]

HCM_TYPE_URL = ("type.googleapis.com/"
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
HTTP_WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
NETWORK_WASM = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
TCP_PROXY_TYPE_URL = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


@dataclass(slots=True)
class References:
    """Names one resource depends on, by kind; `problems` are references that cannot
    be satisfied whatever else exists (a filter entry naming no wasm filter)."""

    routes: set[str] = field(default_factory=set)
    clusters: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)
    filters: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _ads() -> Any:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _ecds(type_url: str) -> Any:
    source = _ads()
    source.initial_fetch_timeout.SetInParent()  # 0s: never serve without the filter
    return config_source_pb2.ExtensionConfigSource(config_source=source, type_urls=[type_url])


def _filter_chains(listener: Any) -> list[Any]:
    """A listener's filter chains, its default chain (when set) last."""
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    return chains


def _hcms(listener: Any) -> Iterator[tuple[Any, Any]]:
    """(network filter entry, its HttpConnectionManager) of every filter chain."""
    for chain in _filter_chains(listener):
        for f in chain.filters:
            if f.HasField("typed_config") and f.typed_config.type_url == HCM_TYPE_URL:
                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                yield f, hcm


def _route_clusters(route_config: Any, refs: References) -> None:
    for vh in route_config.virtual_hosts:
        for r in vh.routes:
            if not r.HasField("route"):
                continue
            action = r.route
            if action.cluster:
                refs.clusters.add(action.cluster)
            for wc in action.weighted_clusters.clusters:
                refs.clusters.add(wc.name)


def _rule_for(rules: tuple[RouteRule, ...], vh: str, route: str) -> RouteRule | None:
    return next((r for r in rules if fnmatch.fnmatchcase(vh, r.virtual_host)
                 and fnmatch.fnmatchcase(route, r.route)), None)


def _filter_config(*, disabled: bool) -> Any:
    return route_components_pb2.FilterConfig(disabled=disabled)


def per_route_filters(route_config: Any, filters: Mapping[str, WasmFilterRef]) -> None:
    """Write each wasm filter's per-route rules into every route, as
    `typed_per_filter_config` entries of `envoy.config.route.v3.FilterConfig` with
    `disabled: true` (the one per-route switch Envoy 1.40 accepts without a per-route
    config, which the wasm filter does not have):

    * a rule with `disabled: true`: the filter is disabled on its routes;
    * a rule with a `configuration`: the filter is disabled there, and its instance with
      that configuration (`route_instance`, its own ECDS resource after it in the
      listener) runs; every instance is disabled on every route its rule does not match.

    Entries the user wrote for a filter are left alone."""
    for vh in route_config.virtual_hosts:
        for route in vh.routes:
            for name, ref in sorted(filters.items()):
                if ref.type != "http" or not ref.routes:
                    continue
                rule = _rule_for(ref.routes, vh.name, route.name)
                chosen = (route_instance(name, rule.configuration)
                          if rule is not None and rule.configuration is not None else None)
                off = {route_instance(name, c) for c in _configurations(ref)} - {chosen}
                if rule is not None:
                    off.add(name)
                for target in sorted(off):
                    if target not in route.typed_per_filter_config:
                        route.typed_per_filter_config[target].Pack(_filter_config(disabled=True))


def _configurations(ref: WasmFilterRef) -> list[str]:
    return sorted({r.configuration for r in ref.routes if r.configuration is not None})


def served_message(spec: ResourceSpec, filters: Mapping[str, WasmFilterRef], refs: References) -> Any:
    """A copy of `spec.message` as served (the spec stays as written); fills `refs`.

    `filters` maps this server's wasm filter names to their type and per-route rules.
    """
    message = spec.message.__class__()
    message.CopyFrom(spec.message)
    if spec.kind == "listeners":
        _listener(message, filters, refs)
    elif spec.kind == "routes":
        _route_clusters(message, refs)
        per_route_filters(message, filters)
    elif spec.kind == "clusters":
        _cluster(message, refs)
    return message


def _listener(listener: Any, filters: Mapping[str, WasmFilterRef], refs: References) -> None:
    for chain in _filter_chains(listener):
        for f in chain.filters:
            if not f.HasField("typed_config") and not f.HasField("config_discovery"):
                _wasm_entry(f, "network", NETWORK_WASM, filters, refs, "network filter")
            elif f.typed_config.type_url == TCP_PROXY_TYPE_URL:
                tcp = tcp_proxy_pb2.TcpProxy()
                f.typed_config.Unpack(tcp)
                refs.clusters.update(c for c in [tcp.cluster, *(w.name for w in tcp.weighted_clusters.clusters)] if c)
    for entry, hcm in _hcms(listener):
        if hcm.HasField("rds"):
            refs.routes.add(hcm.rds.route_config_name)
            if not hcm.rds.HasField("config_source"):
                hcm.rds.config_source.CopyFrom(_ads())
        if hcm.HasField("route_config"):
            _route_clusters(hcm.route_config, refs)
            per_route_filters(hcm.route_config, filters)
        entries: list[Any] = []
        for hf in hcm.http_filters:
            entries.append(hcm_pb2.HttpFilter())
            entries[-1].CopyFrom(hf)
            if (not hf.HasField("typed_config") and not hf.HasField("config_discovery")
                    and _wasm_entry(entries[-1], "http", HTTP_WASM, filters, refs, "http filter")):
                entries.extend(_instances(hf.name, filters[hf.name]))
        del hcm.http_filters[:]
        hcm.http_filters.extend(entries)
        entry.typed_config.Pack(hcm)


def _instances(name: str, ref: WasmFilterRef) -> list[Any]:
    """One HTTP filter entry per distinct per-route configuration of filter `name`,
    right after it: its own ECDS resource, which the routes disable where it does not
    apply (`per_route_filters`)."""
    return [hcm_pb2.HttpFilter(name=route_instance(name, c), config_discovery=_ecds(HTTP_WASM))
            for c in _configurations(ref)]


def _wasm_entry(entry: Any, kind: str, type_url: str, filters: Mapping[str, WasmFilterRef],
                refs: References, what: str) -> bool:
    """An entry with only a name: a wasm filter of this server, served over ECDS.
    Returns whether it was one."""
    found = filters.get(entry.name)
    if found is None:
        refs.problems.append(f"{what} {entry.name!r} has neither typed_config nor config_discovery "
                             "and names no wasm filter of this server")
        return False
    if found.type != kind:
        refs.problems.append(f"{what} {entry.name!r} names a {found.type} wasm filter")
        return False
    refs.filters.add(entry.name)
    entry.config_discovery.CopyFrom(_ecds(type_url))
    return True


def _cluster(cluster: Any, refs: References) -> None:
    if cluster.HasField("type") and cluster.type == cluster_pb2.Cluster.EDS:
        eds = cluster.eds_cluster_config
        refs.endpoints.add(eds.service_name or cluster.name)
        if not eds.HasField("eds_config"):
            eds.eds_config.CopyFrom(_ads())
