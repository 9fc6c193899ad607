#!/usr/bin/env bash
# The main job end to end on CPU, stage by stage, with the same commands a user types.
# Called by `make demo` with the project's .venv first on PATH.
set -euo pipefail
OUT=${DEMO_OUT:-demo_out}
SIZE=${DEMO_SIZE:-64}
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }

stage "1/6 synthetic dataset → $OUT/data"
sal-data synth --out "$OUT/data/train" --n 200 --size "$SIZE" --seed 0 --force
sal-data synth --out "$OUT/data/test" --n 40 --size "$SIZE" --seed 1 --force

stage "2/6 train a tiny cooperative model → $OUT/coop"
train-coop --data "$OUT/data/train" --out "$OUT/coop" --preset tiny --size "$SIZE" --epochs 2

stage "3/6 export → $OUT/bundle"
export-trt --ckpt "$OUT/coop/last.pt" --out "$OUT/bundle" --force

stage "4/6 runtime predictions → $OUT/pred"
sal-runtime predict --engine "$OUT/bundle" --input "$OUT/data/test/img" --out "$OUT/pred" --uncertainty

stage "5/6 metrics → $OUT/metrics.json, $OUT/curves.png"
sal-runtime eval --pred "$OUT/pred" --gt "$OUT/data/test/gt" --json "$OUT/metrics.json" --plot "$OUT/curves.png"

stage "6/6 picture → $OUT/grid.png"
sal-runtime predict --engine "$OUT/bundle" --input "$OUT/data/test/img" --out "$OUT/pred" --uncertainty --grid "$OUT/grid.png" --limit 8
