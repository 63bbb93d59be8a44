"""Issue 16: signed modules. Images in a real registry, signed by code written here from
cosign's and Sigstore's specs (not by the server's own signing code), deployed through the
admin API of a real server whose `verify` policy requires a signature."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import running_server, write_config
from tests.fixtures.sigstore_mock import ISSUER, MockSigstore
from tests.fixtures.wasm_filters import header_filter
from xds_server.wasm import RegistryClient, parse_reference, push

SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
Signer = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


def write_public(path: Path, key: Signer) -> Path:
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def write_private(path: Path, key: Signer) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def raw_sign(key: Signer, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data)


async def put(client: RegistryClient, ref: str, blobs: list[bytes], manifest: dict[str, Any],
              media_type: str = OCI_MANIFEST) -> str:
    target = parse_reference(ref)
    for blob in blobs:
        await client.push_blob(target, blob)
    return await client.push_manifest(target, json.dumps(manifest).encode(), media_type)


async def cosign_sign(client: RegistryClient, repo: str, digest: str, key: Signer, *,
                      payload_digest: str | None = None, corrupt: bool = False) -> None:
    """A cosign key-pair signature in the tag scheme, following SIGNATURE_SPEC.md:
    the Go struct order of the simple-signing payload, the base64 signature annotation."""
    payload = json.dumps({
        "critical": {"identity": {"docker-reference": repo},
                     "image": {"docker-manifest-digest": payload_digest or digest},
                     "type": "cosign container image signature"},
        "optional": None}).encode()
    signature = raw_sign(key, payload)
    if corrupt:
        signature = raw_sign(key, payload + b" ")  # a real signature, of other bytes
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [_digest(payload)]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": _desc("application/vnd.oci.image.config.v1+json", config),
                "layers": [_desc(SIGNING, payload, annotations={
                    "dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()})]}
    await put(client, f"{repo}:{digest.replace(':', '-')}.sig", [config, payload], manifest)


async def attach_bundle(client: RegistryClient, repo: str, digest: str, manifest_raw: bytes,
                        bundle: dict[str, Any], *, listed_as: str = BUNDLE) -> None:
    """A Sigstore bundle as an OCI referrer of `digest`, listed in the referrers tag schema
    index `sha256-<hex>` (the Debian registry has no referrers API) with artifact type
    `listed_as` (cosign 2.5 listed its bundles with the empty type: cosign issue 4422)."""
    raw = json.dumps(bundle).encode()
    referrer = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
                "config": _desc(EMPTY, b"{}"), "layers": [_desc(BUNDLE, raw)],
                "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest_raw)}}
    referrer_digest = await put(client, f"{repo}@{_digest(json.dumps(referrer).encode())}",
                                [b"{}", raw], referrer)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": referrer_digest,
         "size": len(json.dumps(referrer).encode()), "artifactType": listed_as}]}
    await put(client, f"{repo}:{digest.replace(':', '-')}", [], index, OCI_INDEX)


def key_bundle(key: ec.EllipticCurvePrivateKey, manifest_raw: bytes) -> dict[str, Any]:
    """A v0.3 bundle with a message signature over the manifest bytes and a public key hint
    (what `cosign sign --key --new-bundle-format` attaches, tlog entries aside)."""
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "test-key"}, "tlogEntries": []},
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256",
                              "digest": base64.b64encode(hashlib.sha256(manifest_raw).digest()).decode()},
            "signature": base64.b64encode(key.sign(manifest_raw, ec.ECDSA(hashes.SHA256()))).decode(),
        },
    }


def dsse_bundle(key: ec.EllipticCurvePrivateKey, digest: str) -> dict[str, Any]:
    """A v0.3 bundle whose DSSE envelope holds an in-toto statement naming `digest`,
    signed over DSSE's pre-authentication encoding (the DSSE spec, written out here)."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"name": "image", "digest": {"sha256": digest.removeprefix("sha256:")}}],
                            "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}).encode()
    payload_type = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(statement), statement)
    return {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "test-key"}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": payload_type,
                         "signatures": [{"sig": base64.b64encode(key.sign(pae, ec.ECDSA(hashes.SHA256()))).decode()}]},
    }


