"""The reproduction harness end to end on the smoke budget: every claim's rows, verdicts that
follow from the stored numbers, reports on disk, resume from cache and from checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from experiments import repro, repro_runs
from experiments.repro_claims import CLAIMS
from experiments.repro_runs import BUDGETS
from salkit.base.errors import SalkitError

# The smoke budget trains every claim for three seeds: about 10 minutes on two busy cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    import torch

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("repro")
    return out, repro.reproduce(out, BUDGETS["smoke"], echo=lambda s: None)


def _holds(metric: str, kind: str, threshold: float, a: float, b: float | None) -> bool:
    """Independent restatement of the verdict rule for one seed."""
    sign = -1.0 if metric in ("mae", "residual_median", "residual_mean") else 1.0
    if kind == "above":
        return sign * (a - threshold) > 0
    if kind == "better":
        return sign * (a - b) > 0
    return (a / b if sign > 0 else b / a) >= threshold


def test_every_claim_has_its_rows_for_every_seed(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, results = smoke
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["claims"]) == {c.key for c in CLAIMS}
    for claim in CLAIMS:
        entry = saved["claims"][claim.key]
        if entry["verdict"] == "skipped":  # only when train-coop lacks --scribble
            assert claim.key == "weak" and not repro.scribble_mode_available()
            continue
        assert len(entry["per_seed"]) == len(BUDGETS["smoke"].seeds) == 3
        rows = {row for check in claim.checks for row in (check.a, check.b) if row}
        assert rows <= set(entry["rows"])
        for row, stats in entry["rows"].items():
            assert set(stats) == set(claim.metrics)
            values = np.array([seed["rows"][row][m] for seed in entry["per_seed"] for m in claim.metrics])
            assert np.isfinite(values).all(), (claim.key, row)
            for m in claim.metrics:
                per = [seed["rows"][row][m] for seed in entry["per_seed"]]
                assert stats[m]["mean"] == pytest.approx(np.mean(per))
                assert stats[m]["std"] == pytest.approx(np.std(per, ddof=1))


def test_verdicts_follow_from_the_stored_numbers(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, _ = smoke
    saved = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    for key, entry in saved["claims"].items():
        if entry["verdict"] == "skipped":
            continue
        own = []
        for check in entry["checks"]:
            seeds = entry["per_seed"]
            passes = [_holds(check["metric"], check["kind"], check["threshold"], s["rows"][check["a"]][check["metric"]],
                             s["rows"][check["b"]][check["metric"]] if check["b"] else None) for s in seeds]
            mean_a = np.mean([s["rows"][check["a"]][check["metric"]] for s in seeds])
            mean_b = np.mean([s["rows"][check["b"]][check["metric"]] for s in seeds]) if check["b"] else None
            k = sum(passes)
            expected = ("yes" if k == len(passes) else
                        "no" if k == 0 or not _holds(check["metric"], check["kind"], check["threshold"], mean_a, mean_b)
                        else f"mixed {k}/{len(passes)}")
            assert check["verdict"] == expected, (key, check)
            own.append(expected)
        expected_claim = "yes" if all(v == "yes" for v in own) else "no" if all(v == "no" for v in own) else "partly"
        assert entry["verdict"] == expected_claim
        assert f"| {entry['title']} | {entry['verdict']} |" in markdown
        assert f"### {key}: {entry['title']} — reproduced? **{entry['verdict']}**" in markdown


def test_pictures_are_written(smoke: tuple[Path, dict[str, Any]]) -> None:
    from PIL import Image

    out, _ = smoke
    size = BUDGETS["smoke"].size
    for name, panels in (("examples.png", 5), ("refine.png", 6)):
        with Image.open(out / name) as im:
            assert im.size == (panels * size, BUDGETS["smoke"].n_test * size)
    assert (out / "residuals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out / "curves.png") as im:  # generator Ŷ, cooperative Ỹ, QE-FPN: one row each
        from experiments.repro_curves import WIDTH

        assert im.width == WIDTH and im.height > 2.5 * im.width * 420 / 1000


def test_publish_copies_the_report_with_picture_links(smoke: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = smoke
    repro.publish_docs(out, tmp_path / "docs")
    text = (tmp_path / "docs" / "repro-report.md").read_text()  # docs/results.md holds the generated summary
    for name in ("examples", "refine", "residuals", "curves"):
        assert f"![{name}](img/repro_{name}.png)" in text
        assert (tmp_path / "docs" / "img" / f"repro_{name}.png").read_bytes() == (out / f"{name}.png").read_bytes()


def test_resume_uses_the_cache_and_the_checkpoints(smoke: tuple[Path, dict[str, Any]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out, first = smoke
    from salkit.train.coop import cli as coop_cli
    from salkit.train.qefpn import cli as qefpn_cli

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached or finished run was trained again")

    monkeypatch.setattr(coop_cli, "run", no_training)
    monkeypatch.setattr(qefpn_cli, "run", no_training)
    again = repro.reproduce(out, BUDGETS["smoke"], echo=lambda s: None)
    assert {k: c["rows"] for k, c in again["claims"].items()} == {k: c["rows"] for k, c in first["claims"].items()}

    # Drop one claim's cache for one seed and the "done" mark of its run: the run resumes from its
    # (complete) checkpoint through train-coop, and the measurement comes out the same.
    monkeypatch.undo()
    (out / "cache" / "ablation_s2.json").unlink()
    (out / "runs" / "coop_s2" / "done").unlink()
    calls = []
    real_run = coop_cli.run
    monkeypatch.setattr(coop_cli, "run", lambda opts: calls.append(opts["resume"]) or real_run(opts))
    monkeypatch.setattr(qefpn_cli, "run", no_training)
    resumed = repro.reproduce(out, BUDGETS["smoke"], claims=["ablation"], echo=lambda s: None)
    assert calls == [out / "runs" / "coop_s2" / "last.pt"]
    assert resumed["claims"]["ablation"]["per_seed"][1] == first["claims"]["ablation"]["per_seed"][1]
    # Claims not selected but cached stay in the report, unchanged.
    assert {k: c["rows"] for k, c in resumed["claims"].items()} == {k: c["rows"] for k, c in first["claims"].items()}


def test_publishing_a_cached_run_writes_the_results_section_without_training(
        smoke: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, first = smoke
    from salkit.train.coop import cli as coop_cli
    from salkit.train.qefpn import cli as qefpn_cli

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("publishing trained a model")

    monkeypatch.setattr(coop_cli, "run", no_training)
    monkeypatch.setattr(qefpn_cli, "run", no_training)
    docs = tmp_path / "docs"
    docs.mkdir()
    readme = docs / "results.md"
    readme.write_text("# x\n\n## Results\n\n<!-- results:begin -->\n<!-- results:end -->\n\n## Next\n")
    # No --budget: the one the folder holds.
    args = ["--out", str(out), "--publish", str(docs), "--doc", str(readme)]
    result = CliRunner().invoke(repro.main, args)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith("# x\n\n## Results\n\n<!-- results:begin -->\n") and text.endswith("<!-- results:end -->\n\n## Next\n")
    assert f"`python -m experiments.repro --budget smoke --out {out}`" in text
    assert f"--doc {readme}`" in text  # the section names the call that writes it
    for c in first["claims"].values():
        assert f"| {c['title']} | {c['verdict']} |" in text
    for name in ("examples", "refine", "residuals", "curves"):
        assert f"![{name}](img/repro_{name}.png)" in text and (docs / "img" / f"repro_{name}.png").is_file()
    # The full report sits beside it, linked from the section.
    assert "[repro-report.md](repro-report.md)" in text and (docs / "repro-report.md").is_file()
    assert CliRunner().invoke(repro.main, args).exit_code == 0
    assert readme.read_text() == text


def test_claims_never_measured_are_listed_as_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments import repro_claims

    # Only the cheap uncertainty claim, with the cooperative run's outputs replaced by fixed maps.
    rng = np.random.default_rng(0)

    def maps(self: Any, seed: int, scribble: bool = False) -> dict[str, np.ndarray]:
        coop = np.clip(self.masks + rng.normal(0, 0.4, self.masks.shape), 0, 1)
        return {"coop": coop, "entropy": np.abs(coop - 0.5) * -1.0, "generator": coop, "g_h0": coop, "g_h": coop}

    monkeypatch.setattr(repro_claims.Context, "coop_maps", maps)
    results = repro.reproduce(tmp_path, BUDGETS["smoke"], claims=["uncertainty"], echo=lambda s: None)
    assert [k for k, c in results["claims"].items() if c["verdict"] != "not run"] == ["uncertainty"]
    assert len(results["claims"]) == len(CLAIMS)
    # Entropy peaks where the map is undecided, which is where thresholding errs: AUROC well above 0.5.
    assert results["claims"]["uncertainty"]["rows"]["predictive entropy"]["auroc"]["mean"] > 0.6
    assert "| Fig. 7: relative residuals ‖f(z*) − z*‖/‖z*‖, quasi vs equilibrium | not run |" in \
        (tmp_path / "results.md").read_text()


def test_one_output_folder_holds_one_budget(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, _ = smoke
    with pytest.raises(SalkitError, match="budget 'smoke'"):
        repro.reproduce(out, BUDGETS["quick"], echo=lambda s: None)


def test_cli_rejects_unknown_claims_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(repro.main, ["--budget", "smoke", "--out", str(tmp_path / "r"), "--claims", "ablation,bogus"])
    assert result.exit_code == 2
    assert "unknown claim 'bogus'" in result.output
    assert not (tmp_path / "r").exists()


def test_degraded_ground_truth_is_worse_but_related() -> None:
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[:, 8:24, 8:24] = True
    degraded = repro_runs.degrade(masks, seed=0)
    assert degraded.shape == masks.shape and 0.0 <= degraded.min() and degraded.max() <= 1.0
    error = np.abs(degraded - masks).mean()
    assert 0.05 < error < 0.4
    assert degraded[masks].mean() > degraded[~masks].mean() + 0.2
