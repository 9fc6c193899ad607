"""The recipe trials' table: each trial's name, training options and judge (run by experiments/real_trials.py).

Each block records the question it asked; the answers are in docs/real/trials.json and, for the recipe that
make real keeps, in the comments of experiments/real_train.py.
"""

from __future__ import annotations

from typing import Any

TINY = ["--preset", "tiny"]
# name → train-coop options on fit.txt, judged after each number of epochs in "epochs" (one run,
# resumed: the tiny preset's schedule does not depend on the total, so 3 then 6 epochs = 6 epochs);
# "pretrain": procedural scenes the generator learns first; "max_steps": only time the steps.
TRIALS: dict[str, dict[str, Any]] = {
    "128px crop 0.75": {"epochs": [3, 6], "args": [*TINY, "--size", "128", "--crop", "0.75"]},
    "160px crop 0.75": {"epochs": [3], "args": [*TINY, "--size", "160", "--crop", "0.75"]},
    "96px crop 0.75": {"epochs": [3, 6], "args": [*TINY, "--size", "96", "--crop", "0.75"]},
    "128px flip only": {"epochs": [3], "args": [*TINY, "--size", "128", "--crop", "1"]},
    "128px crop 0.5": {"epochs": [3], "args": [*TINY, "--size", "128", "--crop", "0.5"]},
    "128px crop 0.75 + procedural pre-training": {"epochs": [3], "args": [*TINY, "--size", "128", "--crop", "0.75"],
                                                  "pretrain": {"n": 400, "size": 128, "seed": 0, "epochs": 2}},
    "128px resnet18 backbone (no ImageNet weights)": {"epochs": [1], "max_steps": 8,
                                                      "args": [*TINY, "--backbone", "resnet18", "--size", "128", "--crop", "0.75"]},
    # The generator's capacity, judged on the cheap deterministic G(X) (h = 0): does a wider encoder learn more?
    "G(X) 128px tiny backbone": {"epochs": [6, 12, 24], "judge": "h0",
                                 "args": [*TINY, "--size", "128", "--crop", "0.75", "--generator-only", "deterministic"]},
    "G(X) 128px tiny backbone + procedural pre-training": {
        "epochs": [12], "judge": "h0", "pretrain": {"n": 1000, "size": 128, "seed": 0, "epochs": 3},
        "args": [*TINY, "--size", "128", "--crop", "0.75", "--generator-only", "deterministic"]},
    "G(X) 128px resnet18 backbone": {"epochs": [4, 8, 12], "judge": "h0",
                                     "args": [*TINY, "--backbone", "resnet18", "--size", "128", "--crop", "0.75",
                                              "--generator-only", "deterministic"]},
}
# DUTS-TR from ImageNet EfficientNet-Lite0 (make real's recipes): each trial trains on the first "images" ids of
# the pool make real draws its jobs from, and is judged on the first HELD_JUDGED of make real's held-out ids.
LITE = ["--preset", "lite", "--crop", "0.75"]
GX = ["--generator-only", "deterministic"]
LITE_TRIALS: dict[str, dict[str, Any]] = {
    "lite G(X) 224px, backbone lr ×0.2, 800 photos": {"epochs": [1], "images": 800, "judge": "h0",
                                                      "args": [*LITE, "--size", "224", *GX]},
    "lite G(X) 224px, backbone lr ×1, 800 photos": {"epochs": [1], "images": 800, "judge": "h0",
                                                    "args": [*LITE, "--size", "224", "--lr-backbone-scale", "1", *GX]},
    "lite G(X) 224px, backbone lr ×0.05, 800 photos": {"epochs": [1], "images": 800, "judge": "h0",
                                                       "args": [*LITE, "--size", "224", "--lr-backbone-scale", "0.05", *GX]},
    "lite G(X) 256px, backbone lr ×0.2, 800 photos": {"epochs": [1], "images": 800, "judge": "h0",
                                                      "args": [*LITE, "--size", "256", *GX]},
    "lite G(X) 224px, backbone lr ×0.2, 1600 photos": {"epochs": [1], "images": 1600, "judge": "h0",
                                                       "args": [*LITE, "--size", "224", *GX]},
}
# Trainings in channels_last (1.4–1.8× the steps per second of the trials above): equal CPU budgets, about
# 13 CPU minutes each. Does coop learn more per CPU minute warm-started from a trained G(X) (its weights on h
# zeroed: G(X, h) starts as G(X)) than from ImageNet alone? Does a smaller input buy more photos' worth?
# "init_trial": start from that trial's weights (run it first); "skip": the photos after the first N of the pool.
LITE_TRIALS.update({
    "lite G(X) 224px, 2400 photos": {"epochs": [1], "images": 2400, "judge": "h0", "args": [*LITE, "--size", "224", *GX]},
    "lite coop K3 224px from G(X) 2400, +600 photos": {"epochs": [1], "images": 600, "skip": 2400, "judge": "coop",
                                                       "init_trial": "lite G(X) 224px, 2400 photos",
                                                       "args": [*LITE, "--size", "224", "--langevin-steps", "3"]},
    "lite coop K3 224px from ImageNet, 1500 photos": {"epochs": [1], "images": 1500, "judge": "coop",
                                                      "args": [*LITE, "--size", "224", "--langevin-steps", "3"]},
    "lite G(X) 224px + IoU, 2400 photos": {"epochs": [1], "images": 2400, "judge": "h0",
                                           "args": [*LITE, "--size", "224", *GX, "--iou-weight", "1"]},
    "lite G(X) 192px, 3300 photos": {"epochs": [1], "images": 3300, "judge": "h0", "args": [*LITE, "--size", "192", *GX]},
})
# A stronger ImageNet backbone for the same photos (Lite1 76.7 %, Lite2 77.6 % top-1 against Lite0's 75.1 %):
# does it buy more S than its extra CPU would buy in photos for Lite0?
LITE_TRIALS.update({
    f"lite{v} G(X) 224px + IoU, 2400 photos": {"epochs": [1], "images": 2400, "judge": "h0",
                                               "args": [*LITE, "--backbone", f"efficientnet-lite{v}", "--size", "224", *GX,
                                                        "--iou-weight", "1"]}
    for v in (1, 2)
})
# A short run at a constant rate ends with the noise of its last steps in the weights: the rate decaying linearly
# to 0 at the last step (--lr-schedule linear), at make real's rate and at twice it.
LITE_TRIALS.update({
    "lite G(X) 224px + IoU, 2400 photos, linear lr decay": {
        "epochs": [1], "images": 2400, "judge": "h0", "args": [*LITE, "--size", "224", *GX, "--iou-weight", "1", "--lr-schedule", "linear"]},
    "lite G(X) 224px + IoU, 2400 photos, linear lr decay from 2× lr": {
        "epochs": [1], "images": 2400, "judge": "h0",
        "args": [*LITE, "--size", "224", *GX, "--iou-weight", "1", "--lr-schedule", "linear", "--lr-gen", "1e-3"]},
})
# The cooperative fine-tune from a strong G(X) (make real's coop job, IoU on both): in Algorithm 1 the generator
# also regresses on the energy-revised maps, weighted 1/(2σ²) (5.6 at σ = 0.3). make real's coop Ŷ scored MAE 0.099
# on PASCAL-S against 0.080 for G(X,h) trained alone from the same start: does a larger σ (less pull towards the
# revised maps) keep the generator's accuracy?
COOP_FROM_GX = {"epochs": [1], "images": 600, "skip": 2400, "judge": "coop", "init_trial": "lite G(X) 224px + IoU, 2400 photos"}
LITE_TRIALS.update({
    f"lite coop K3 + IoU from G(X) + IoU 2400, +600 photos, σ {sigma}": {
        **COOP_FROM_GX, "args": [*LITE, "--size", "224", "--langevin-steps", "3", "--iou-weight", "1", "--sigma", str(sigma)]}
    for sigma in (0.3, 1.0, 3.0)
})
# The energy fine-tune on strong maps (train-coop --energy-only from the warm-started coop trial): the descent's
# loss BCE alone, or BCE + soft IoU; judged on Ŷ and its descent for k = 1 … 2K steps.
ENERGY = [*LITE, "--size", "224", "--langevin-steps", "3", "--energy-only"]
LITE_TRIALS.update({
    "lite energy BCE, 160 photos": {"epochs": [1], "images": 160, "skip": 3000, "judge": "descent",
                                    "init_trial": "lite coop K3 224px from G(X) 2400, +600 photos", "args": ENERGY},
    "lite energy BCE + IoU, 160 photos": {"epochs": [1], "images": 160, "skip": 3000, "judge": "descent",
                                          "init_trial": "lite coop K3 224px from G(X) 2400, +600 photos",
                                          "args": [*ENERGY, "--descent-iou", "1"]},
})
# The fine-tune above moved Ŷ by 0.004 on average in 20 steps: U's gradient per pixel is small next to δ_U = 0.4
# (U sums a pooled head; sigmoid' is small on confident logits). A larger step lets the descent move from the start.
LITE_TRIALS["lite energy BCE + IoU, 160 photos, δ_U 10"] = {
    "epochs": [1], "images": 160, "skip": 3000, "judge": "descent", "init_trial": "lite coop K3 224px from G(X) 2400, +600 photos",
    "args": [*ENERGY, "--descent-iou", "1", "--energy-step", "10"]}
