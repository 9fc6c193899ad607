# The two set-up commands: `make demo` (the main job end to end on CPU) and `make test`.
# Both create .venv when it is missing and install salkit with everything the demo and the
# tests need; a second run reuses it (the stamp is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.salkit-installed

.PHONY: demo test bench loadtest clean-demo repro

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all]"
	@touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The performance record at 352² (sal-runtime bench against torch eager), in runs/bench/*.json.
bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/bench.sh

# locust against a local `sal-runtime serve` with real photographs: runs/loadtest/loadtest.{json,csv}
# (LOADTEST_ARGS="--duration 30 --users 8"; LOADTEST_BUNDLE=DIR to load another bundle).
loadtest: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/loadtest.sh $(LOADTEST_ARGS)

# Reproduce the papers' claims on the synthetic set (REPRO_ARGS="--budget quick" on a busy machine).
repro: $(STAMP)
	$(PY) -m salkit.train.repro $(REPRO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf demo_out
