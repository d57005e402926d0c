# Two set-up commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The oldest supported KFP backend's protos, beside (not inside) the venv's packages: the strict
# parse of the compiled pipeline loads them in a child interpreter (pipelines/protos.py).
OLDEST_PROTOS := $(VENV)/backend-protos/oldest

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export AWS_EC2_METADATA_DISABLED := true

.PHONY: install run verdict test test-fast lint mlflow-ui lock lock-check clean

$(STAMP): pyproject.toml requirements.lock backend-protos.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
	  --target $(OLDEST_PROTOS) -r backend-protos.lock
	touch $(STAMP)

install: $(STAMP)

# dvc runs each stage's `latentanon ...` command: put the venv first on PATH. The run ends with
# the gate's decision, its reasons and what to commit.
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@$(BIN)/latentanon verdict

verdict: $(STAMP)
	@$(BIN)/latentanon verdict

# Test files spread over the cores, four at most (a file's tests share its expensive module
# fixtures, so a file stays on one worker), the longest first (tests/conftest.py LONGEST_FILES).
# `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# What CI checks beside the tests (pre-commit runs the same before a commit): lint, format, types
# and the layer contract.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks components pipelines
	$(BIN)/ruff format --check src tests benchmarks components pipelines
	$(BIN)/mypy
	PYTHONPATH=src $(BIN)/lint-imports --config pyproject.toml

# The same tracking URI as every stage (MLFLOW_TRACKING_URI, else params.yaml's tracking.tracking_uri,
# else mlflow.db in the workdir): `latentanon tracking-uri` applies that one rule.
mlflow-ui: $(STAMP)
	@uri="$$($(BIN)/latentanon tracking-uri --quiet)" || exit 1; \
	case "$$uri" in \
	  http://*|https://*) echo "The runs are on the tracking server $$uri: open it in a browser.";; \
	  *) echo "MLflow UI for $$uri: http://127.0.0.1:5000"; \
	     $(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri "$$uri";; \
	esac

# Re-pin every transitive dependency after changing pyproject.toml. Local version labels
# (torch's +cpu from a local wheel) are dropped: PyPI knows only the public version.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^latentanon' | sed -E 's/\+[A-Za-z0-9.]+$$//' > requirements.lock

# Proves that every pin in requirements.lock and backend-protos.lock resolves from PyPI alone on
# this platform (Linux x86_64, Python 3.11): --isolated ignores pip's config and PIP_* variables,
# so no local wheel folder or mirror helps. A recent pip reads each wheel's metadata (PEP 658)
# instead of downloading it. Needs the network; not part of `make test`.
LOCK_CHECK_VENV := build/lock-check
LOCK_CHECK_PIP := pip==25.3
lock-check:
	rm -rf $(LOCK_CHECK_VENV)
	$(PYTHON) -m venv $(LOCK_CHECK_VENV)
	$(LOCK_CHECK_VENV)/bin/python -m pip install --isolated --quiet --disable-pip-version-check "$(LOCK_CHECK_PIP)"
	@for lock in requirements.lock backend-protos.lock; do \
	  $(LOCK_CHECK_VENV)/bin/python -m pip install --isolated --disable-pip-version-check --quiet --report - \
	    --dry-run --ignore-installed --no-deps -r $$lock > $(LOCK_CHECK_VENV)/report.json || exit 1; \
	  $(LOCK_CHECK_VENV)/bin/python -c "import json, sys; r = json.load(open('$(LOCK_CHECK_VENV)/report.json'))['install']; \
	  print(f'lock-check: all {len(r)} pins of {sys.argv[1]} resolve from PyPI alone')" $$lock || exit 1; \
	done

clean:
	rm -rf data/benchmark data/manifests features features_anon models reports
