"""The precision gate judges final maps, names the graph to blame, and ``auto`` keeps only what passed.

Which plan ``auto`` records depends on the CPU (bf16 is a candidate only with bf16 units) and on
timings: the tests that assert it fix both, with ``simulated_cpu`` and a time for every plan.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from salkit.base.errors import SalkitError
from salkit.export.bundle_writer import ExportOptions, export_bundle
from salkit.export.precision import auto as precision_auto
from salkit.export.precision.gate import SALIENCY_MAX_ABS, Gate, compare, failures
from salkit.runtime.bundle import load_bundle, sha256_file

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
# Stand-in predict times of every plan export may time (a plan missing here is a KeyError, not a guess).
PLAN_SECONDS = {"ort-cpu:fp32": 1.0, "openvino:fp32": 1.1, "ort-cpu:int8": 0.5, "openvino:int8": 0.6, "openvino:bf16": 0.7, "auto:mix": 0.45}


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory: pytest.TempPathFactory, untrained_coop_checkpoint: Path,
                synthetic_dataset: Path) -> Path:
    out = tmp_path_factory.mktemp("gate") / "fp32"
    export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=out, precision="fp32", calib=synthetic_dataset,
                                build_engines=False))
    return out


def _held(manifest, synthetic_dataset: Path, n: int = 3) -> np.ndarray:
    from salkit.export.precision.calib import load_calibration

    return load_calibration(synthetic_dataset, manifest.input_size, manifest.mean, manifest.std, 4, n).held


def _corrupted_copy(src: Path, dst: Path, scale: float, noise: float = 0.0) -> None:
    """The graph with every weight of rank ≥ 2 multiplied by ``scale`` and given Gaussian noise of
    ``noise`` × its own standard deviation (a broken quantisation; noise survives the norm layers)."""
    model = onnx.load(str(src))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        if len(init.dims) >= 2:
            w = numpy_helper.to_array(init)
            w = w * np.float32(scale) + (noise * w.std() * rng.standard_normal(w.shape)).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    onnx.save_model(model, str(dst))


def test_gate_refuses_a_corrupted_graph_and_names_it(tmp_path: Path, fp32_bundle: Path, synthetic_dataset: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(fp32_bundle, bundle)
    manifest = load_bundle(bundle)
    # encoder: an exact copy of the fp32 graph (harmless); latent_decoder: weights off by 60 %.
    shutil.copyfile(bundle / "encoder.onnx", bundle / "encoder.int8.onnx")
    _corrupted_copy(bundle / "latent_decoder.onnx", bundle / "latent_decoder.int8.onnx", 1.6)
    manifest.variants = {"int8": {g: {"file": f"{g}.int8.onnx", "sha256": sha256_file(bundle / f"{g}.int8.onnx")}
                                  for g in ("encoder", "latent_decoder")}}
    gate = Gate(manifest, _held(manifest, synthetic_dataset))
    verdict = gate.judge("ort-cpu:int8")
    assert verdict["passed"] is False and verdict["culprit"] == "latent_decoder"
    assert verdict["saliency_max_abs"] > SALIENCY_MAX_ABS
    assert "graph latent_decoder is to blame" in verdict["reason"] and "the maps pass" in verdict["reason"]
    assert verdict["culprit_back_in_fp32"]["saliency_max_abs"] == 0.0  # the encoder copy is exact
    # The same plan with only the exact copy passes.
    del manifest.variants["int8"]["latent_decoder"]
    assert gate.judge("ort-cpu:int8")["passed"] is True


class _EitherBreaks:
    """A stand-in predictor whose maps are wrong (+0.2) while any of ``graphs`` runs in int8."""

    def __init__(self, graphs: tuple[str, ...]) -> None:
        self.graphs = graphs

    def run(self, manifest, backend, precision, x):
        wrong = any(".int8." in manifest.graphs[n].file for n in self.graphs)
        sal = np.full((x.shape[0], 1, 4, 4), 0.5 + (0.2 if wrong else 0.0))
        return {"saliency": sal, "predictive": sal, "aleatoric": sal, "epistemic": sal}


@pytest.mark.parametrize("stand_in, phrase", [
    (lambda: _StandIns(("encoder", "latent_decoder")), "contributes most, and not alone"),  # each adds its error
    (lambda: _EitherBreaks(("encoder", "latent_decoder")), "no single graph is to blame"),  # either alone breaks it
])
def test_gate_says_when_more_than_one_graph_fails(tmp_path: Path, fp32_bundle: Path, synthetic_dataset: Path,
                                                  stand_in, phrase: str) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(fp32_bundle, bundle)
    manifest = load_bundle(bundle)
    for g in ("encoder", "latent_decoder"):
        shutil.copyfile(bundle / f"{g}.onnx", bundle / f"{g}.int8.onnx")
    manifest.variants = {"int8": {g: {"file": f"{g}.int8.onnx", "sha256": sha256_file(bundle / f"{g}.int8.onnx")}
                                  for g in ("encoder", "latent_decoder")}}
    verdict = Gate(manifest, _held(manifest, synthetic_dataset), run=stand_in().run).judge("ort-cpu:int8")
    assert verdict["passed"] is False and verdict["culprit"] in ("encoder", "latent_decoder")
    assert phrase in verdict["reason"] and "is to blame: with it back in fp32 the maps pass" not in verdict["reason"]
    assert failures(verdict["culprit_back_in_fp32"])  # one graph back alone does not rescue the maps


def test_compare_bounds_against_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    ref = {k: rng.random((2, 1, 8, 8)) for k in ("saliency", "predictive", "aleatoric", "epistemic")}
    got = {k: v.copy() for k, v in ref.items()}
    got["saliency"][0, 0, 0, 0] += 0.04  # max 0.04 ≤ 0.05, mean 0.04/128 ≤ 0.003
    got["epistemic"] += 0.011  # mean 0.011 > 0.01
    metrics = compare("coop", ref, got)
    assert metrics["saliency_max_abs"] == pytest.approx(0.04) and metrics["saliency_mean_abs"] == pytest.approx(0.04 / 128)
    assert [f[0] for f in failures(metrics)] == ["entropy mean |Δ|"]
    got["saliency"][:] = np.nan
    assert "saliency max |Δ|" in [f[0] for f in failures(compare("coop", ref, got))]
    q_ref = {"saliency": ref["saliency"], "residual": np.array([1e-3, 2e-3])}
    q_got = {"saliency": ref["saliency"], "residual": np.array([1e-3, 5e-3])}
    assert [f[0] for f in failures(compare("qefpn", q_ref, q_got, broyden_tol=1e-3))] == ["final residual"]


class _StandIns:
    """Fast stand-ins for the gate's predictor and the timers: a plan whose int8 latent_decoder is
    used is wrong (saliency + 0.2); int8 graphs time half their fp32 graph, plans as PLAN_SECONDS."""

    def __init__(self, wrong: tuple[str, ...], wrong_plans: tuple[str, ...] = ()) -> None:
        self.wrong, self.wrong_plans, self.judged = wrong, wrong_plans, []

    def run(self, manifest, backend, precision, x):
        files = {name: spec.file for name, spec in manifest.graphs.items()}
        self.judged.append(sorted(n for n, f in files.items() if ".int8." in f))
        error = sum(0.2 for n in self.wrong if ".int8." in files[n]) + (0.2 if f"{backend}:{precision}" in self.wrong_plans else 0.0)
        sal = np.full((x.shape[0], 1, 4, 4), 0.5 + error)
        return {"saliency": sal, "predictive": sal, "aleatoric": sal, "epistemic": sal}

    @staticmethod
    def graph_timer(paths, feeds):
        return [1.0 if ".int8." not in p.name else 0.5 for p in paths]

    @staticmethod
    def plan_timer(plans, x):
        return [PLAN_SECONDS[f"{backend}:{precision}"] for _, backend, precision in plans]

    @staticmethod
    def graph_plan_timer(manifest, graph, plans, feeds):
        return [PLAN_SECONDS[plan] for plan in plans]


def _auto_export(tmp_path: Path, checkpoint: Path, calib: Path, monkeypatch, wrong: tuple[str, ...],
                 wrong_plans: tuple[str, ...] = (), energy_steps: str = "trained"):
    """precision auto with the stand-ins; the training's K by default, so the predict runs energy_grad."""
    fakes = _StandIns(wrong, wrong_plans)
    monkeypatch.setattr(precision_auto, "run_with_predictor", fakes.run)
    monkeypatch.setattr(precision_auto, "time_graphs", fakes.graph_timer)
    monkeypatch.setattr(precision_auto, "time_plans", fakes.plan_timer)
    monkeypatch.setattr(precision_auto, "time_graph_plans", fakes.graph_plan_timer)
    out = tmp_path / "auto"
    export_bundle(ExportOptions(ckpt=checkpoint, out=out, calib=calib, build_engines=False, energy_steps=energy_steps))
    return load_bundle(out), fakes


