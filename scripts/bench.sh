#!/usr/bin/env bash
# The performance record at the papers' size (352², N = 10, K = 5): both models at their paper
# presets after one training step on synthetic data (speed does not depend on the weights),
# exported, then `sal-runtime bench` with the plan `auto` chooses on this CPU, against torch the
# authors' way and torch's best CPU recipe (both through the salkit[train] bench plug-in), and the
# CPU plans in BENCH_PLANS timed interleaved per graph and per predict. Called by `make bench`.
set -euo pipefail
OUT=${BENCH_OUT:-runs/bench}
SIZE=352
BATCHES=${BENCH_BATCHES:-1,2,8}
PLAN_BATCHES=${BENCH_PLAN_BATCHES:-1,2}
PLANS=${BENCH_PLANS:-ort-cpu:fp32,openvino:fp32}
# Real photographs to calibrate int8 on and gate reduced precision with (PASCAL-S's train split);
# without them `export-trt --precision auto` keeps fp32 and says so.
CALIB=${BENCH_CALIB:-../shared/data/pascal-s}
CALIB_ARGS=()
[[ -f $CALIB/train.txt ]] && CALIB_ARGS=(--calib "$CALIB")
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }

stage "synthetic data ($SIZE²) → $OUT/data"
sal-data synth --out "$OUT/data" --n 8 --size "$SIZE" --seed 0 --force

stage "one training step of each paper preset → $OUT/coop, $OUT/qefpn"
train-coop --data "$OUT/data" --out "$OUT/coop" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force
train-qefpn --data "$OUT/data" --out "$OUT/qefpn" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force

stage "export → $OUT/bundle_coop, $OUT/bundle_qefpn"
export-trt --ckpt "$OUT/coop/last.pt" --out "$OUT/bundle_coop" --force "${CALIB_ARGS[@]}"
export-trt --ckpt "$OUT/qefpn/last.pt" --out "$OUT/bundle_qefpn" --force "${CALIB_ARGS[@]}"

stage "bench → $OUT/coop.json, $OUT/qefpn.json"
sal-runtime bench --engine "$OUT/bundle_coop" --compare-torch "$OUT/coop/last.pt" --batch "$BATCHES" --json "$OUT/coop.json"
sal-runtime bench --engine "$OUT/bundle_qefpn" --compare-torch "$OUT/qefpn/last.pt" --batch "${BENCH_QEFPN_BATCHES:-1,8}" \
    --json "$OUT/qefpn.json"

GATES=()
if [[ -f $CALIB/test.txt ]]; then
    stage "the chosen precision on photographs export never saw ($CALIB, test split) → $OUT/gate_test_*.json"
    for kind in coop qefpn; do
        python -m experiments.gate_check --engine "$OUT/bundle_$kind" --data "$CALIB" --split test --images 24 \
            --json "$OUT/gate_test_$kind.json" >/dev/null
        GATES+=(--gate "$OUT/gate_test_$kind.json")
    done
fi

stage "speed section${BENCH_DOC:+ of $BENCH_DOC} ← $OUT/coop.json, $OUT/qefpn.json"
python -m experiments.bench_readme "$OUT/coop.json" "$OUT/qefpn.json" "${GATES[@]}" --out "$OUT/bench.md" \
    ${BENCH_DOC:+--doc "$BENCH_DOC"}

# The CPU plans interleaved, on small batches: every plan holds its buffers and its engine's
# arenas at once, and at 352² with N = 10 three plans at batch 8 need more than 24 GiB.
stage "plans interleaved ($PLANS) → $OUT/coop_plans.json, $OUT/qefpn_plans.json"
sal-runtime bench --engine "$OUT/bundle_coop" --batch "$PLAN_BATCHES" --compare-plans "$PLANS" --json "$OUT/coop_plans.json"
sal-runtime bench --engine "$OUT/bundle_qefpn" --batch "$PLAN_BATCHES" --compare-plans "$PLANS" --json "$OUT/qefpn_plans.json"
