"""The OTLP protobuf modules, checked once at import.

`xds-protos` ships an old copy of the `opentelemetry.proto` package (what Envoy's own
protos import); installed after `opentelemetry-proto`, it overwrites the modules this
package needs (`ScopeLogs`, `ScopeMetrics`, OTLP 1.x). Importing this module raises
`OtlpProtosError` naming the fix instead of failing later inside a receiver.
"""

from __future__ import annotations

from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

__all__ = ["OtlpProtosError", "check_otlp_protos"]

FIX = "pip install --force-reinstall --no-deps 'opentelemetry-proto>=1.45' (after xds-protos)"


class OtlpProtosError(RuntimeError):
    """The installed `opentelemetry.proto` modules are not OTLP 1.x."""


def check_otlp_protos() -> None:
    """Raise `OtlpProtosError` when the OTLP 1.x messages the receivers use are missing."""
    missing = [name for module, name in ((logs_pb2, "ScopeLogs"), (metrics_pb2, "ScopeMetrics"))
               if not hasattr(module, name)]
    if missing:
        raise OtlpProtosError(
            f"opentelemetry.proto lacks {', '.join(missing)}: xds-protos' older copy of the OTLP "
            f"protos overwrote opentelemetry-proto's; fix: {FIX}")


check_otlp_protos()
