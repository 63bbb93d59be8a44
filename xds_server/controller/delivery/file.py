"""`file` delivery: the module written to a directory Envoy also mounts; the config
names the file."""

from __future__ import annotations

import shutil

from xds_server.config import FilterSpec
from xds_server.controller._extension import Code
from xds_server.controller._modules import ResolvedModule
from xds_server.controller.delivery._mode import Delivery, DeliveryError


class FileDelivery:
    """`vm_config.code.local.filename`: `<envoy_module_dir>/<sha256>.wasm`.

    The file is written once per digest (via a temporary name and a rename, so Envoy
    never reads a partial file) and never changed: its name is its content.
    """

    name = "file"

    def forms(self, spec: FilterSpec, module: ResolvedModule, delivery: Delivery) -> tuple[Code, ...]:
        """See `DeliveryMode.forms`."""
        directory = delivery.module_dir
        if directory is None:
            raise DeliveryError("delivery 'file' needs server.module_dir in the config")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{module.sha256}.wasm"
        if not target.exists():
            tmp = directory / f".{module.sha256}.tmp"
            shutil.copyfile(module.path, tmp)
            tmp.replace(target)
        envoy_dir = delivery.envoy_module_dir or str(directory)
        return (Code(sha256=module.sha256, filename=f"{envoy_dir.rstrip('/')}/{target.name}"),)