def test_auto_drops_the_blamed_graph_and_records_only_passing_plans(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                    synthetic_dataset: Path, monkeypatch, simulated_cpu) -> None:
    from salkit.export.precision import artefacts as precision

    simulated_cpu("amx")  # every candidate: bf16 is gated and timed too, and loses to int8 on time

    real_to_int8 = precision.to_int8

    def quantizer_failing_on_energy_grad(src, dst, feeds, scheme="tensorrt"):
        if Path(src).name == "energy_grad.onnx":
            raise ValueError("operands could not be broadcast together")
        return real_to_int8(src, dst, feeds, scheme)

    monkeypatch.setattr(precision, "to_int8", quantizer_failing_on_energy_grad)
    manifest, fakes = _auto_export(tmp_path, untrained_coop_checkpoint, synthetic_dataset, monkeypatch, ("latent_decoder",))
    verdict = manifest.precision_gate["ort-cpu:int8"]
    assert verdict["passed"] is True and verdict["graphs"] == ["encoder"]
    assert "latent_decoder" in verdict["dropped"] and "graph latent_decoder is to blame" in verdict["dropped"]["latent_decoder"]
    assert verdict["dropped"]["energy_grad"] == "int8 conversion failed: ValueError: operands could not be broadcast together"
    assert sorted(manifest.variants["int8"]) == ["encoder"] and not (manifest.root / "energy_grad.int8.onnx").exists()
    assert not (manifest.root / "latent_decoder.int8.onnx").exists()
    assert manifest.chosen_plan() == ("ort-cpu", "int8") and manifest.precision_choice["seconds"]["ort-cpu:int8"] == 0.5
    assert manifest.precision_choice["cpu"] and "fastest plan" in manifest.precision_choice["reason"]
    assert manifest.precision_gate["openvino:bf16"]["passed"] is HAS_OPENVINO
    assert ("openvino:bf16" in manifest.precision_choice["seconds"]) is HAS_OPENVINO
    assert verdict["int8_vnni"] is True  # 8-bit weights judged with VNNI: the runtime checks the CPU it runs on
    assert manifest.graphs["encoder"].file == "encoder.onnx"  # the fp32 reference stays
    for entry in manifest.variants["int8"].values():  # the element-wise record is kept
        assert {"data_max_rel_err", "random_max_rel_err", "seconds_fp32", "seconds_int8"} <= set(entry["validation"])
        model = onnx.load(str(manifest.root / entry["file"]))
        assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert next(j for j in fakes.judged if j) == ["encoder", "latent_decoder"]  # int8 judged whole first


