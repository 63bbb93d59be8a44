"""Generate an Envoy bootstrap whose listener takes its wasm filters from this server."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from xds_server.config import ServerConfig
from xds_server.controller import HTTP_WASM_TYPE_URL, MODULE_CLUSTER, NETWORK_WASM_TYPE_URL
from xds_server.telemetry import DEFAULT_FILTER_STATE, add_telemetry

__all__ = ["BootstrapOptions", "bootstrap_yaml", "build_bootstrap"]

XDS_CLUSTER = "xds_server"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

_SERVER = ServerConfig()  # the server's default addresses: their one home is the config


@dataclass(frozen=True, slots=True)
class BootstrapOptions:
    """What the generated bootstrap contains.

    `xds_addresses`: HOST:PORT of every server replica (one cluster, all endpoints).
    `ads`: filters come over ADS (`dynamic_resources.ads_config`) instead of a
    dedicated ECDS gRPC config source. `delta`: incremental xDS instead of SotW.
    `initial_fetch_timeout`: how long the listener waits for its first filter config
    ("0s" = until it arrives: Envoy stays INITIALIZING, so no request ever runs
    without its filter; a positive value makes Envoy go LIVE and the filter answer 500
    until the config arrives).
    `upstream`: HOST:PORT requests are routed to; without it, a direct 200 "ok\n".
    `module_server`: HOST:PORT of the admin HTTP server, for `remote` delivery.
    `tls_ca`: CA file Envoy verifies the server with (enables TLS to the xDS cluster);
    `tls_cert`/`tls_key`: Envoy's client certificate (mutual TLS); `tls_sni`: the name
    to verify and send (default: the first xDS host). `module_server_tls`: the module
    cluster uses the same TLS settings (admin port with TLS).
    """

    node_id: str
    filters: Sequence[str]
    cluster: str = "xds-server-fleet"
    xds_addresses: Sequence[str] = (_SERVER.xds_address,)
    ads: bool = False
    delta: bool = False
    listen: str = "127.0.0.1:10000"
    admin: str = "127.0.0.1:9901"
    upstream: str | None = None
    module_server: str | None = _SERVER.admin_address
    initial_fetch_timeout: str = "0s"
    metadata: dict[str, str] = field(default_factory=dict)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_sni: str | None = None
    module_server_tls: bool = False
    xds_failover: bool = False
    network_filters: Sequence[str] = ()
    tcp_listen: str = "127.0.0.1:10001"
    tcp_upstream: str | None = None
    telemetry: bool = False
    telemetry_interval: str = "5s"
    telemetry_filter_state: Sequence[str] = DEFAULT_FILTER_STATE
    telemetry_metadata: Sequence[str] = ()
    full: bool = False
    """Everything from the server over ADS (listeners, routes, clusters, endpoints, wasm
    filters): the bootstrap holds only the node, the admin interface and the xDS cluster."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _socket(address: str) -> dict[str, Any]:
    host, port = _split(address)
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, addresses: Sequence[str], *, http2: bool) -> dict[str, Any]:
    static = all(_is_ip(_split(a)[0]) for a in addresses)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(a)}} for a in addresses]}],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _transport_socket(opts: BootstrapOptions, *, alpn: str) -> dict[str, Any]:
    common: dict[str, Any] = {
        "validation_context": {"trusted_ca": {"filename": opts.tls_ca}},
        "alpn_protocols": [alpn],
    }
    if opts.tls_cert or opts.tls_key:
        if not (opts.tls_cert and opts.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        common["tls_certificates"] = [{
            "certificate_chain": {"filename": opts.tls_cert},
            "private_key": {"filename": opts.tls_key},
        }]
    sni = opts.tls_sni or _split(opts.xds_addresses[0])[0]
    if not _is_ip(sni):
        common["validation_context"]["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": sni}}]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": common,
        },
    }


