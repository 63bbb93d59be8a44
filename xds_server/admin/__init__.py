"""The admin surface: the HTTP server (REST API, module blobs, metrics, health; aiohttp)
and, on the xDS port, the gRPC admin API, CSDS, gRPC health and reflection."""

from xds_server.admin._app import AdminState, build_admin_app
from xds_server.admin._csds import CsdsService
from xds_server.admin._grpc import AdminService, GrpcServices, register_grpc_services
from xds_server.admin._health import HealthReporter

__all__ = [
    "AdminService",
    "AdminState",
    "CsdsService",
    "GrpcServices",
    "HealthReporter",
    "build_admin_app",
    "register_grpc_services",
]