@pytest.mark.parametrize("cpu, bf16", [("avx512", False), ("amx", True)])
def test_auto_never_chooses_a_rejected_plan(tmp_path: Path, untrained_coop_checkpoint: Path, synthetic_dataset: Path,
                                            monkeypatch, simulated_cpu, cpu: str, bf16: bool) -> None:
    simulated_cpu(cpu)
    wrong = ("encoder", "latent_decoder", "energy_grad")
    manifest, _ = _auto_export(tmp_path, untrained_coop_checkpoint, synthetic_dataset, monkeypatch, wrong)
    assert manifest.precision_gate["ort-cpu:int8"]["passed"] is False
    assert manifest.variants == {} and not list(manifest.root.glob("*.int8.onnx"))
    # int8 is fastest but rejected; bf16 (where the CPU has it) passed and beats fp32.
    assert manifest.chosen_plan() == (("openvino", "bf16") if bf16 and HAS_OPENVINO else ("ort-cpu", "fp32"))
    assert not manifest.gate_passed("ort-cpu:int8")


def test_auto_leaves_an_energy_gradient_the_predict_never_runs_in_float32(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                          synthetic_dataset: Path, monkeypatch,
                                                                          simulated_cpu) -> None:
    """The step gate kept K = 0: the gate's predict never runs energy_grad, so a reduced one would pass unjudged."""
    from salkit.export import energy_steps

    simulated_cpu("avx512")
    real_gate = energy_steps.gate_energy_steps
    monkeypatch.setattr(energy_steps, "gate_energy_steps", lambda *a: {**real_gate(*a), "chosen": 0})
    manifest, _ = _auto_export(tmp_path, untrained_coop_checkpoint, synthetic_dataset, monkeypatch, (), energy_steps="gate")
    assert manifest.coop["langevin_steps"] == 0 and manifest.extra["energy_steps"]["trained"] > 0
    assert manifest.precision_gate["ort-cpu:int8"]["passed"] is True
    assert sorted(manifest.variants["int8"]) == ["encoder", "latent_decoder"]  # energy_grad not even quantized
    assert "energy_grad" not in manifest.precision_choice.get("graph_seconds", {})
    assert not (manifest.root / "energy_grad.int8.onnx").exists()