def build_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap as a dict (see `BootstrapOptions` for what each option does)."""
    if opts.full:
        return _full_bootstrap(opts)
    if not opts.filters and not opts.network_filters:
        raise ValueError("at least one --filter or --network-filter is needed")
    if opts.network_filters and not opts.tcp_upstream:
        raise ValueError("--network-filter needs --tcp-upstream HOST:PORT")
    api_type = "DELTA_GRPC" if opts.delta else "GRPC"
    grpc_source = {
        "api_type": api_type,
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
        "set_node_on_first_message_only": True,
    }
    config_source: dict[str, Any] = {
        "resource_api_version": "V3",
        "initial_fetch_timeout": opts.initial_fetch_timeout,
    }
    if opts.ads:
        config_source["ads"] = {}
    else:
        config_source["api_config_source"] = grpc_source
    http_filters: list[dict[str, Any]] = [
        {
            "name": name,
            "config_discovery": {"config_source": config_source, "type_urls": [HTTP_WASM_TYPE_URL]},
        }
        for name in opts.filters
    ]
    http_filters.append({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
    route: dict[str, Any] = {"match": {"prefix": "/"}}
    clusters = [_cluster(XDS_CLUSTER, opts.xds_addresses, http2=True)]
    if len(opts.xds_addresses) > 1:
        xds = clusters[0]
        xds["health_checks"] = [{
            "timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
            "no_traffic_interval": "1s", "grpc_health_check": {},
        }]
        if opts.xds_failover:
            xds["load_assignment"]["endpoints"] = [
                {"priority": i, "lb_endpoints": [{"endpoint": {"address": _socket(a)}}]}
                for i, a in enumerate(opts.xds_addresses)
            ]
    if opts.tls_ca:
        clusters[0]["transport_socket"] = _transport_socket(opts, alpn="h2")
    if opts.tcp_upstream and opts.network_filters:
        clusters.append(_cluster("tcp_upstream", [opts.tcp_upstream], http2=False))
    if opts.upstream:
        route["route"] = {"cluster": "upstream"}
        clusters.append(_cluster("upstream", [opts.upstream], http2=False))
    else:
        route["direct_response"] = {"status": 200, "body": {"inline_string": "ok\n"}}
    if opts.module_server:
        clusters.append(_cluster(MODULE_CLUSTER, [opts.module_server], http2=False))
        if opts.module_server_tls:
            if not opts.tls_ca:
                raise ValueError("--module-server-tls needs --tls-ca")
            clusters[-1]["transport_socket"] = _transport_socket(opts, alpn="http/1.1")
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "ingress_http",
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": http_filters,
    }
    node: dict[str, Any] = {"id": opts.node_id, "cluster": opts.cluster}
    if opts.metadata:
        node["metadata"] = dict(opts.metadata)
    listeners: list[dict[str, Any]] = []
    if opts.filters:
        listeners.append({
            "name": "ingress",
            "address": _socket(opts.listen),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm,
            }]}],
        })
    if opts.network_filters:
        tcp_filters: list[dict[str, Any]] = [
            {"name": name,
             "config_discovery": {"config_source": config_source, "type_urls": [NETWORK_WASM_TYPE_URL]}}
            for name in opts.network_filters
        ]
        tcp_filters.append({
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "tcp", "cluster": "tcp_upstream",
            },
        })
        listeners.append({"name": "tcp", "address": _socket(opts.tcp_listen),
                          "filter_chains": [{"filters": tcp_filters}]})
    bootstrap: dict[str, Any] = {
        "node": node,
        "admin": {"address": _socket(opts.admin)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    if opts.ads:
        bootstrap["dynamic_resources"] = {"ads_config": grpc_source}
    if opts.telemetry:  # telemetry (issue 13): access logger + stats sink to the xDS cluster
        add_telemetry(bootstrap, cluster=XDS_CLUSTER, stats_flush_interval=opts.telemetry_interval,
                      filter_state=opts.telemetry_filter_state, metadata=opts.telemetry_metadata)
    return bootstrap


def _full_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """`--full`: the node, the admin interface and the xDS cluster; LDS and CDS (and
    through them RDS, EDS and ECDS) over ADS."""
    extra = [flag for flag, used in (("--filter", opts.filters), ("--network-filter", opts.network_filters),
                                     ("--upstream", opts.upstream), ("--tcp-upstream", opts.tcp_upstream),
                                     ("--telemetry", opts.telemetry)) if used]
    if extra:
        raise ValueError(f"--full takes listeners, clusters and filters from the server: "
                         f"{extra[0]} has no effect with it")
    xds = _cluster(XDS_CLUSTER, opts.xds_addresses, http2=True)
    if len(opts.xds_addresses) > 1:
        xds["health_checks"] = [{
            "timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
            "no_traffic_interval": "1s", "grpc_health_check": {},
        }]
    if opts.tls_ca:
        xds["transport_socket"] = _transport_socket(opts, alpn="h2")
    node: dict[str, Any] = {"id": opts.node_id, "cluster": opts.cluster}
    if opts.metadata:
        node["metadata"] = dict(opts.metadata)
    ads_source = {"ads": {}, "resource_api_version": "V3",
                  "initial_fetch_timeout": opts.initial_fetch_timeout}
    return {
        "node": node,
        "admin": {"address": _socket(opts.admin)},
        "static_resources": {"clusters": [xds]},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if opts.delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "lds_config": ads_source,
            "cds_config": dict(ads_source),
        },
    }


def bootstrap_yaml(opts: BootstrapOptions) -> str:
    """The bootstrap as YAML text, ready for `envoy -c`."""
    return yaml.safe_dump(build_bootstrap(opts), sort_keys=False)
