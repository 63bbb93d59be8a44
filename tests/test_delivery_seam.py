"""Issue 12: a delivery mode is one object behind `DeliveryMode`, registered by name.

Unit tests of the seam: the registry matches the config model's names, what each mode
puts in the config, what `file` writes, the two equivalent `remote` forms (aliases of
each other), and that the controller's builder takes everything from the mode.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fixtures.wasm_filters import header_filter
from xds_server.cache import ResourceCache
from xds_server.config import DELIVERY_MODES, FilterSpec, parse_filter_spec
from xds_server.controller import MODES, Code, Delivery, FilterError, ResolvedModule, delivery_mode
from xds_server.controller._build import Builder
from xds_server.controller._context import Context
from xds_server.controller.delivery import DeliveryError
from xds_server.state import SqliteStateStore


def module_at(tmp_path: Path) -> ResolvedModule:
    data = header_filter("x-wasm-filter", "seam")
    path = tmp_path / "store" / "module.wasm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ResolvedModule(sha256=hashlib.sha256(data).hexdigest(), size=len(data), path=path,
                          layout="file", reference=str(path))


def spec(delivery: str) -> FilterSpec:
    return parse_filter_spec({"name": "hdr", "source": {"file": "/m.wasm"}, "delivery": delivery},
                             where="test")


def test_registry_holds_exactly_the_config_models_modes() -> None:
    assert tuple(MODES) == DELIVERY_MODES
    for name, mode in MODES.items():
        assert mode.name == name and delivery_mode(name) is mode
    with pytest.raises(KeyError, match="unknown delivery mode 'ftp'; known: inline, remote, file"):
        delivery_mode("ftp")


def test_inline_puts_the_module_bytes_in_the_config(tmp_path: Path) -> None:
    module = module_at(tmp_path)
    (code,) = delivery_mode("inline").forms(spec("inline"), module, Delivery())
    assert code == Code(sha256=module.sha256, inline=module.read_bytes())


def test_file_writes_the_module_once_under_its_digest(tmp_path: Path) -> None:
    module = module_at(tmp_path)
    mode = delivery_mode("file")
    settings = Delivery(module_dir=tmp_path / "shared", envoy_module_dir="/envoy/modules/")
    (code,) = mode.forms(spec("file"), module, settings)
    written = tmp_path / "shared" / f"{module.sha256}.wasm"
    assert code == Code(sha256=module.sha256, filename=f"/envoy/modules/{module.sha256}.wasm")
    assert written.read_bytes() == module.read_bytes()
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary left
    mtime = written.stat().st_mtime_ns
    mode.forms(spec("file"), module, settings)
    assert written.stat().st_mtime_ns == mtime  # its name is its content: never rewritten
    with pytest.raises(DeliveryError, match=r"needs server\.module_dir"):
        mode.forms(spec("file"), module, Delivery())


def test_remote_gives_two_forms_that_differ_only_in_form(tmp_path: Path) -> None:
    module = module_at(tmp_path)
    mode = delivery_mode("remote")
    first, second = mode.forms(spec("remote"), module, Delivery(module_base_url="http://srv:1/"))
    assert first.url == second.url == f"http://srv:1/modules/sha256/{module.sha256}"
    assert (first.form, second.form) == (0, 1) and first.sha256 == second.sha256 == module.sha256


class OneModule:
    """A module provider that knows one module (the builder under test needs no store)."""

    def __init__(self, module: ResolvedModule) -> None:
        self.module = module

    async def module_for(self, spec: FilterSpec) -> ResolvedModule:
        return self.module

    def stored(self, sha256: str) -> ResolvedModule | None:
        return self.module if sha256 == self.module.sha256 else None


def builder(tmp_path: Path, delivery: Delivery) -> Builder:
    provider = OneModule(module_at(tmp_path))
    ctx = Context(ResourceCache(), provider, SqliteStateStore(tmp_path / "state.db"),  # type: ignore[arg-type]
                  delivery=delivery, replica_id="")
    return Builder(ctx)


@pytest.mark.parametrize("delivery", DELIVERY_MODES)
async def test_builder_serves_each_modes_forms(tmp_path: Path, delivery: str) -> None:
    b = builder(tmp_path, Delivery(module_dir=tmp_path / "shared"))
    deployed = await b.build(spec(delivery))
    if delivery == "remote":
        assert deployed.alt is not None
        # Both forms run the same module: each version is an alias of the other.
        assert deployed.resource.aliases == {deployed.alt.version}
        assert deployed.alt.aliases == {deployed.resource.version}
        assert deployed.resource.version != deployed.alt.version
    else:
        assert deployed.alt is None and deployed.versions == (deployed.resource.version,)


async def test_a_mode_that_cannot_serve_is_a_400_filter_error(tmp_path: Path) -> None:
    b = builder(tmp_path, Delivery())  # no module_dir
    with pytest.raises(FilterError) as err:
        await b.build(spec("file"))
    assert err.value.status == 400 and err.value.name == "hdr"
    assert "delivery 'file' needs server.module_dir" in err.value.message
