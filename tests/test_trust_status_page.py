"""Issue 16: the status page shows who signed each served module (real Chromium)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.async_api import Browser, async_playwright, expect

from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.test_trust_signatures import cosign_sign, write_public
from xds_server.wasm import RegistryClient, push

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, timeout=20_000)
        try:
            yield b
        finally:
            await b.close()


@pytest.mark.registry
async def test_status_page_shows_the_signer(tmp_path: Path, registry: RegistryProcess, browser: Browser) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    write_public(tmp_path / "release.pub", key)
    repo = f"{registry.host}/page{os.getpid()}/f"
    async with RegistryClient() as client:
        digest = (await push(client, f"{repo}:v1", header_filter("x-page", "1"))).manifest_digest
        await cosign_sign(client, repo, digest, key)
    cfg = write_config(tmp_path / "config.yaml", [{"name": "signed", "source": {"image": f"{repo}:v1"}}])
    doc = yaml.safe_load(cfg.read_text())
    doc["verify"] = [{"match": repo, "keys": ["release.pub"]}]
    cfg.write_text(yaml.safe_dump(doc))
    async with running_server(cfg) as app, aiohttp.ClientSession():
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{app.admin_port}/")
        current = page.locator('article[data-filter="signed"] tr.current')
        await expect(current.locator(".signer")).to_contain_text("signed by key release.pub · cosign")
        await page.close()