class Api:
    def __init__(self, port: int, session: aiohttp.ClientSession) -> None:
        self.base, self.session = f"http://127.0.0.1:{port}", session

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body,
                                        headers={"X-Actor": "tester"}) as r:
            return r.status, await r.json()


ROOT = str(Path(__file__).resolve().parents[1])


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.registry
async def test_required_policy_through_deploy(tmp_path: Path, registry: RegistryProcess) -> None:
    trusted = ec.generate_private_key(ec.SECP256R1())
    trusted_ed = ed25519.Ed25519PrivateKey.generate()
    stranger = ec.generate_private_key(ec.SECP256R1())
    keys = tmp_path / "keys"
    keys.mkdir()
    write_public(keys / "team.pub", trusted)
    write_public(keys / "team-ed.pub", trusted_ed)
    write_private(keys / "team-ed.key", trusted_ed)
    base = f"{registry.host}/trust{os.getpid()}"
    names = ("unsigned", "wrong", "replayed", "untrusted", "good", "ed", "bundle", "badbundle", "dsse")
    digests: dict[str, str] = {}
    modules: dict[str, str] = {}
    async with RegistryClient() as client:
        for name in names:
            wasm = header_filter("x-signed", name)
            modules[name] = hashlib.sha256(wasm).hexdigest()
            digests[name] = (await push(client, f"{base}/{name}:v1", wasm)).manifest_digest
        repo = {n: f"{base}/{n}" for n in names}
        await cosign_sign(client, repo["wrong"], digests["wrong"], trusted, corrupt=True)
        await cosign_sign(client, repo["replayed"], digests["replayed"], trusted,
                          payload_digest=digests["good"])
        await cosign_sign(client, repo["untrusted"], digests["untrusted"], stranger)
        await cosign_sign(client, repo["good"], digests["good"], trusted)
        for name, key in (("bundle", trusted), ("badbundle", stranger)):
            raw = (await client.get_manifest(parse_reference(f"{repo[name]}@{digests[name]}"))).raw
            await attach_bundle(client, repo[name], digests[name], raw, key_bundle(key, raw))
        raw = (await client.get_manifest(parse_reference(f"{repo['dsse']}@{digests['dsse']}"))).raw
        await attach_bundle(client, repo["dsse"], digests["dsse"], raw, dsse_bundle(trusted, digests["dsse"]),
                            listed_as=EMPTY)

    # `xds-server sign` with an Ed25519 key (the CLI in a subprocess, as a user runs it).
    code, out, err = await _cli("sign", f"{repo['ed']}:v1", "--key", str(keys / "team-ed.key"))
    assert code == 0, err
    assert f"signed {repo['ed']}:v1@{digests['ed']}" in out

    # ... in cosign's format: checked here by hand, as cosign would read it.
    async with RegistryClient() as client:
        sig_ref = parse_reference(f"{repo['ed']}:{digests['ed'].replace(':', '-')}.sig")
        layer = (await client.get_manifest(sig_ref)).data["layers"][0]
        assert layer["mediaType"] == SIGNING
        payload = await client.fetch_blob(sig_ref, layer["digest"], max_bytes=65536)
        assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digests["ed"]
        trusted_ed.public_key().verify(
            base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]), payload)
        open_digest = (await push(client, f"{base}/open/x:v1", header_filter("x-signed", "open"))).manifest_digest

    cfg = write_config(tmp_path / "config.yaml", [])
    doc = yaml.safe_load(cfg.read_text())
    doc["verify"] = [{"match": f"{base}/open/*", "keys": ["keys/team.pub"], "required": False},
                     {"match": f"{base}/*", "keys": ["keys/team.pub", "keys/team-ed.pub"],
                      "required": True}]
    cfg.write_text(yaml.safe_dump(doc))
    async with running_server(cfg) as app, aiohttp.ClientSession() as session:
        api = Api(app.admin_port, session)
        refused = {
            "unsigned": "no signature found (looked for tag sha256-",
            "wrong": "a cosign signature verifies with none of the policy's keys",
            "replayed": f"a cosign signature's payload names {digests['good']}, not {digests['replayed']}",
            "untrusted": "a cosign signature verifies with none of the policy's keys",
            "badbundle": "bundle signature verifies with none of the policy's keys",
        }
        for name, why in refused.items():
            status, body = await api.call("PUT", f"/api/v1/filters/f-{name}",
                                          {"source": {"image": f"{repo[name]}:v1"}})
            assert status == 422, (name, body)
            message = body["error"]["message"]
            assert f"image {repo[name]}@{digests[name]}" in message, message
            assert f"verify policy '{base}/*'" in message, message
            assert why in message, message
            # Refused before it is stored or served.
            assert app._modules is not None and app._modules.module_path(modules[name]) is None
            assert (await api.call("GET", f"/api/v1/filters/f-{name}"))[0] == 404

        accepted = {"good": ("cosign", "team.pub"), "ed": ("cosign", "team-ed.pub"),
                    "bundle": ("bundle", "team.pub"), "dsse": ("bundle", "team.pub")}
        for name, (fmt, key_file) in accepted.items():
            status, body = await api.call("PUT", f"/api/v1/filters/f-{name}",
                                          {"source": {"image": f"{repo[name]}:v1"}})
            assert status == 201, (name, body)
            verdict = body["specs"][0]["verdict"]
            assert verdict["verified"] is True and verdict["format"] == fmt, verdict
            assert verdict["key"] == str(keys / key_file) and verdict["digest"] == digests[name]
            assert body["specs"][0]["module"]["sha256"] == modules[name]
            status, hist = await api.call("GET", f"/api/v1/filters/f-{name}/history")
            assert hist["history"][0]["verdicts"][0]["key_fingerprint"] == verdict["key_fingerprint"]

        async with session.get(f"http://127.0.0.1:{app.admin_port}/metrics") as r:
            metrics = await r.text()
        assert 'xds_server_signature_checks_total{result="refused"}' in metrics
        assert 'xds_server_signature_checks_total{result="verified"}' in metrics

        # A policy that is not required records the missing signature and lets it through.
        status, body = await api.call("PUT", "/api/v1/filters/f-open", {"source": {"image": f"{base}/open/x:v1"}})
        assert status == 201, body
        verdict = body["specs"][0]["verdict"]
        assert verdict["verified"] is False and verdict["policy"] == f"{base}/open/*", verdict
        assert verdict["digest"] == open_digest and "no signature found" in verdict["reason"]

        # `history` and `status` say who signed.
        server = f"http://127.0.0.1:{app.admin_port}"
        code, out, err = await _cli("history", "f-ed", "--server", server)
        assert code == 0 and "signed by te" in out, (out, err)  # the 100-column table cuts it
        code, out, err = await _cli("history", "f-ed", "--server", server, "-o", "json")
        assert json.loads(out)["history"][0]["verdicts"][0]["key"] == str(keys / "team-ed.pub")
        code, out, err = await _cli("status", "--server", server)
        assert code == 0 and "f-bundle: revision 1" in out and "signed by team.pub" in out, (out, err)

    # `inspect` lists an image's signatures, and which key verifies them.
    code, out, err = await _cli("inspect", f"{repo['good']}:v1", "--store", str(tmp_path / "cli"),
                                "--key", str(keys / "team.pub"))
    assert code == 0, err
    sigs = json.loads(out)["signatures"]
    assert [s["format"] for s in sigs] == ["cosign"]
    assert sigs[0]["verified_by"] == str(keys / "team.pub")


