"""The admin surface: the HTTP server (REST API, module blobs, metrics, health; aiohttp)
and, on the xDS port, the gRPC admin API, CSDS, gRPC health and reflection.

`AdminService` (`_service`) is the one facade both APIs call: views, changes, history,
readiness, for filters and the standalone fleet's Envoy resources. `_app` and
`_resources` (HTTP) and `_grpc` (gRPC) are thin adapters over it. A new admin concern is
its own module here and joins through `build_admin_app(extensions=...)` (HTTP routes)
and `register_grpc_services(extensions=...)` (gRPC services).

May import: controller, resources (the `ResourceManager`), cache (read), status and
proxy_index (read), config, nodes, telemetry (health windows, log buffer); never xds
internals, wasm, runtime or cli.
"""

from xds_server.admin._app import SERVICE, AppExtension, build_admin_app
from xds_server.admin._auth import TokenStore, load_tokens
from xds_server.admin._csds import CsdsService
from xds_server.admin._grpc import AdminServicer, GrpcExtension, GrpcServices, register_grpc_services
from xds_server.admin._health import HealthReporter
from xds_server.admin._service import AdminService

__all__ = [
    "SERVICE",
    "AdminService",
    "AdminServicer",
    "AppExtension",
    "CsdsService",
    "GrpcExtension",
    "GrpcServices",
    "HealthReporter",
    "TokenStore",
    "build_admin_app",
    "load_tokens",
    "register_grpc_services",
]
