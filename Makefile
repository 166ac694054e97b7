# Every target sets up .venv itself when it is missing, so a fresh clone needs
# only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := automl/v1/.generated
PROTOS := $(wildcard protos/automl/v1/*.proto)
BUF_VERSION := 1.75.0

.PHONY: venv protos test unit integration demo up down status buf-lint bench quality-bench load-bench memory-bench portfolio clean

venv: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade "pip==26.3"
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

protos: $(GENERATED)

# Folder holding google/api/*.proto inside the googleapis-common-protos wheel.
export GOOGLEAPIS_ROOT := import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))

# The proto root (protos/) mirrors the Python package root, so protoc writes
# automl/v1/*_pb2.py whose `from automl.v1 import ...` lines work unpatched.
$(GENERATED): $(PROTOS) $(INSTALLED)
	$(PY) -m grpc_tools.protoc -Iprotos -I"$$($(PY) -c "$$GOOGLEAPIS_ROOT")" \
		--python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	touch $@

test: protos
	$(PY) -m pytest -q tests

unit: protos
	$(PY) -m pytest -q tests/unit

integration: protos
	$(PY) -m pytest -q tests/integration

demo: protos
	$(PY) -m automl.demo

up: protos
	$(PY) -m automl.stack up

down:
	$(PY) -m automl.stack down

status:
	$(PY) -m automl.stack status

# buf lint with the STANDARD rules; the googleapis protos come from the
# googleapis-common-protos wheel that requirements.txt pins.
buf-lint: $(INSTALLED)
	rm -rf build/third_party && mkdir -p build/third_party/google/api
	cp "$$($(PY) -c "$$GOOGLEAPIS_ROOT")/google/api/field_behavior.proto" build/third_party/google/api/
	npx --yes @bufbuild/buf@$(BUF_VERSION) lint

bench: protos
	$(PY) -m benchmarks.demo_overhead

# Held-out scores of our experiments, FLAML and a HistGradientBoosting floor
# (all 11 data sets at the default 60 s budget took 22 minutes in the last run).
# Example: make quality-bench QUALITY_ARGS="--budget 15 --datasets iris,phoneme"
quality-bench: protos
	$(PY) -m benchmarks.quality $(QUALITY_ARGS)

# 10 concurrent experiments, 20 watchers and Get/List readers on loopback (about 2 minutes).
load-bench: protos
	$(PY) -m benchmarks.load $(LOAD_ARGS)

# Peak memory of the ExperimentService while CreateExperiment checks a generated 216 MiB CSV.
memory-bench: protos
	$(PY) -m benchmarks.dataset_memory $(MEMORY_ARGS)

# Choose the search's starting portfolio on data sets outside the quality benchmark: writes
# services/orchestrator/portfolio.json and docs/portfolio.md (about 10 minutes on 2 cores).
portfolio: protos
	$(VENV)/bin/pip install --quiet --no-deps -r benchmarks/requirements-portfolio.txt
	$(PY) -m benchmarks.portfolio $(PORTFOLIO_ARGS)

clean:
	rm -rf $(VENV) build .stack .demo automl/v1/*_pb2*.py* $(GENERATED)
