#!/usr/bin/env bash
# The main job end to end on CPU, stage by stage, with the same commands a user types.
# Called by `make demo` with the project's .venv first on PATH; ends with a table of every
# stage's output and a number read back from it (scripts/demo_summary.py).
set -euo pipefail
OUT=${DEMO_OUT:-demo_out}
SIZE=${DEMO_SIZE:-64}
mkdir -p "$OUT"
stage() { printf '\n== %s\n' "$*"; }

SHARED=${DEMO_SHARED:-../shared/data}
if [[ -z ${DEMO_SYNTHETIC:-} && -f $SHARED/duts-tr/train.txt && -f $SHARED/pascal-s/test.txt ]]; then
  # Real photographs: an ImageNet-pretrained EfficientNet-Lite0 learns saliency from 480 DUTS-TR photographs
  # in a couple of minutes; it is judged on 40 PASCAL-S photographs it never saw (links, nothing is copied).
  # As make real's recipe does, G(X) learns first (BCE + soft IoU), and the cooperative model starts from it.
  stage "1/7 real photographs: 480 DUTS-TR to train on, 24 more to check the export, 40 PASCAL-S to judge → $OUT/data"
  mkdir -p "$OUT/data"
  awk 'NR % 20 == 1 && n++ < 320' "$SHARED/duts-tr/train.txt" > "$OUT/data/gx.txt"
  awk 'NR % 20 == 11 && n++ < 160' "$SHARED/duts-tr/train.txt" > "$OUT/data/train.txt"
  awk 'NR % 20 == 7 && n++ < 24' "$SHARED/duts-tr/train.txt" > "$OUT/data/calib.txt"
  head -40 "$SHARED/pascal-s/test.txt" > "$OUT/data/test.txt"
  sal-data link-split --data "$SHARED/duts-tr" --split "$OUT/data/gx.txt" --out "$OUT/data/gx" --force
  sal-data link-split --data "$SHARED/duts-tr" --split "$OUT/data/train.txt" --out "$OUT/data/train" --force
  sal-data link-split --data "$SHARED/duts-tr" --split "$OUT/data/calib.txt" --out "$OUT/data/calib" --force
  sal-data link-split --data "$SHARED/pascal-s" --split "$OUT/data/test.txt" --out "$OUT/data/test" --force

  stage "2/7 train G(X) on 320 photos, then the cooperative model from it on 160 more → $OUT/gx, $OUT/coop"
  LITE=(--preset lite --size "${DEMO_REAL_SIZE:-160}" --epochs 1 --iou-weight 1 --force)
  train-coop --data "$OUT/data/gx" --out "$OUT/gx" "${LITE[@]}" --generator-only deterministic
  train-coop --data "$OUT/data/train" --out "$OUT/coop" "${LITE[@]}" --langevin-steps 3 --init "$OUT/gx/last.pt"
  CALIB=(--calib "$OUT/data/calib")
else
  # No shared photographs (or DEMO_SYNTHETIC=1): procedural scenes and the tiny model, in about half a minute.
  stage "1/7 synthetic dataset → $OUT/data"
  sal-data synth --out "$OUT/data/train" --n 200 --size "$SIZE" --seed 0 --force
  sal-data synth --out "$OUT/data/test" --n 40 --size "$SIZE" --seed 1 --force

  stage "2/7 train a tiny cooperative model → $OUT/coop"
  train-coop --data "$OUT/data/train" --out "$OUT/coop" --preset tiny --size "$SIZE" --epochs 5 --force
  CALIB=()
fi

stage "3/7 export → $OUT/bundle"
export-trt --ckpt "$OUT/coop/last.pt" --out "$OUT/bundle" --force "${CALIB[@]}"

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
