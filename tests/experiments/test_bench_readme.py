"""The speed records in docs/speed.md and the README (experiments.bench_readme) from synthetic bench
records: both torch baselines beside the runtime, the CPU model, the roofline against this CPU's
best engine, the targets read at batch 1 and best batch vs best, and one README table per CPU class.
The records name their CPU, so no verdict depends on the CPU that runs the tests."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments import bench_readme
from salkit.base.errors import SalkitError

README = "# x\n\n## Speed\n\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\n\n## Next\n"


EPYC = {"model": "AMD EPYC 7B13", "flags": ["avx2"]}
AMX = {"model": "Intel(R) Xeon(R) Platinum 8480+", "flags": ["avx2", "avx512f", "amx_bf16", "amx_int8"]}


def record(kind: str, ours: dict[str, float], torch: dict[str, float], best: dict[str, float] | None,
           cpu: dict | None = None, backbone: str = "resnet50", when: str = "2026-12-07 05:00 UTC") -> dict:
    baselines = {"torch": torch} if best is None else {"torch": torch, "torch_best_recipe": best}
    entries = {}
    for batch, ips in ours.items():
        entry = {"images_per_s": ips, "roofline_fraction": 0.25}
        for key, rates in baselines.items():
            entry[f"{key}_images_per_s"] = rates[batch]
            entry[bench_readme_speedup(key)] = ips / max(rates.values())
        entries[batch] = entry
    out = {"plan": "openvino:fp32", "plan_reason": "fastest measured", "bundle": f"runs/{backbone}/bundle_{kind}",
           "model": {"kind": kind, "backbone": backbone}, "recorded_utc": when,
           "machine": {"cpus": 2, "cpu": cpu or {"model": "Test CPU 9000", "flags": ["avx2", "amx_bf16"]},
                       "gemm_peaks_gflops": {"fp32": 100.0, "bf16": 600.0}, "gemm_peak_engines": {"fp32": "onnxruntime", "bf16": "torch"},
                       "gemm_peak_precision": "fp32", "gemm_peak_gflops": 100.0, "gemm_peak_engine": "onnxruntime"},
           "settings": {"input_size": 352, "samples": 10 if kind == "coop" else None, "steps": 5}, kind: entries}
    for key, rates in baselines.items():
        best_batch = max(rates, key=rates.get)
        out[key] = {"per_batch": rates, "best_batch": int(best_batch), "best_images_per_s": rates[best_batch]}
    return out


def bench_readme_speedup(key: str) -> str:
    return {"torch": "speedup_vs_torch", "torch_best_recipe": "speedup_vs_torch_best"}[key]


def test_section_shows_both_baselines_the_cpu_and_the_targets(tmp_path: Path) -> None:
    coop = record("coop", {"1": 2.0, "8": 4.0}, torch={"1": 0.2, "8": 0.4}, best={"1": 1.0, "8": 1.5})
    qefpn = record("qefpn", {"1": 1.0}, torch={"1": 0.5}, best=None)
    coop["machine"]["load_average"] = {"start": 0.42, "end": 2.31}
    text = bench_readme.render([coop, qefpn], "cmd")
    assert "load average 0.4 before the run, 2.3 at its end" in text
    assert "**Test CPU 9000**" in text and "amx_bf16" in text and "bf16 600 (torch)" in text and "fp32 100 (onnxruntime)" in text
    # batch 1: 2.0 img/s vs 0.2 (authors') and 1.0 (best recipe); best batch 4.0 vs 0.4 and 1.5.
    coop_label, qefpn_label = "coop ResNet-50 352², N 10, K 5", "QE-FPN ResNet-50 352², T 5"
    assert f"| {coop_label} | openvino:fp32 | 1 | 2.00 | 0.20 | 1.00 | 5.00× | 1.33× | 25.0% (onnxruntime, fp32 100) |" in text
    assert "fraction of this CPU's best peak (engine)" in text and "plan's peak" not in text
    assert f"{coop_label} vs torch's best CPU recipe: 2.00× at batch 1, 2.67× best batch vs best batch (torch's best batch 8); " \
           "target ≥ 2× — **met**" in text
    assert f"{coop_label} vs torch, authors' way (fp32 eager): 10.00× at batch 1, 10.00× best batch" in text
    assert f"{qefpn_label} vs torch, authors' way (fp32 eager): 2.00× at batch 1, 2.00× best batch vs best batch " \
           "(torch's best batch 1); target ≥ 3× — **not met**" in text
    assert f"| {qefpn_label} | openvino:fp32 | 1 | 1.00 | 0.50 | – |" in text
    assert "each graph at its precision's peak" not in text  # not recorded (older records) or one precision: not shown
    coop["coop"]["1"]["roofline_fraction_per_graph"] = 0.5
    coop["coop"]["8"]["roofline_fraction_per_graph"] = 0.25
    text = bench_readme.render([coop], "cmd")
    assert "| 25.0% (onnxruntime, fp32 100); each graph at its precision's peak: 50.0% |" in text
    assert "| 25.0% (onnxruntime, fp32 100) |" in text  # batch 8: the same number, shown once


def test_section_splits_a_predict_into_graphs_and_host_and_bounds_the_ratio(tmp_path: Path) -> None:
    qefpn = record("qefpn", {"1": 1.0}, torch={"1": 0.5}, best=None)
    # torch 2000 ms per image; the runtime's graphs 800 ms of its 1000: free host work would give 2.5×.
    qefpn["qefpn"]["1"]["breakdown"] = {"graph_calls": {"encoder": 1, "f": 31}, "graphs_p50_ms": {"encoder": 180.0, "f": 20.0},
                                        "graphs_ms": 800.0, "host_ms": 200.0, "host_fraction": 0.2}
    qefpn["recorded_utc"] = "2026-12-01 14:51 UTC"
    text = bench_readme.render([qefpn], "cmd")
    assert "- QE-FPN ResNet-50 352², T 5 (run of 2026-12-01 14:51 UTC)" in text
    assert "- QE-FPN ResNet-50 352², T 5, batch 1: graphs 800 ms (encoder 1 × 180.0, f 31 × 20.0 ms), host 200 ms (20% of a predict); " \
           "with no host work at all: 2.50× torch, authors' way" in text


def test_cli_rewrites_only_the_section_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "coop.json"
    path.write_text(json.dumps(record("coop", {"1": 2.0}, torch={"1": 0.2}, best={"1": 1.0})))
    readme = tmp_path / "speed.md"
    readme.write_text(README)
    runner = CliRunner()
    assert runner.invoke(bench_readme.main, [str(path), "--doc", str(readme)]).exit_code == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n## Speed\n\n<!-- bench:begin -->\n") and text.endswith("<!-- bench:end -->\n\n## Next\n")
    assert "old table" not in text and "| coop ResNet-50 352², N 10, K 5 | openvino:fp32 | 1 | 2.00 |" in text
    assert "Targets:" in text and not re.search(r"#\d", text)  # no tracker numbers
    stamp = os.stat(readme).st_mtime_ns
    assert runner.invoke(bench_readme.main, [str(path), "--doc", str(readme)]).exit_code == 0
    assert readme.read_text() == text and os.stat(readme).st_mtime_ns == stamp


@pytest.mark.parametrize("content, message", [(None, "no such file"), ("{", "is not JSON"), ('{"bundle": 1}', "not a sal-runtime bench record")])
def test_bad_records_and_readmes_are_one_line_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SalkitError, match=message):
        bench_readme.load_record(path)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(record("coop", {"1": 2.0}, torch={"1": 0.2}, best={"1": 1.0})))
    for option, marker in (("--doc", "bench:begin"), ("--readme", "speed:begin")):
        result = CliRunner().invoke(bench_readme.main, [str(good), option, str(readme), "--keep", str(tmp_path / "kept")])
        assert result.exit_code == 2 and marker in result.output and readme.read_text() == "# no markers\n"
        assert not (tmp_path / "kept").exists()  # nothing half-written


def test_gate_records_are_listed_with_their_verdict() -> None:
    coop = record("coop", {"1": 2.0}, torch={"1": 0.2}, best={"1": 1.0})
    gate = {"kind": "coop", "plan": "openvino:int8", "split": "test", "images": 24,
            "verdict": {"passed": True, "saliency_mean_abs": 0.00031, "saliency_max_abs": 0.0021, "entropy_mean_abs": 0.0012}}
    gate["bundle"] = coop["bundle"]  # named by the model benched from the same bundle
    text = bench_readme.render([coop], "cmd", [gate])
    assert ("- coop ResNet-50 352², N 10, K 5 `openvino:int8` on 24 photographs of the test split (checked, not tuned on): "
            "saliency mean |Δ| 0.00031, max |Δ| 0.0021, entropy mean |Δ| 0.0012 — **within the gate**") in text
    gate["verdict"]["passed"] = False
    assert "**outside the gate**" in bench_readme.render([coop], "cmd", [gate])
    # A per-graph plan is named graph by graph, as the bench record's plan is, and a failing one names its culprit.
    gate.update(plan="openvino:fp32", graph_plans={"encoder": "openvino:int8", "energy_grad": "openvino:fp32",
                                                   "latent_decoder": "openvino:int8"})
    gate["verdict"]["culprit"] = "latent_decoder"
    text = bench_readme.render([coop], "cmd", [gate])
    assert ("`per graph: encoder openvino:int8, energy_grad openvino:fp32, latent_decoder openvino:int8` on 24 photographs"
            in text)
    assert "— **outside the gate** (graph latent_decoder to blame)" in text
    reference = {"kind": "coop", "plan": "ort-cpu:fp32", "graph_plans": {}, "split": "test", "images": 24, "bundle": "b",
                 "verdict": {"passed": True, "reason": "the plan is the float32 reference (ort-cpu:fp32) on every graph"}}
    assert ("`ort-cpu:fp32` on 24 photographs of the test split (checked, not tuned on): the plan is the float32 "
            "reference (ort-cpu:fp32) on every graph — **within the gate**") in bench_readme.render([coop], "cmd", [reference])


def _cli(*args: object) -> str:
    result = CliRunner().invoke(bench_readme.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_one_readme_table_per_cpu_class_kept(tmp_path: Path) -> None:
    """Two runs on CPUs of two classes: each run files its records under its class and the README
    shows both tables, the newest first; a later run of one class replaces that class's records only."""
    readme, doc, kept = tmp_path / "README.md", tmp_path / "speed.md", tmp_path / "kept"
    readme.write_text("# x\n\n<!-- speed:begin -->\n<!-- speed:end -->\n\n<!-- real-photographs:begin -->\nkept\n<!-- real-photographs:end -->\n")
    doc.write_text(README)
    runs = {
        "epyc": [record("coop", {"1": 1.16, "8": 1.08}, torch={"1": 0.20, "8": 0.15}, best={"1": 0.66, "8": 0.49}, cpu=EPYC,
                        when="2026-12-01 12:03 UTC"),
                 record("qefpn", {"1": 0.63}, torch={"1": 0.40}, best={"1": 0.39}, cpu=EPYC, when="2026-12-01 14:51 UTC")],
        "amx": [record("coop", {"1": 2.0, "2": 2.2}, torch={"1": 0.24, "2": 0.16}, best={"1": 2.6, "2": 2.0}, cpu=AMX),
                record("coop", {"1": 9.0, "8": 12.0}, torch={"1": 1.0, "8": 1.5}, best={"1": 4.0, "8": 6.0}, cpu=AMX,
                       backbone="efficientnet-lite0")],
    }
    for name, records in runs.items():
        paths = []
        for i, rec in enumerate(records):
            paths.append(tmp_path / f"{name}{i}.json")
            paths[-1].write_text(json.dumps(rec))
        _cli(*paths, "--keep", kept, "--doc", doc, "--readme", readme)
    assert sorted(p.name for p in kept.iterdir()) == ["amx-xeon.json", "avx2-epyc.json"]
    text = readme.read_text()
    assert text.endswith("<!-- real-photographs:begin -->\nkept\n<!-- real-photographs:end -->\n")  # another section, untouched
    amx, epyc = text.index("### AMX Xeon: Intel(R) Xeon(R) Platinum 8480+, 2 cores, 2026-12-07"), text.index("### AVX2 EPYC: AMD EPYC 7B13")
    assert amx < epyc  # the class measured last first
    # runtime, torch's best recipe, the authors' way: batch 1 / best batch; ratios batch 1 vs 1, best vs best.
    assert "| coop ResNet-50 352², N 10, K 5 | `openvino:fp32` | 2.00 / 2.20 | 2.60 / 2.60 | 0.24 / 0.24 | 0.77× / 0.85× | " \
           "8.33× / 9.17× |" in text
    assert "| coop EfficientNet-Lite0 352², N 10, K 5 | `openvino:fp32` | 9.00 / 12.00 | 4.00 / 6.00 | 1.00 / 1.50 | 2.25× / 2.00× |" in text
    assert "| QE-FPN ResNet-50 352², T 5 | `openvino:fp32` | 0.63 / 0.63 | 0.39 / 0.39 | 0.40 / 0.40 |" in text[epyc:]
    assert text.count("| model | plan | sal-runtime |") == 2
    full = doc.read_text()
    assert full.index("### AMX Xeon") < full.index("### AVX2 EPYC") and "fraction of this CPU's best peak (engine)" in full
    # A new AMX run replaces the AMX records and keeps the EPYC ones.
    newer = record("coop", {"1": 3.0}, torch={"1": 0.3}, best={"1": 2.5}, cpu=AMX, when="2026-12-08 09:00 UTC")
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    _cli(tmp_path / "newer.json", "--keep", kept, "--readme", readme)
    text = readme.read_text()
    assert "2026-12-08" in text and "| coop EfficientNet-Lite0" not in text and "### AVX2 EPYC" in text and text.count("| model |") == 2


