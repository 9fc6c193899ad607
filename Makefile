# The two set-up commands: `make demo` (the main job end to end on CPU) and `make test`.
# Both create .venv when it is missing and install salkit with everything the demo and the
# tests need; a second run reuses it (the stamp is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.salkit-installed

.PHONY: demo test bench clean-demo repro real

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all]"
	@touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The performance record at 352² (sal-runtime bench against torch eager), in runs/bench/*.json.
bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/bench.sh

# Reproduce the papers' claims on the synthetic set (REPRO_ARGS="--budget quick" on a busy machine).
repro: $(STAMP)
	$(PY) -m salkit.train.repro $(REPRO_ARGS)

# Train, export and judge on the real photographs of PASCAL-S (≤ 60 min on 2 cores; resumes where it stopped).
REAL_OUT ?= runs/real
REAL_DATA ?= ../shared/data/pascal-s
real: $(STAMP)
	$(PY) experiments/real.py --out $(REAL_OUT) --data $(REAL_DATA) $(REAL_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf demo_out
