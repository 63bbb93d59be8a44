"""`remote` delivery: Envoy fetches the module over HTTP from this server's admin port
and verifies its sha256.

On a live Envoy the first push of such a config is NACKed while Envoy fetches the module
(`nack_on_code_cache_miss`), and a re-push identical to a NACKed config is ignored; so
there are two equivalent forms, and after the fetch the proxy gets the other one
(`controller/_remote.py` decides when).
"""

from __future__ import annotations

from xds_server.config import FilterSpec
from xds_server.controller._extension import Code
from xds_server.controller._modules import ResolvedModule
from xds_server.controller.delivery._mode import Delivery


class RemoteDelivery:
    """`vm_config.code.remote`: `<module_base_url>/modules/sha256/<hex>` with the sha256,
    in two forms that differ only in the fetch retry count (`Code.form` 0 and 1)."""

    name = "remote"

    def forms(self, spec: FilterSpec, module: ResolvedModule, delivery: Delivery) -> tuple[Code, ...]:
        """See `DeliveryMode.forms`."""
        base = delivery.module_base_url.rstrip("/")
        first = Code(sha256=module.sha256, url=f"{base}/modules/sha256/{module.sha256}")
        return (first, Code(sha256=first.sha256, url=first.url, form=1))
