#!/usr/bin/env bash
# The performance record at the papers' size (352², N = 10, K = 5, ort-cpu fp32): both models at
# their paper presets after one training step on synthetic data (speed does not depend on the
# weights), exported, then `sal-runtime bench` against torch eager. Called by `make bench`.
set -euo pipefail
OUT=${BENCH_OUT:-runs/bench}
SIZE=352
BATCHES=${BENCH_BATCHES:-1,2,4,8}
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }

stage "synthetic data ($SIZE²) → $OUT/data"
sal-data synth --out "$OUT/data" --n 8 --size "$SIZE" --seed 0 --force

stage "one training step of each paper preset → $OUT/coop, $OUT/qefpn"
train-coop --data "$OUT/data" --out "$OUT/coop" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force
train-qefpn --data "$OUT/data" --out "$OUT/qefpn" --preset paper --size "$SIZE" --batch-size 2 --max-steps 1 --force

stage "export → $OUT/bundle_coop, $OUT/bundle_qefpn"
export-trt --ckpt "$OUT/coop/last.pt" --out "$OUT/bundle_coop" --force
export-trt --ckpt "$OUT/qefpn/last.pt" --out "$OUT/bundle_qefpn" --force

stage "bench → $OUT/coop.json, $OUT/qefpn.json"
sal-runtime bench --engine "$OUT/bundle_coop" --compare-torch "$OUT/coop/last.pt" --batch "$BATCHES" --json "$OUT/coop.json"
sal-runtime bench --engine "$OUT/bundle_qefpn" --compare-torch "$OUT/qefpn/last.pt" --batch "${BENCH_QEFPN_BATCHES:-1,8}" --json "$OUT/qefpn.json"
