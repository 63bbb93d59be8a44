"""The delivery-mode seam: how the config Envoy gets references a module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xds_server.config import FilterSpec, ServerConfig
from xds_server.controller._extension import Code
from xds_server.controller._modules import ResolvedModule


class DeliveryError(Exception):
    """The server's delivery settings cannot serve a mode (e.g. `file` without a
    module directory); the message names the missing setting."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """The server's delivery settings, shared by every mode.

    `module_dir`: directory this server writes modules to (a volume shared with Envoy);
    `envoy_module_dir`: the same directory as Envoy sees it (default: `module_dir`).
    `module_base_url`: URL prefix Envoy fetches `/modules/sha256/<hex>` from.
    """

    module_dir: Path | None = None
    envoy_module_dir: str | None = None
    module_base_url: str = f"http://{ServerConfig().admin_address}"


class DeliveryMode(Protocol):
    """One way for a module to reach Envoy (the spec's `delivery`).

    `name` is the value in the config and API. What the server must serve follows from
    the forms: a `Code.filename` is a file `forms` wrote where Envoy reads it; a
    `Code.url` is fetched by Envoy from this server's `GET /modules/sha256/<hex>`
    (always served, by any replica, for every module in use; the bootstrap's module
    cluster points at it). Modes are stateless and shared; `forms` may be called
    concurrently, from worker threads for large modules.
    """

    name: str

    def forms(self, spec: FilterSpec, module: ResolvedModule, delivery: Delivery) -> tuple[Code, ...]:
        """The equivalent ways to reference `module` in the config, first one served.

        Two forms when a re-push must differ from what a proxy NACKed (Envoy ignores a
        re-push identical to a NACKed config): the second is served to a proxy instead
        after a NACK the mode treats as transient; both run the same module, so each
        version is an alias of the other. Raises `DeliveryError` when `delivery` lacks
        what the mode needs.
        """
        ...
