"""Issue 16: the `verify` list and `preflight` blocks are validated with errors that say
where; key files must be usable keys (check-config and serve refuse them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from xds_server.config import ConfigError, parse_config, parse_filter_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("doc", "where", "problem"), [
    ({"verify": [{"match": "r.example/*"}]}, "verify[0].keys", "trusts nothing"),
    ({"verify": [{"keys": ["a.pub"]}]}, "verify[0].match", "is required"),
    ({"verify": [{"match": "x", "keyless": {"issuer": "i", "identity": "id"}}]},
     "verify[0].keyless.trusted_root", "is required"),
    ({"verify": [{"match": "x", "keys": ["a.pub"], "required": "yes"}]}, "verify[0].required", "true or false"),
    ({"verify": [{"match": "x", "keys": ["a.pub"], "colour": 1}]}, "verify[0].colour", "unknown field"),
    ({"preflight": {"requests": [{"method": "get me"}]}}, "preflight.requests[0].method", "HTTP method"),
    ({"preflight": {"requests": [{"path": "x"}]}}, "preflight.requests[0].path", "start with '/'"),
    ({"preflight": {"requests": [{"expect": {"status": 700}}]}}, "preflight.requests[0].expect.status",
     "HTTP status"),
    ({"preflight": {"requests": []}}, "preflight.requests", "non-empty list"),
])
def test_invalid_entries_name_the_field(doc: dict[str, Any], where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, where="c.yaml", base_dir=Path("/etc/x"))
    assert f"c.yaml: {where}:" in str(err.value) and problem in str(err.value), str(err.value)


def test_paths_are_relative_to_the_file_and_specs_round_trip() -> None:
    cfg = parse_config({"verify": [{"match": "r/*", "keys": ["k/a.pub"], "keyless": {
        "issuer": "https://i", "identity": "me@x", "trusted_root": "root.json"}}]},
        where="c.yaml", base_dir=Path("/etc/x"))
    rule = cfg.verify[0]
    assert rule.keys == (Path("/etc/x/k/a.pub"),) and rule.required is True
    assert rule.keyless is not None and rule.keyless.trusted_root == Path("/etc/x/root.json")
    spec = parse_filter_spec({"name": "f", "source": {"image": "r.example/f:v1"}, "preflight": {
        "requests": [{"method": "post", "path": "/p", "headers": {"X-A": 1},
                      "expect": {"status": 204, "headers": {"X-B": "b"}}}]}}, where="api")
    assert spec.preflight is not None
    req = spec.preflight.requests[0]
    assert (req.method, req.headers, req.expect_status, req.expect_headers) == ("POST", {"x-a": "1"}, 204, {"x-b": "b"})
    assert parse_filter_spec(spec.to_dict(), where="revision") == spec


def test_check_config_refuses_unusable_keys(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "rsa.pub").write_bytes(rsa_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "p384.pub").write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cases = {"missing.pub": "cannot read", "rsa.pub": "not an ECDSA P-256 or Ed25519 key",
             "p384.pub": "only P-256 is supported"}
    for name, problem in cases.items():
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"verify": [{"match": "*", "keys": [name]}]}))
        result = subprocess.run([sys.executable, "-m", "xds_server", "check-config", str(cfg)],
                                capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
        assert result.returncode == 1, result.stdout
        assert "verify[0].keys" in result.stderr and str(tmp_path / name) in result.stderr, result.stderr
        assert problem in result.stderr, result.stderr
