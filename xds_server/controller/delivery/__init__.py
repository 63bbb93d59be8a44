"""Delivery modes: how the config Envoy gets references a wasm module.

Each mode is one object behind `DeliveryMode` (one file per mode), registered here by
name. The config model's list of valid names, `config.DELIVERY_MODES`, is the one
constant the registry is checked against at import; adding a mode means a file, an
entry in `MODES` and its name in `DELIVERY_MODES`.

May import: `config` (specs, the list of names) and the controller's `_extension`
(`Code`) and `_modules` (`ResolvedModule`); nothing else of the controller, no xDS
protocol, no OCI.
"""

from xds_server.config import DELIVERY_MODES
from xds_server.controller.delivery._mode import Delivery, DeliveryError, DeliveryMode
from xds_server.controller.delivery.file import FileDelivery
from xds_server.controller.delivery.inline import InlineDelivery
from xds_server.controller.delivery.remote import RemoteDelivery

__all__ = ["MODES", "Delivery", "DeliveryError", "DeliveryMode", "delivery_mode"]

MODES: dict[str, DeliveryMode] = {m.name: m for m in (InlineDelivery(), RemoteDelivery(), FileDelivery())}
"""Every delivery mode by name (immutable once the package is imported)."""

if tuple(MODES) != DELIVERY_MODES:
    raise ImportError(f"delivery modes {tuple(MODES)} do not match config.DELIVERY_MODES {DELIVERY_MODES}")


def delivery_mode(name: str) -> DeliveryMode:
    """The mode called `name`; `KeyError` naming the known modes if there is none
    (the config model refuses unknown names before they get here)."""
    try:
        return MODES[name]
    except KeyError:
        raise KeyError(f"unknown delivery mode {name!r}; known: {', '.join(MODES)}") from None
