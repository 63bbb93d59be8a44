"""`server.max_store_bytes` on a running server: modules no filter serves are evicted,
least recently used first; what is served, and what a rollback would go back to (the
last two contents before the current one), stays."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from tests.fixtures.registry import make_wasm
from tests.fixtures.server import running_server, write_config
from xds_server.config import parse_filter_spec


async def test_max_store_bytes_evicts_unserved_modules(tmp_path: Path) -> None:
    files = []
    for i in range(6):
        path = tmp_path / f"v{i}.wasm"
        path.write_bytes(make_wasm(f"capacity-{i}", padding_bytes=4000))
        files.append(path)
    size = files[0].stat().st_size
    cfg = write_config(
        tmp_path / "config.yaml",
        [{"name": "hdr", "source": {"file": str(files[0])}}],
        max_store_bytes=int(size * 4.5),
    )
    blobs = tmp_path / "data" / "modules" / "blobs" / "sha256"
    async with running_server(cfg) as app:
        served = [app.controller.filters["hdr"].deployed[0].module.sha256]
        with capture_logs() as logs:
            for path in files[1:]:
                spec = parse_filter_spec({"name": "hdr", "source": {"file": str(path)}},
                                         where="test")
                state = await app.controller.deploy("hdr", [spec], author="test")
                served.append(state.deployed[0].module.sha256)
        evicted = [e["digest"] for e in logs if e["event"] == "module_evicted"]
        # Four modules fit: the served one and its two rollback targets are pinned, so
        # each new deploy pushes out the oldest one beyond them.
        assert evicted == [f"sha256:{served[0]}", f"sha256:{served[1]}"]
        on_disk = {p.name for p in blobs.iterdir() if not p.name.startswith(".")}
        assert on_disk == {served[2], served[3], served[4], served[5]}
        current = app.controller.filters["hdr"].deployed[0].module
        assert current.sha256 == served[5] and current.path.is_file()
        assert sum(p.stat().st_size for p in blobs.iterdir()) <= size * 4.5


async def test_rollback_target_is_not_evicted(tmp_path: Path) -> None:
    """A module no proxy runs any more but that a rollback (an automatic one included)
    would go back to stays in the store when another filter's module needs the room:
    the rollback works with the module's source gone."""
    files = []
    for i in range(3):
        path = tmp_path / f"m{i}.wasm"
        path.write_bytes(make_wasm(f"target-{i}", padding_bytes=4000))
        files.append(path)
    size = files[0].stat().st_size
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(files[0])}}],
                       max_store_bytes=int(size * 2.5))
    async with running_server(cfg) as app:
        first = app.controller.filters["hdr"].deployed[0].module.sha256
        await app.controller.deploy("hdr", [parse_filter_spec(
            {"name": "hdr", "source": {"file": str(files[1])}}, where="test")], author="test")
        with capture_logs() as logs:
            await app.controller.deploy("other", [parse_filter_spec(
                {"name": "other", "source": {"file": str(files[2])}}, where="test")], author="test")
        assert not [e for e in logs if e["event"] == "module_evicted"]
        files[0].unlink()  # only the store has it now
        state = await app.controller.rollback("hdr", author="test")
        assert state.deployed[0].module.sha256 == first