@pytest.mark.registry
async def test_keyless_bundles_from_the_sigstore_library(
    tmp_path: Path, registry: RegistryProcess, sigstore_mock: MockSigstore
) -> None:
    base = f"{registry.host}/keyless{os.getpid()}"
    digests: dict[str, str] = {}
    async with RegistryClient() as client:
        for name, email in (("ci", "ci@example.com"), ("intruder", "intruder@example.com")):
            ref = f"{base}/{name}:v1"
            digests[name] = (await push(client, ref, header_filter("x-keyless", name))).manifest_digest
            raw = (await client.get_manifest(parse_reference(ref))).raw
            bundle = sigstore_mock.sign_digest(hashlib.sha256(raw).hexdigest(), email=email)
            await attach_bundle(client, f"{base}/{name}", digests[name], raw, json.loads(bundle))
    cfg = write_config(tmp_path / "config.yaml", [])
    doc = yaml.safe_load(cfg.read_text())
    doc["verify"] = [{"match": f"{base}/*", "required": True, "keyless": {
        "issuer": ISSUER, "identity": "ci@example.com", "trusted_root": str(sigstore_mock.trusted_root)}}]
    cfg.write_text(yaml.safe_dump(doc))
    async with running_server(cfg) as app, aiohttp.ClientSession() as session:
        api = Api(app.admin_port, session)
        status, body = await api.call("PUT", "/api/v1/filters/kl", {"source": {"image": f"{base}/ci:v1"}})
        assert status == 201, body
        verdict = body["specs"][0]["verdict"]
        assert verdict["verified"] is True and verdict["format"] == "bundle"
        assert verdict["identity"] == "ci@example.com" and verdict["issuer"] == ISSUER
        status, body = await api.call("PUT", "/api/v1/filters/kl2",
                                      {"source": {"image": f"{base}/intruder:v1"}})
        assert status == 422, body
        message = body["error"]["message"]
        assert f"image {base}/intruder@{digests['intruder']} is refused by verify policy" in message
        assert "keyless bundle does not verify" in message, message