# make real's own checkpoints judged on the same held-out photos ("real_job": no training; "init_real": a trial that starts
# from that job's weights, on the photos that job's successor saw). On PASCAL-S the coop fine-tune's Ŷ scored MAE 0.102
# against 0.080 for G(X,h) alone from the same start and photos, at the same S: greyer maps. Judged: Ŷ with and without
# the chains' noise, and Ŷ at h = 0 (the authors' test-time rule). Found (AMD EPYC run): Ŷ at h = 0 equals the mean over
# h-samples, so the decoder does not use h (the hypothesis that h learns to explain the noise is refuted); the
# regression term is the noise alone (0.24 = ½ its variance), and without it Ŷ scored MAE 0.056 against 0.063.
# HOUR_COOP is the hour recipe's coop options as they were before that trial (noise on).
HOUR_COOP = [*LITE, "--size", "224", "--iou-weight", "1", "--langevin-steps", "3", "--sigma", "1"]
LITE_TRIALS.update({
    "make real G(X) (hour recipe)": {"epochs": [1], "real_job": "gx", "judge": "h0"},
    "make real G(X,h) alone (hour recipe)": {"epochs": [1], "real_job": "gxh", "judge": "latent"},
    "make real coop (hour recipe)": {"epochs": [1], "real_job": "coop", "judge": "coop"},
    "make real coop (hour recipe), Ŷ at h = 0": {"epochs": [1], "real_job": "coop", "judge": "h0"},
    "coop from make real's G(X), +1200 photos, no Langevin noise": {
        "epochs": [1], "images": 1200, "skip": 6000, "init_real": "gx", "judge": "coop",
        "args": [*HOUR_COOP, "--no-langevin-noise"]},
})
# Why did make real's coop raise G(X)'s held-out MAE (0.050 → 0.056) at the same S? G(X) continued alone on the same
# 1200 photos at its own rate did too (0.056): it is the fine-tune's rate, not the energy (whose revision barely
# moves Y, the regression term stays near 1e-8). Judged: a fifth of the rate, the rate decaying to 0, both.
# And the scribble model (Algorithm 2, from ImageNet, the scribbles make real derives): its chains without noise.
SCRIBBLE = [*LITE, "--size", "224", "--langevin-steps", "3", "--scribble"]
LITE_TRIALS.update({
    "G(X) from make real's G(X), +1200 photos": {
        "epochs": [1], "images": 1200, "skip": 6000, "init_real": "gx", "judge": "h0",
        "args": [*LITE, "--size", "224", "--iou-weight", "1", *GX]},
    "coop from make real's G(X), +1200 photos, no Langevin noise, lr ×0.2": {
        "epochs": [1], "images": 1200, "skip": 6000, "init_real": "gx", "judge": "coop",
        "args": [*HOUR_COOP, "--no-langevin-noise", "--lr-gen", "1e-4"]},
    "coop from make real's G(X), +1200 photos, no Langevin noise, lr decaying to 0": {
        "epochs": [1], "images": 1200, "skip": 6000, "init_real": "gx", "judge": "coop",
        "args": [*HOUR_COOP, "--no-langevin-noise", "--lr-schedule", "linear"]},
    "coop from make real's G(X), +1200 photos, no Langevin noise, lr ×0.2 decaying to 0": {
        "epochs": [1], "images": 1200, "skip": 6000, "init_real": "gx", "judge": "coop",
        "args": [*HOUR_COOP, "--no-langevin-noise", "--lr-gen", "1e-4", "--lr-schedule", "linear"]},
    "make real scribble (hour recipe)": {"epochs": [1], "real_job": "scribble", "judge": "coop"},
    "scribble 1600 photos, no Langevin noise": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                                "args": [*SCRIBBLE, "--no-langevin-noise"]},
    # The recipe after these trials (G(X) on 8640 photos, the fine-tunes at lr × 0.2, scribbles on 2500): its checkpoints.
    "make real G(X) (hour recipe, 8640 photos)": {"epochs": [1], "real_job": "gx", "judge": "h0"},
    "make real G(X,h) alone (hour recipe, fine-tune at lr ×0.2)": {"epochs": [1], "real_job": "gxh", "judge": "latent"},
    "make real coop (hour recipe, fine-tune at lr ×0.2)": {"epochs": [1], "real_job": "coop", "judge": "coop"},
    "make real scribble (hour recipe, 2500 photos)": {"epochs": [1], "real_job": "scribble", "judge": "coop"},
    # Not in the paper: the edge-aware smoothness term of scribble-supervised saliency (Zhang et al. 2020, weight 0.3),
    # which spreads the strokes' labels over the regions they lie in; make real's scribble model is the baseline.
    "scribble 1600 photos, smoothness 0.3": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                             "args": [*SCRIBBLE, "--smoothness-weight", "0.3"]},
    # Zhang et al. average their partial CE over all pixels, this trainer over the labelled ones (about 1.2 % of
    # them): their β = 0.3 is about 25 here.
    "scribble 1600 photos, smoothness 25": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                            "args": [*SCRIBBLE, "--smoothness-weight", "25"]},
    "scribble 1600 photos, smoothness 100": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                             "args": [*SCRIBBLE, "--smoothness-weight", "100"]},
    # Not in the paper: the local coherence term (Yu et al. 2021; their weight 0.3 beside a partial CE averaged over
    # the labelled pixels, as here), which carries the strokes' labels over a window of pixels alike in colour.
    "scribble 1600 photos, coherence 0.3": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                            "args": [*SCRIBBLE, "--coherence-weight", "0.3"]},
    "scribble 1600 photos, coherence 1": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                          "args": [*SCRIBBLE, "--coherence-weight", "1"]},
    "scribble 1600 photos, coherence 3": {"epochs": [1], "images": 1600, "data": "scribbles", "judge": "coop",
                                          "args": [*SCRIBBLE, "--coherence-weight", "3"]},
    # Does the term steady the longer run (on 2500 photos the baseline jumped at step 120), and does a lower rate?
    "scribble 2500 photos, coherence 0.3": {"epochs": [1], "images": 2500, "data": "scribbles", "judge": "coop",
                                            "args": [*SCRIBBLE, "--coherence-weight", "0.3"]},
    "scribble 2500 photos, coherence 0.3, lr ×0.5": {"epochs": [1], "images": 2500, "data": "scribbles", "judge": "coop",
                                                     "args": [*SCRIBBLE, "--coherence-weight", "0.3", "--lr-gen", "2.5e-4"]},
})
# The hour's spare minutes (make real ended at 48 of its 60 on an idle AMD EPYC): a longer coop fine-tune from
# make real's G(X) (8640 photos) — a second pass over its 1200 photos, since the pool has only 1413 that G(X) has not
# seen — and the scribble model on more photos at its lower rate.
LITE_TRIALS.update({
    "coop from make real's G(X) (8640 photos), 1200 photos, 1–3 passes, no Langevin noise, lr ×0.2": {
        "epochs": [1, 2, 3], "images": 1200, "skip": 8640, "init_real": "gx", "judge": "coop",
        "args": [*HOUR_COOP, "--no-langevin-noise", "--lr-gen", "1e-4"]},
    "scribble 3500 photos, coherence 0.3, lr ×0.5": {"epochs": [1], "images": 3500, "data": "scribbles", "judge": "coop",
                                                     "args": [*SCRIBBLE, "--coherence-weight", "0.3", "--lr-gen", "2.5e-4"]},
})
# make real's energy fine-tune (20 steps on 160 photos) only began to learn: its descent moved maps by 5e-6 at the
# first step and 1.5e-3 at the last, growing by about a quarter a step, and lowered the batch BCE by 0.0007. Does a
# longer fine-tune learn to descend? From make real's coop, on the 200 photos after those coop saw, 1–4 passes.
# And the scribble model's rate decaying linearly to 0 (its longer runs jumped late; G(X)'s short run lost S with it).
LITE_TRIALS.update({
    "energy from make real's coop, 200 photos, 1–4 passes": {
        "epochs": [1, 2, 4], "images": 200, "skip": 9840, "init_real": "coop", "judge": "descent",
        "args": [*ENERGY, "--descent-iou", "1"]},
    "scribble 2500 photos, coherence 0.3, lr ×0.5 decaying to 0": {
        "epochs": [1], "images": 2500, "data": "scribbles", "judge": "coop",
        "args": [*SCRIBBLE, "--coherence-weight", "0.3", "--lr-gen", "2.5e-4", "--lr-schedule", "linear"]},
})
# Scribble boosting (Zhang et al. 2020): a second round from make real's scribble model (2500 photos of strokes), on the
# first 1000 of its photos, its own Ỹ labelling the pixels it is sure of (≤ low: background, ≥ high: foreground; the
# strokes keep their labels). The control: the same second round on the strokes alone.
SCRIBBLE_ROUND2 = [*SCRIBBLE, "--coherence-weight", "0.3", "--lr-gen", "2.5e-4"]
LITE_TRIALS.update({
    "make real scribble (hour recipe, 2500 photos, coherence 0.3, lr ×0.5)": {"epochs": [1], "real_job": "scribble",
                                                                             "judge": "coop"},
    "scribble round 2 from make real's, 1000 of its photos, strokes only": {
        "epochs": [1], "images": 1000, "data": "scribbles", "init_real": "scribble", "judge": "coop", "args": SCRIBBLE_ROUND2},
    "scribble round 2 from make real's, 1000 of its photos, its Ỹ ≤ 0.3 / ≥ 0.7 as labels": {
        "epochs": [1], "images": 1000, "data": "scribbles", "init_real": "scribble", "judge": "coop", "args": SCRIBBLE_ROUND2,
        "pseudo": {"from_real": "scribble", "low": 0.3, "high": 0.7}},
})
# Ỹ took 0.65 CPU s a photo to label (10 latent samples and 3 energy steps): does G(X, h = 0), one pass, label as well,
# and do 1000 photos round 1 never saw add more than a second look at 1000 it did?
LITE_TRIALS.update({
    "scribble round 2 from make real's, 1000 of its photos, its G(X, 0) ≤ 0.3 / ≥ 0.7 as labels": {
        "epochs": [1], "images": 1000, "data": "scribbles", "init_real": "scribble", "judge": "coop", "args": SCRIBBLE_ROUND2,
        "pseudo": {"from_real": "scribble", "kind": "h0", "low": 0.3, "high": 0.7}},
    "scribble round 2 from make real's, 1000 new photos, its G(X, 0) ≤ 0.3 / ≥ 0.7 as labels": {
        "epochs": [1], "images": 1000, "skip": 2500, "data": "scribbles", "init_real": "scribble", "judge": "coop",
        "args": SCRIBBLE_ROUND2, "pseudo": {"from_real": "scribble", "kind": "h0", "low": 0.3, "high": 0.7}},
})
TRIALS.update(LITE_TRIALS)
