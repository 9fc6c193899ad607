#!/usr/bin/env bash
# The main job end to end on CPU, stage by stage, with the same commands a user types.
# Called by `make demo` with the project's .venv first on PATH; ends with a table of every
# stage's output and a number read back from it (scripts/demo_summary.py).
set -euo pipefail
OUT=${DEMO_OUT:-demo_out}
SIZE=${DEMO_SIZE:-64}
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }

stage "1/7 synthetic dataset → $OUT/data"
sal-data synth --out "$OUT/data/train" --n 200 --size "$SIZE" --seed 0 --force
sal-data synth --out "$OUT/data/test" --n 40 --size "$SIZE" --seed 1 --force

stage "2/7 train a tiny cooperative model → $OUT/coop"
train-coop --data "$OUT/data/train" --out "$OUT/coop" --preset tiny --size "$SIZE" --epochs 5 --force

stage "3/7 export → $OUT/bundle"
export-trt --ckpt "$OUT/coop/last.pt" --out "$OUT/bundle" --force

stage "4/7 runtime predictions → $OUT/pred"
sal-runtime predict --engine "$OUT/bundle" --input "$OUT/data/test/img" --out "$OUT/pred" --uncertainty

stage "5/7 metrics → $OUT/metrics.json, $OUT/curves.png"
sal-runtime eval --pred "$OUT/pred" --gt "$OUT/data/test/gt" --json "$OUT/metrics.json" --plot "$OUT/curves.png"

stage "6/7 picture → $OUT/grid.png"
sal-runtime predict --engine "$OUT/bundle" --input "$OUT/data/test/img" --out "$OUT/grid_maps" --uncertainty --grid "$OUT/grid.png" --grid-gt "$OUT/data/test/gt" --limit 8

stage "7/7 serve the bundle, ask it with tritonclient and curl → $OUT/serve"
images=("$OUT"/data/test/img/*)
bash "$(dirname "$0")/demo_serve.sh" "$OUT/bundle" "${images[0]}" "$OUT/serve"

stage "summary"
python "$(dirname "$0")/demo_summary.py" "$OUT"
