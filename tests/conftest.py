"""Shared pytest fixtures; each concern's fixtures live in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.wasm_filters",
    "tests.fixtures.envoy",
    "tests.fixtures.registry",
    "tests.fixtures.server",
    "tests.fixtures.postgres",
    "tests.fixtures.devkit",
    "tests.fixtures.sigstore_mock",
]
