# The two set-up commands: `make demo` (the main job end to end on CPU) and `make test`.
# Both create .venv when it is missing and install salkit with everything the demo and the
# tests need; a second run reuses it (the stamp is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.salkit-installed
# The Triton server the live Triton test talks to, in a venv of its own (scripts/triton_env.sh).
TRITON_ENV ?= .triton-env
# Headless Chromium for the browser test of `serve`'s page: Debian's package (scripts/chromium_env.sh);
# CHROMIUM_ENV/.ready names the binary.
CHROMIUM_ENV ?= .chromium-env

.PHONY: demo lint test test-fast bench loadtest clean-demo repro real real-full real-curve real-seeds triton-env chromium-env

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all]"
	@touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The performance record (sal-runtime bench against torch eager and torch's best CPU recipe) of the
# paper presets at 352² and of make real's bundles (BENCH_REAL, empty to leave them out), in
# runs/bench/*.json, kept per CPU class in BENCH_KEEP; the full records go to BENCH_DOC, a short
# table per CPU class to BENCH_README (empty to skip either).
BENCH_DOC ?= docs/speed.md
BENCH_README ?= README.md
BENCH_REAL ?= runs/real
BENCH_KEEP ?= docs/bench
bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" BENCH_DOC="$(BENCH_DOC)" BENCH_README="$(BENCH_README)" BENCH_REAL="$(BENCH_REAL)" \
		BENCH_KEEP="$(BENCH_KEEP)" bash scripts/bench.sh

# locust against a local `sal-runtime serve` with real photographs: runs/loadtest/loadtest.{json,csv}
# (LOADTEST_ARGS="--duration 30 --users 8"; LOADTEST_BUNDLE=DIR to load another bundle).
loadtest: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/loadtest.sh $(LOADTEST_ARGS)

# Reproduce the papers' claims on the synthetic set (REPRO_ARGS="--budget quick" on a busy machine).
repro: $(STAMP)
	$(PY) -m experiments.repro $(REPRO_ARGS)

# Train on DUTS-TR from ImageNet EfficientNet-Lite0, export, judge on all of PASCAL-S (≤ 60 min on 2 idle cores;
# resumes where it stopped; REAL_ARGS="--recipe full" for the hours-long one).
# The report shows the recipe trials recorded in REAL_TRIALS: the kept record docs/real/trials.json (runs/ is not
# kept; experiments/real_trials.py writes runs/real_trials/trials.json, copy it there to publish new trials).
REAL_OUT ?= runs/real
REAL_DATA ?= ../shared/data/pascal-s
REAL_TRAIN_DATA ?= ../shared/data/duts-tr
REAL_TRIALS ?= docs/real/trials.json
real: $(STAMP)
	$(PY) experiments/real.py --out $(REAL_OUT) --data $(REAL_DATA) --train-data $(REAL_TRAIN_DATA) $(if $(wildcard $(REAL_TRIALS)),--trials $(REAL_TRIALS)) $(REAL_ARGS)

# The hours-long recipe in its own folder (resumable: stop it any time, `make real-full` again continues), and its
# curve: every kept checkpoint judged on the trials' held-out DUTS-TR photos beside REAL_OUT's hour-recipe jobs
# (experiments/real_curve.py → $(REAL_FULL_OUT)/curve/curve.{md,json,png}; it can run while the training does;
# REAL_CURVE_ARGS=--benchmark also judges each job's latest checkpoint on every PASCAL-S photo, to report only).
REAL_FULL_OUT ?= runs/real_full
real-full: $(STAMP)
	$(PY) experiments/real.py --out $(REAL_FULL_OUT) --recipe full --data $(REAL_DATA) --train-data $(REAL_TRAIN_DATA) $(REAL_ARGS)
real-curve: $(STAMP)
	$(PY) experiments/real_curve.py --run $(REAL_FULL_OUT) --reference $(REAL_OUT) --train-data $(REAL_TRAIN_DATA) $(REAL_CURVE_ARGS)

# The spread over seeds: `make -j2 real-seeds` trains the recipe again for each of REAL_SEEDS, the runs side by
# side (each run's two lanes take a thread each: about 90 min on 2 idle cores; REAL_SEEDS_ARGS="--skip gxh
# --skip scribble" leaves out the two rows no claim of the energy needs, about 60 min), then puts them beside
# REAL_OUT's run (`make real` first) in $(REAL_OUT)_seeds/seeds.{json,md}, photo by photo too.
REAL_SEEDS ?= 1 2
real-seed-%: $(STAMP)
	$(PY) experiments/real.py --out $(REAL_OUT)_seed$* --seed $* --data $(REAL_DATA) --train-data $(REAL_TRAIN_DATA) $(REAL_ARGS) $(REAL_SEEDS_ARGS)
real-seeds: $(addprefix real-seed-,$(REAL_SEEDS))
	$(PY) experiments/real_seeds.py $(REAL_OUT) $(addprefix $(REAL_OUT)_seed,$(REAL_SEEDS)) --out $(REAL_OUT)_seeds --per-photo

# Every test: `pytest` alone deselects the `slow` ones (pyproject addopts -m "not slow");
# `-m "slow or not slow"` selects them back, in the same run (the session fixtures are built once).
# `gpu` tests are selected and skip themselves on a machine without an NVIDIA GPU.
# ruff's rules and ignores: pyproject.toml [tool.ruff]. No formatter: the hand layout stays.
lint: $(STAMP)
	$(PY) -m ruff check .

test: lint $(STAMP) $(TRITON_ENV)/.ready $(CHROMIUM_ENV)/.ready
	SALKIT_TRITON_ENV="$(abspath $(TRITON_ENV))" SALKIT_CHROMIUM="$$(cat $(CHROMIUM_ENV)/.ready)" $(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

# The quick loop while working: no slow tests.
test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

triton-env: $(TRITON_ENV)/.ready

$(TRITON_ENV)/.ready: scripts/triton_env.sh
	PYTHON=$(PYTHON) bash scripts/triton_env.sh $(TRITON_ENV)

chromium-env: $(CHROMIUM_ENV)/.ready

$(CHROMIUM_ENV)/.ready: scripts/chromium_env.sh
	bash scripts/chromium_env.sh $(CHROMIUM_ENV)

clean-demo:
	rm -rf demo_out
