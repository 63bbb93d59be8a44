"""Fuzz filter specs and config documents, as YAML text and as JSON: only ConfigError.

Run: .venv/bin/python fuzz/fuzz_filter_spec.py [libFuzzer flags]
"""

import json
import sys

import atheris
import structlog  # noqa: F401  (dependencies first: only our code is instrumented)

with atheris.instrument_imports():
    import yaml

    from xds_server.config import ConfigError, parse_config, parse_filter_spec


def _document(text: str, as_yaml: bool) -> object:
    try:
        return yaml.safe_load(text) if as_yaml else json.loads(text)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    as_yaml = fdp.ConsumeBool()
    whole = fdp.ConsumeBool()
    text = fdp.ConsumeUnicodeNoSurrogates(8192)
    doc = _document(text, as_yaml)
    try:
        if whole:
            parse_config(doc, where="fuzz.yaml")
        else:
            parse_filter_spec(doc, where="fuzz", path="filters[0]")
    except ConfigError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