def test_records_of_two_classes_without_keep_give_two_tables() -> None:
    epyc = record("coop", {"1": 1.0}, torch={"1": 0.2}, best={"1": 0.5}, cpu=EPYC)
    amx = record("coop", {"1": 2.0}, torch={"1": 0.2}, best={"1": 2.5}, cpu=AMX)
    text = bench_readme.readme_tables(bench_readme._by_class([epyc, amx], []))
    assert text.count("| model | plan |") == 2 and "### AVX2 EPYC" in text and "### AMX Xeon" in text


@pytest.mark.parametrize("cpu, key", [(EPYC, "avx2-epyc"), (AMX, "amx-xeon"),
                                      ({"model": "Intel(R) Xeon(R) Processor @ 2.60GHz", "flags": ["avx2", "avx512f"]}, "avx512-xeon"),
                                      ({"model": "AMD EPYC", "flags": ["avx2", "avx512f", "avx512_bf16"]}, "avx512bf16-epyc"),
                                      ({"model": "QEMU Virtual CPU", "flags": []}, "x86")])
def test_cpu_class_from_the_recorded_flags_and_model(cpu: dict, key: str) -> None:
    from experiments.bench_classes import cpu_class

    assert cpu_class({"machine": {"cpu": cpu}})[0] == key


