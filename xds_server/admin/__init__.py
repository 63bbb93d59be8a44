"""The admin HTTP server: REST API, module blobs, metrics and health (aiohttp)."""

from xds_server.admin._app import AdminState, build_admin_app

__all__ = ["AdminState", "build_admin_app"]
