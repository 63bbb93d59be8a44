"""Config file watching: a changed file is reloaded; a reload that fails unexpectedly
is logged (`config_reload_failed`) and the server keeps serving and watching."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from structlog.testing import capture_logs

from tests.fixtures.envoy import wait_for
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.config import Config


def rewrite(path: Path, filters: list[dict[str, Any]], bump: int) -> None:
    """Rewrite the config's filters with an mtime that surely differs."""
    doc = yaml.safe_load(path.read_text())
    doc["filters"] = filters
    path.write_text(yaml.safe_dump(doc))
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + bump))


async def test_a_failing_reload_is_logged_and_watching_goes_on(tmp_path: Path) -> None:
    a = tmp_path / "a.wasm"
    a.write_bytes(header_filter("x-wasm-filter", "A"))
    cfg = write_config(tmp_path / "config.yaml", [], watch_config=True)
    with capture_logs() as logs:
        async with running_server(cfg) as app:
            real_apply = app.apply
            calls = 0

            async def buggy_apply(config: Config) -> None:  # a bug in the reload path
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise RuntimeError("injected reload bug")
                await real_apply(config)

            app.apply = buggy_apply  # type: ignore[method-assign]
            rewrite(cfg, [{"name": "one", "source": {"file": str(a)}}], bump=10)
            await wait_for(lambda: any(e["event"] == "config_reload_failed" for e in logs), 20,
                           what="config_reload_failed")
            failed = next(e for e in logs if e["event"] == "config_reload_failed")
            assert failed["error"] == "injected reload bug" and failed["path"] == str(cfg.resolve())
            assert failed["log_level"] == "error"
            assert "one" not in app.controller.filters

            rewrite(cfg, [{"name": "two", "source": {"file": str(a)}}], bump=20)
            await wait_for(lambda: "two" in app.controller.filters, 20, what="reload")  # still watching
            assert calls == 2