def test_keep_refuses_records_of_two_classes(tmp_path: Path) -> None:
    from experiments.bench_classes import keep

    with pytest.raises(SalkitError, match="one CPU class"):
        keep([record("coop", {"1": 1.0}, torch={"1": 0.2}, best=None, cpu=EPYC),
              record("coop", {"1": 1.0}, torch={"1": 0.2}, best=None, cpu=AMX)], [], tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_kept_records_in_the_repository_render() -> None:
    """docs/bench holds the records the README's tables come from: each file is one class and renders."""
    from experiments.bench_classes import cpu_class, kept

    entries = kept(Path(__file__).resolve().parents[2] / "docs" / "bench")
    assert entries and all({cpu_class(r)[0] for r in e["records"]} == {e["cpu_class"]} for e in entries)
    assert bench_readme.readme_tables(entries).count("| model | plan |") == len(entries)


def test_a_per_graph_plan_is_named_graph_by_graph() -> None:
    coop = record("coop", {"1": 2.0}, torch={"1": 0.2}, best={"1": 1.0})
    coop["graph_plans"] = {"latent_decoder": "openvino:int8", "encoder": "openvino:int8", "energy_grad": "openvino:fp32"}
    plan = "per graph: encoder openvino:int8, energy_grad openvino:fp32, latent_decoder openvino:int8"
    assert f"| {plan} | 1 | 2.00 |" in bench_readme.render([coop], "cmd")
    assert f"| `{plan}` |" in bench_readme.readme_tables(bench_readme._by_class([coop], []))
