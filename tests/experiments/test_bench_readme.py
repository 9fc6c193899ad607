"""The speed section of docs/speed.md (experiments.bench_readme) from synthetic bench records: both torch
baselines beside the runtime, the CPU model, the targets read at batch 1 and best batch vs best."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments import bench_readme
from salkit.base.errors import SalkitError

README = "# x\n\n## Speed\n\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\n\n## Next\n"


def record(kind: str, ours: dict[str, float], torch: dict[str, float], best: dict[str, float] | None) -> dict:
    baselines = {"torch": torch} if best is None else {"torch": torch, "torch_best_recipe": best}
    entries = {}
    for batch, ips in ours.items():
        entry = {"images_per_s": ips, "roofline_fraction": 0.25}
        for key, rates in baselines.items():
            entry[f"{key}_images_per_s"] = rates[batch]
            entry[bench_readme_speedup(key)] = ips / max(rates.values())
        entries[batch] = entry
    out = {"plan": "openvino:fp32", "plan_reason": "fastest measured", "bundle": "b",
           "machine": {"cpus": 2, "cpu": {"model": "Test CPU 9000", "flags": ["avx2", "amx_bf16"]},
                       "gemm_peaks_gflops": {"fp32": 100.0, "bf16": 600.0}},
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
    text = bench_readme.render([coop, qefpn], "cmd")
    assert "**Test CPU 9000**" in text and "amx_bf16" in text and "bf16 600" in text
    # batch 1: 2.0 img/s vs 0.2 (authors') and 1.0 (best recipe); best batch 4.0 vs 0.4 and 1.5.
    assert "| coop | openvino:fp32 | 1 | 2.00 | 0.20 | 1.00 | 5.00× | 1.33× | 25.0% |" in text
    assert "coop vs torch's best CPU recipe: 2.00× at batch 1, 2.67× best batch vs best batch (torch's best batch 8); " \
           "target ≥ 2× — **met**" in text
    assert "coop vs torch, authors' way (fp32 eager): 10.00× at batch 1, 10.00× best batch" in text
    assert "qefpn vs torch, authors' way (fp32 eager): 2.00× at batch 1, 2.00× best batch vs best batch " \
           "(torch's best batch 1); target ≥ 3× — **not met**" in text
    assert "| qefpn | openvino:fp32 | 1 | 1.00 | 0.50 | – |" in text


def test_section_splits_a_predict_into_graphs_and_host_and_bounds_the_ratio(tmp_path: Path) -> None:
    qefpn = record("qefpn", {"1": 1.0}, torch={"1": 0.5}, best=None)
    # torch 2000 ms per image; the runtime's graphs 800 ms of its 1000: free host work would give 2.5×.
    qefpn["qefpn"]["1"]["breakdown"] = {"graph_calls": {"encoder": 1, "f": 31}, "graphs_p50_ms": {"encoder": 180.0, "f": 20.0},
                                        "graphs_ms": 800.0, "host_ms": 200.0, "host_fraction": 0.2}
    qefpn["recorded_utc"] = "2026-12-01 14:51 UTC"
    text = bench_readme.render([qefpn], "cmd")
    assert "- qefpn (run of 2026-12-01 14:51 UTC)" in text
    assert "- qefpn, batch 1: graphs 800 ms (encoder 1 × 180.0, f 31 × 20.0 ms), host 200 ms (20% of a predict); " \
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
    assert "old table" not in text and "| coop | openvino:fp32 | 1 | 2.00 |" in text
    assert "Targets:" in text and "#" not in text.split("<!-- bench:begin -->")[1].split("<!-- bench:end -->")[0]  # no tracker numbers
    stamp = os.stat(readme).st_mtime_ns
    assert runner.invoke(bench_readme.main, [str(path), "--readme", str(readme)]).exit_code == 0  # the old name
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
    result = CliRunner().invoke(bench_readme.main, [str(good), "--readme", str(readme)])
    assert result.exit_code == 2 and "bench:begin" in result.output and readme.read_text() == "# no markers\n"


def test_gate_records_are_listed_with_their_verdict() -> None:
    coop = record("coop", {"1": 2.0}, torch={"1": 0.2}, best={"1": 1.0})
    gate = {"kind": "coop", "plan": "openvino:int8", "split": "test", "images": 24,
            "verdict": {"passed": True, "saliency_mean_abs": 0.00031, "saliency_max_abs": 0.0021, "entropy_mean_abs": 0.0012}}
    text = bench_readme.render([coop], "cmd", [gate])
    assert "- coop `openvino:int8` on 24 photographs of the test split (checked, not tuned on): saliency mean |Δ| 0.00031, " \
           "max |Δ| 0.0021, entropy mean |Δ| 0.0012 — **within the gate**" in text
    gate["verdict"]["passed"] = False
    assert "**outside the gate**" in bench_readme.render([coop], "cmd", [gate])