@pytest.mark.skipif(not HAS_OPENVINO, reason="another engine's float32 is judged only where OpenVINO runs")
@pytest.mark.parametrize("engine_wrong", [False, True])
def test_auto_judges_another_engines_float32_and_the_runtime_obeys(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                   synthetic_dataset: Path, monkeypatch, simulated_cpu,
                                                                   engine_wrong: bool) -> None:
    from salkit.runtime.plan import choose_plan

    simulated_cpu("avx512")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the probe's choice is cached: not in the user's cache
    manifest, _ = _auto_export(tmp_path, untrained_coop_checkpoint, synthetic_dataset, monkeypatch, ("latent_decoder",),
                               ("openvino:fp32",) if engine_wrong else ())
    verdict = manifest.precision_gate["openvino:fp32"]
    assert verdict["passed"] is not engine_wrong and verdict["saliency_max_abs"] == pytest.approx(0.2 if engine_wrong else 0.0)
    assert ("openvino:fp32" in manifest.precision_choice["seconds"]) is not engine_wrong  # only what passed is timed
    fast_openvino = lambda manifest, backend, precision, threads: 1e-6 if backend == "openvino" else 1.0
    plan = choose_plan(load_bundle(manifest.root), "auto", "fp32", threads=1, probe=fast_openvino)
    assert plan.name == ("ort-cpu:fp32" if engine_wrong else "openvino:fp32"), plan.reason
    if engine_wrong:
        assert "the precision gate rejected openvino:fp32: openvino:fp32 fails the gate: saliency" in plan.reason


def test_forced_int8_that_fails_the_gate_is_refused_and_nothing_written(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                        synthetic_dataset: Path, monkeypatch,
                                                                        simulated_cpu) -> None:
    simulated_cpu("avx2")  # a CPU with an int8 path: the refusal is the gate's
    fakes = _StandIns(("latent_decoder",))
    monkeypatch.setattr(precision_auto, "run_with_predictor", fakes.run)
    out = tmp_path / "int8"
    with pytest.raises(SalkitError, match=r"--precision int8 refused: ort-cpu:int8 fails the gate: saliency .*graph "
                                          r"latent_decoder is to blame"):
        export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=out, precision="int8", calib=synthetic_dataset,
                                    build_engines=False))
    # Nothing but the runtime's backend-probe cache (the fixture's XDG_CACHE_HOME, written when the
    # energy's step count is judged before the precision stage).
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] in ([], ["cache-avx2"])
