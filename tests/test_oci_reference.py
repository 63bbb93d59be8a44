"""Image reference grammar, challenge parsing, and the safe tar reader (no registry)."""

from __future__ import annotations

import pytest

from xds_server.wasm import InvalidReference, ModuleSource, parse_reference
from xds_server.wasm._auth import Credentials, parse_challenge
from xds_server.wasm.reference import is_loopback_host, normalize_sha256

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("user/filter:v1", "docker.io", "user/filter", "v1", None),
        ("docker.io/alpine:3", "docker.io", "library/alpine", "3", None),
        ("index.docker.io/user/f", "docker.io", "user/f", "latest", None),
        ("localhost/f", "localhost", "f", "latest", None),
        ("localhost:5000/team/sub/f:v2", "localhost:5000", "team/sub/f", "v2", None),
        ("registry.example.com/a/b/c", "registry.example.com", "a/b/c", "latest", None),
        (f"ghcr.io/org/f@{DIGEST}", "ghcr.io", "org/f", None, DIGEST),
        (f"ghcr.io/org/f:v1@{DIGEST}", "ghcr.io", "org/f", "v1", DIGEST),
        ("oci://127.0.0.1:5000/f:v1", "127.0.0.1:5000", "f", "v1", None),
        ("[::1]:5000/f:v1", "[::1]:5000", "f", "v1", None),
        ("host.io/my_repo/sub-part/x.y:Tag_1.0-rc", "host.io", "my_repo/sub-part/x.y",
         "Tag_1.0-rc", None),
    ],
)
def test_reference_grammar(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry, repository, tag, digest,
    )
    assert parse_reference(str(ref)) == ref


def test_docker_hub_endpoint() -> None:
    assert parse_reference("alpine").endpoint_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/x").endpoint_host == "localhost:5000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty image reference"),
        ("Upper/case", "invalid repository component 'Upper'"),
        ("host.io/a//b", "invalid repository component ''"),
        ("host.io/a:bad tag", "invalid tag"),
        ("host.io/a@md5:abc", "unsupported digest"),
        ("host.io/a@sha256:abc", "not a sha256 digest"),
    ],
)
def test_invalid_references_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_reference(text)


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1:5000")
    assert is_loopback_host("localhost")
    assert is_loopback_host("[::1]:5000")
    assert not is_loopback_host("registry.example.com:5000")
    assert not is_loopback_host("10.0.0.1")


def test_sha256_pins_accept_prefix() -> None:
    assert normalize_sha256(DIGEST) == "ab" * 32
    assert normalize_sha256("AB" * 32) == "ab" * 32
    with pytest.raises(InvalidReference, match="sha256 pin of x"):
        ModuleSource("image", "x", sha256="nothex")


def test_challenge_parsing() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/f:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:team/f:pull,push",
    }
    basic = parse_challenge('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"


def test_credentials_never_show_the_password() -> None:
    assert "s3cret" not in repr(Credentials("user", "s3cret"))
