"""`server.max_store_bytes` on a running server: modules no filter serves are evicted,
least recently used first; what is served stays."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from tests.fixtures.registry import make_wasm
from tests.fixtures.server import running_server, write_config
from xds_server.config import parse_filter_spec


async def test_max_store_bytes_evicts_unserved_modules(tmp_path: Path) -> None:
    files = []
    for i in range(4):
        path = tmp_path / f"v{i}.wasm"
        path.write_bytes(make_wasm(f"capacity-{i}", padding_bytes=4000))
        files.append(path)
    size = files[0].stat().st_size
    cfg = write_config(
        tmp_path / "config.yaml",
        [{"name": "hdr", "source": {"file": str(files[0])}}],
        max_store_bytes=int(size * 2.5),
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
        # Two modules fit: each new deploy pushes out the oldest one no filter serves.
        assert evicted == [f"sha256:{served[0]}", f"sha256:{served[1]}"]
        on_disk = {p.name for p in blobs.iterdir() if not p.name.startswith(".")}
        assert on_disk == {served[2], served[3]}
        current = app.controller.filters["hdr"].deployed[0].module
        assert current.sha256 == served[3] and current.path.is_file()
        assert sum(p.stat().st_size for p in blobs.iterdir()) <= size * 2.5
