"""The xDS protocol: SotW and delta loops, the ECDS/ADS gRPC services, stream callbacks.

Knows resources only through `xds_server.cache`; nothing here knows OCI or wasm.

May import: `cache` (its interfaces) and `nodes` (the node of a stream); never
`controller`, `wasm`, `admin`, `status`, `runtime` or `cli`.
"""

from xds_server.xds._callbacks import NullCallbacks, StreamCallbacks, StreamInfo
from xds_server.xds._server import ADS_SERVICE, XdsService
from xds_server.xds._stream import Authorizer, StreamLimits

__all__ = [
    "ADS_SERVICE",
    "Authorizer",
    "NullCallbacks",
    "StreamCallbacks",
    "StreamInfo",
    "StreamLimits",
    "XdsService",
]
