"""`xds-server bootstrap`: print an Envoy bootstrap that points at this server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml


def register(sub: Any) -> None:
    """Add the `bootstrap` subcommand."""
    p = sub.add_parser("bootstrap", help="print an Envoy bootstrap YAML using this server")
    add_options(p)
    p.set_defaults(func=run)


_DEFAULTS = BootstrapOptions(node_id="", filters=())
"""The options' defaults: their one home is `BootstrapOptions`."""


def add_options(p: argparse.ArgumentParser, *, node_id: str | None = None) -> None:
    """Add every bootstrap option to `p` (shared by `bootstrap` and `envoy`); read them back
    with `options_from_args`. `node_id` is the default node id (None: `--node-id` required)."""
    p.add_argument("--node-id", required=node_id is None, default=node_id, help="Envoy node id")
    p.add_argument("--cluster", default=_DEFAULTS.cluster, help="Envoy node cluster")
    p.add_argument("--filter", dest="filters", action="append", default=[], metavar="NAME",
                   help="HTTP wasm filter (ECDS resource name); repeat for several")
    p.add_argument("--network-filter", dest="network_filters", action="append", default=[], metavar="NAME",
                   help="network (TCP) wasm filter, on a TCP listener (--tcp-listen) to --tcp-upstream")
    p.add_argument("--tcp-listen", default=_DEFAULTS.tcp_listen, help="TCP listener HOST:PORT")
    p.add_argument("--tcp-upstream", metavar="HOST:PORT", help="where the TCP listener proxies to")
    p.add_argument("--xds-address", action="append", metavar="HOST:PORT",
                   help=f"server address (repeat for replicas; default {_DEFAULTS.xds_addresses[0]})")
    p.add_argument("--full", action="store_true",
                   help="listeners, routes, clusters, endpoints and filters all from the server "
                        "(ADS): the bootstrap holds only the node and the xDS cluster")
    p.add_argument("--ads", action="store_true", help="use ADS instead of an ECDS config source")
    p.add_argument("--delta", action="store_true", help="use incremental (delta) xDS")
    p.add_argument("--listen", default=_DEFAULTS.listen, help="listener HOST:PORT")
    p.add_argument("--admin", default=_DEFAULTS.admin, help="Envoy admin HOST:PORT")
    p.add_argument("--upstream", metavar="HOST:PORT",
                   help="route requests to this upstream (default: a direct 200 'ok')")
    p.add_argument("--module-server", default=_DEFAULTS.module_server, metavar="HOST:PORT",
                   help="admin address of this server, for remote module delivery ('' = none)")
    p.add_argument("--initial-fetch-timeout", default=_DEFAULTS.initial_fetch_timeout,
                   help="how long the listener waits for its first filter config "
                        "(0s = until it arrives; Envoy stays INITIALIZING)")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                   help="node metadata (repeatable), matched by filter selectors")
    p.add_argument("--tls-ca", metavar="FILE", help="CA that signed the server certificate (enables TLS)")
    p.add_argument("--tls-cert", metavar="FILE", help="Envoy's client certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="FILE", help="Envoy's client key (mutual TLS)")
    p.add_argument("--tls-sni", metavar="NAME", help="server name to send and verify")
    p.add_argument("--xds-failover", action="store_true",
                   help="with several --xds-address: prefer the first, fail over to the next")
    p.add_argument("--module-server-tls", action="store_true",
                   help="the module server (admin port) uses TLS too")
    p.add_argument("--telemetry", action="store_true",
                   help="send access logs and stats to the server (OTLP over the xDS cluster)")
    p.add_argument("--telemetry-interval", default=_DEFAULTS.telemetry_interval, metavar="DURATION",
                   help=f"with --telemetry: how often Envoy flushes stats (default {_DEFAULTS.telemetry_interval})")
    p.add_argument("--telemetry-filter-state", action="append", metavar="KEY",
                   help="with --telemetry: filter state key to log (repeatable; default wasm.debug, "
                        "what a module sets with proxy_set_property(\"debug\", ...))")
    p.add_argument("--telemetry-metadata", action="append", default=[], metavar="NAMESPACE",
                   help="with --telemetry: dynamic metadata namespace to log (repeatable)")


def options_from_args(args: argparse.Namespace) -> BootstrapOptions:
    """The `BootstrapOptions` that the options of `add_options` describe.

    Raises ValueError naming the option that is wrong.
    """
    metadata = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata takes KEY=VALUE, got {item!r}")
        metadata[key] = value
    return BootstrapOptions(
        node_id=args.node_id,
        cluster=args.cluster,
        filters=args.filters,
        xds_addresses=args.xds_address or list(_DEFAULTS.xds_addresses),
        ads=args.ads,
        delta=args.delta,
        listen=args.listen,
        admin=args.admin,
        upstream=args.upstream,
        module_server=args.module_server or None,
        initial_fetch_timeout=args.initial_fetch_timeout,
        metadata=metadata,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_sni=args.tls_sni,
        module_server_tls=args.module_server_tls,
        xds_failover=args.xds_failover,
        network_filters=args.network_filters,
        tcp_listen=args.tcp_listen,
        tcp_upstream=args.tcp_upstream,
        telemetry=args.telemetry,
        telemetry_interval=args.telemetry_interval,
        telemetry_filter_state=args.telemetry_filter_state or _DEFAULTS.telemetry_filter_state,
        telemetry_metadata=args.telemetry_metadata,
        full=args.full,
    )


def run(args: argparse.Namespace) -> int:
    """Print the bootstrap YAML to stdout."""
    try:
        text = bootstrap_yaml(options_from_args(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
