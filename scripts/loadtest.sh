#!/usr/bin/env bash
# `make loadtest`: locust against a local `sal-runtime serve` with real photographs (scripts/loadtest.py).
#
# The bundle is $LOADTEST_BUNDLE when given; otherwise the cooperative model at its `paper` preset
# after one training step on synthetic scenes (speed does not depend on the weights), exported at
# $LOADTEST_SIZE² (default 128: the real architecture, small enough that a 60 s run on two cores
# sees hundreds of requests) into $LOADTEST_OUT/bundle, made once and reused.
# Arguments ($LOADTEST_ARGS from make) go to scripts/loadtest.py: --duration 60 --users 16
# --max-batch (users) --backend auto --data ../shared/data/pascal-s --split test ...
# Everything runs under `nice -n $LOADTEST_NICE` (default 10): the machine may be shared.
set -euo pipefail
OUT=${LOADTEST_OUT:-runs/loadtest}
SIZE=${LOADTEST_SIZE:-128}
NICE=${LOADTEST_NICE:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
stage() { printf '\n== %s\n' "$*"; }

for tool in sal-runtime sal-data train-coop export-trt python; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not on PATH (run through 'make loadtest')" >&2; exit 2; }
done
[[ $SIZE =~ ^[0-9]+$ ]] || { echo "error: LOADTEST_SIZE must be a whole number, got '$SIZE'" >&2; exit 2; }
mkdir -p "$OUT"

BUNDLE=${LOADTEST_BUNDLE:-}
if [[ -z $BUNDLE ]]; then
    BUNDLE=$OUT/bundle
    if [[ ! -f $BUNDLE/manifest.json ]]; then
        stage "a coop bundle at the paper preset, ${SIZE}² → $BUNDLE"
        nice -n "$NICE" sal-data synth --out "$OUT/data" --n 8 --size "$SIZE" --seed 0 --force
        nice -n "$NICE" train-coop --data "$OUT/data" --out "$OUT/coop" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force
        nice -n "$NICE" export-trt --ckpt "$OUT/coop/last.pt" --out "$BUNDLE" --force
    fi
fi

stage "load test: $BUNDLE → $OUT/loadtest.json, $OUT/loadtest.csv"
# shellcheck disable=SC2086 — LOADTEST_ARGS is a list of options
nice -n "$NICE" python "$HERE/loadtest.py" --bundle "$BUNDLE" --out "$OUT" "$@"
