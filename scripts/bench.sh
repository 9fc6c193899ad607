#!/usr/bin/env bash
# The performance record: both models at their paper presets (352², N = 10, K = 5) after one
# training step on synthetic data (speed does not depend on the weights), exported, and the
# bundles `make real` exported (the EfficientNet-Lite models a user deploys; BENCH_REAL=DIR,
# default runs/real, empty to leave them out; never trained here), each through `sal-runtime
# bench` with the plan `auto` chooses on this CPU, against torch the authors' way and torch's best
# CPU recipe in the same run (both through the salkit[train] bench plug-in), and the paper
# presets' CPU plans in BENCH_PLANS timed interleaved per graph and per predict. The records are
# kept under their CPU class (BENCH_KEEP, docs/bench) and the docs written from every class kept:
# the full records into BENCH_DOC (docs/speed.md), a short table per class into BENCH_README
# (README.md); an empty value skips that step. Called by `make bench`.
set -euo pipefail
OUT=${BENCH_OUT:-runs/bench}
SIZE=352
# Batches: coop 1, 2, 8 as every earlier record; the others fewer, so a run takes about half an hour
# on 2 cores (the cooperative whole path and torch the authors' way dominate at large batches).
BATCHES=${BENCH_BATCHES:-1,2,8}
PLAN_BATCHES=${BENCH_PLAN_BATCHES:-1}
PLANS=${BENCH_PLANS:-ort-cpu:fp32,openvino:fp32}
# Real photographs to calibrate int8 on and gate reduced precision with (PASCAL-S's train split);
# without them `export-trt --precision auto` keeps fp32 and says so.
CALIB=${BENCH_CALIB:-../shared/data/pascal-s}
CALIB_ARGS=()
[[ -f $CALIB/train.txt ]] && CALIB_ARGS=(--calib "$CALIB")
REAL=${BENCH_REAL-runs/real}
REAL_BATCHES=${BENCH_REAL_BATCHES:-1,4}
KEEP=${BENCH_KEEP-docs/bench}
README=${BENCH_README-}
mkdir -p "$OUT"
stage() { printf '\n== [%d min] %s\n' $((SECONDS / 60)) "$*"; }

# make real's bundles, found first so a missing one is said before the long part: KIND BUNDLE CHECKPOINT lines.
REAL_BUNDLES=()
if [[ -z $REAL ]]; then
    echo "BENCH_REAL is empty: benching the paper presets only"
else
    found=$(python -m experiments.bench_real "$REAL")  # a crash stops the bench (set -e); absence is one line on stderr
    [[ -n $found ]] && mapfile -t REAL_BUNDLES <<<"$found"
fi

stage "synthetic data ($SIZE²) → $OUT/data"
sal-data synth --out "$OUT/data" --n 8 --size "$SIZE" --seed 0 --force

stage "one training step of each paper preset → $OUT/coop, $OUT/qefpn"
train-coop --data "$OUT/data" --out "$OUT/coop" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force
train-qefpn --data "$OUT/data" --out "$OUT/qefpn" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force

stage "export → $OUT/bundle_coop, $OUT/bundle_qefpn"
# The paper's K = 5: the step gate would judge the energy of a one-step training (it kept K = 0 on the AMD EPYC run
# of 2026-12-07, so that record's paper row times no energy step, torch's side too).
export-trt --ckpt "$OUT/coop/last.pt" --out "$OUT/bundle_coop" --force --energy-steps trained "${CALIB_ARGS[@]}"
export-trt --ckpt "$OUT/qefpn/last.pt" --out "$OUT/bundle_qefpn" --force "${CALIB_ARGS[@]}"

stage "bench → $OUT/coop.json, $OUT/qefpn.json"
sal-runtime bench --engine "$OUT/bundle_coop" --compare-torch "$OUT/coop/last.pt" --batch "$BATCHES" --json "$OUT/coop.json"
sal-runtime bench --engine "$OUT/bundle_qefpn" --compare-torch "$OUT/qefpn/last.pt" --batch "${BENCH_QEFPN_BATCHES:-1,2}" \
    --json "$OUT/qefpn.json"
RECORDS=("$OUT/coop.json" "$OUT/qefpn.json")
CHECK=("$OUT/bundle_coop" "$OUT/bundle_qefpn")

for line in "${REAL_BUNDLES[@]}"; do
    read -r kind bundle ckpt <<<"$line"
    stage "make real's $kind bundle $bundle (torch from $ckpt) → $OUT/real_$kind.json"
    sal-runtime bench --engine "$bundle" --compare-torch "$ckpt" --batch "$REAL_BATCHES" --json "$OUT/real_$kind.json"
    RECORDS+=("$OUT/real_$kind.json")
    CHECK+=("$bundle")
done

GATES=()
if [[ -f $CALIB/test.txt ]]; then
    stage "the chosen precision on photographs export never saw ($CALIB, test split) → $OUT/gate_test_*.json"
    for bundle in "${CHECK[@]}"; do
        name=$(basename "$(dirname "$bundle")")_$(basename "$bundle")  # bench_bundle_coop, real_bundle_coop …
        python -m experiments.gate_check --engine "$bundle" --data "$CALIB" --split test --images 24 \
            --json "$OUT/gate_test_$name.json" >/dev/null
        GATES+=(--gate "$OUT/gate_test_$name.json")
    done
fi

stage "speed records${KEEP:+ kept in $KEEP}${BENCH_DOC:+, $BENCH_DOC}${README:+, $README} ← ${RECORDS[*]}"
python -m experiments.bench_readme "${RECORDS[@]}" "${GATES[@]}" --out "$OUT/bench.md" \
    ${KEEP:+--keep "$KEEP"} ${BENCH_DOC:+--doc "$BENCH_DOC"} ${README:+--readme "$README"}

# The CPU plans interleaved, on small batches: every plan holds its buffers and its engine's
# arenas at once, and at 352² with N = 10 three plans at batch 8 need more than 24 GiB.
stage "plans interleaved ($PLANS) → $OUT/coop_plans.json, $OUT/qefpn_plans.json"
sal-runtime bench --engine "$OUT/bundle_coop" --batch "$PLAN_BATCHES" --compare-plans "$PLANS" --json "$OUT/coop_plans.json"
sal-runtime bench --engine "$OUT/bundle_qefpn" --batch "$PLAN_BATCHES" --compare-plans "$PLANS" --json "$OUT/qefpn_plans.json"
stage "done"
