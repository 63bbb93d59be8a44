"""`inline` delivery: the module bytes inside the config (the default; nothing else
to serve or share)."""

from __future__ import annotations

from xds_server.config import FilterSpec
from xds_server.controller._extension import Code
from xds_server.controller._modules import ResolvedModule
from xds_server.controller.delivery._mode import Delivery


class InlineDelivery:
    """`vm_config.code.local.inline_bytes`: one form, the module's bytes."""

    name = "inline"

    def forms(self, spec: FilterSpec, module: ResolvedModule, delivery: Delivery) -> tuple[Code, ...]:
        """See `DeliveryMode.forms`."""
        return (Code(sha256=module.sha256, inline=module.read_bytes()),)