@pytest.mark.registry
async def test_stored_modules_answer_to_the_current_policy(tmp_path: Path, registry: RegistryProcess) -> None:
    """A rollback serves a module from the store by digest; once its signer's key leaves
    the policy, the module must pass the (new) policy again: here it cannot."""
    old_key, new_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    write_public(tmp_path / "old.pub", old_key)
    write_public(tmp_path / "new.pub", new_key)
    repo = f"{registry.host}/rotate{os.getpid()}/f"
    async with RegistryClient() as client:
        for tag in ("v1", "v2"):
            digest = (await push(client, f"{repo}:{tag}", header_filter("x-rot", tag))).manifest_digest
            await cosign_sign(client, repo, digest, old_key)
    cfg = write_config(tmp_path / "config.yaml", [])
    doc = yaml.safe_load(cfg.read_text())
    doc["verify"] = [{"match": repo, "keys": ["old.pub"]}]
    cfg.write_text(yaml.safe_dump(doc))
    async with running_server(cfg) as app, aiohttp.ClientSession() as session:
        api = Api(app.admin_port, session)
        for tag in ("v1", "v2"):
            status, body = await api.call("PUT", "/api/v1/filters/rot", {"source": {"image": f"{repo}:{tag}"}})
            assert status in (200, 201), body
        status, body = await api.call("POST", "/api/v1/filters/rot/rollback", {"to": 1})
        assert status in (200, 201), body  # the old key is trusted: v1 from the store
        assert body["specs"][0]["verdict"]["key"] == str(tmp_path / "old.pub")
        doc["verify"] = [{"match": repo, "keys": ["new.pub"]}]
        cfg.write_text(yaml.safe_dump(doc))
        assert await app.reload()
        status, body = await api.call("POST", "/api/v1/filters/rot/rollback", {"to": 2})
        assert status == 422, body
        assert "verifies with none of the policy's keys" in body["error"]["message"]
        assert f"trusts keys {tmp_path / 'new.pub'}" in body["error"]["message"]
