"""make bench with make real's bundles (experiments.bench_real, scripts/bench.sh): the deployed
bundles are benched beside the paper presets with the checkpoints they were exported from; a
missing bundle is one line and the paper presets still bench. bench.sh runs here against stand-in
commands that only log their arguments, so nothing is trained or timed and no CPU matters."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from experiments.bench_real import real_bundles

ROOT = Path(__file__).resolve().parents[2]
STUBS = ("sal-data", "train-coop", "train-qefpn", "export-trt", "sal-runtime")


def fake_real(root: Path, kinds: tuple[str, ...] = ("coop", "qefpn")) -> Path:
    """A make real output folder as its export stage leaves it (paths recorded as make real was called)."""
    jobs = {"coop": "energy", "qefpn": "qefpn"}
    for kind in kinds:
        ckpt = root / jobs[kind] / "last.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(f"weights of {kind}".encode())
        bundle = root / f"bundle_{kind}"
        bundle.mkdir()
        sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
        (bundle / "manifest.json").write_text(json.dumps({"extra": {"checkpoint": {"file": "last.pt", "sha256": sha}}}))
    (root / "stages").mkdir()
    (root / "stages" / "export.json").write_text(json.dumps({"bundles": {f"bundle_{k}": f"runs/real/{jobs[k]}/last.pt" for k in kinds}}))
    return root


def test_real_bundles_and_their_checkpoints(tmp_path: Path) -> None:
    real = fake_real(tmp_path / "moved")  # recorded as runs/real/…, found under the folder given
    found, line = real_bundles(real)
    assert line is None
    assert found == [("coop", real / "bundle_coop", real / "energy" / "last.pt"), ("qefpn", real / "bundle_qefpn", real / "qefpn" / "last.pt")]


def test_what_is_missing_is_one_line(tmp_path: Path) -> None:
    assert real_bundles(tmp_path / "nothing") == ([], f"no make real bundles in {tmp_path / 'nothing'} (no finished export: "
                                                      f"{tmp_path / 'nothing' / 'stages' / 'export.json'}); benching the paper presets only")
    real = fake_real(tmp_path / "real")
    (real / "qefpn" / "last.pt").write_bytes(b"trained again after the export")
    found, line = real_bundles(real)
    assert [kind for kind, _, _ in found] == ["coop"]
    assert line is not None and "\n" not in line and "qefpn: " in line and "changed since the export" in line
    (real / "bundle_coop" / "manifest.json").unlink()
    found, line = real_bundles(real)
    assert found == [] and line is not None and line.endswith("benching the paper presets only") and "\n" not in line


def _run_bench_sh(tmp_path: Path, real: Path | str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in STUBS:
        (bin_dir / name).write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "$STUB_LOG"\n')
    # python: experiments.bench_real for real (what is under test), everything else logged.
    (bin_dir / "python").write_text(f'#!/usr/bin/env bash\necho "python $*" >> "$STUB_LOG"\n'
                                    f'if [[ "$1 $2" == "-m experiments.bench_real" ]]; then exec {sys.executable} "$@"; fi\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(log), "BENCH_OUT": str(tmp_path / "out"),
           "BENCH_REAL": str(real), "BENCH_CALIB": str(tmp_path / "no-photos"), "BENCH_KEEP": "", "BENCH_DOC": "", "BENCH_README": ""}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "bench.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return done, log.read_text().splitlines()


def test_bench_sh_without_real_bundles_says_so_once_and_benches_the_paper_presets(tmp_path: Path) -> None:
    done, calls = _run_bench_sh(tmp_path, tmp_path / "no-real")
    assert done.returncode == 0, done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines() if "make real" in line]
    assert said == [f"no make real bundles in {tmp_path / 'no-real'} (no finished export: "
                    f"{tmp_path / 'no-real' / 'stages' / 'export.json'}); benching the paper presets only"]
    out = tmp_path / "out"
    benched = [c for c in calls if c.startswith("sal-runtime bench") and "--compare-torch" in c]
    assert [c.split("--engine ")[1].split()[0] for c in benched] == [str(out / "bundle_coop"), str(out / "bundle_qefpn")]
    trained = [c.split("--out ")[1].split()[0] for c in calls if c.startswith(("train-coop", "train-qefpn"))]
    assert trained == [str(out / "coop"), str(out / "qefpn")]  # the paper presets' one step; never make real's models
    (readme,) = [c for c in calls if c.startswith("python -m experiments.bench_readme")]
    assert f"{out}/coop.json {out}/qefpn.json --out" in readme and f"{out}/real_" not in readme


def test_bench_sh_benches_make_reals_bundles_with_both_baselines(tmp_path: Path) -> None:
    real = fake_real(tmp_path / "real")
    done, calls = _run_bench_sh(tmp_path, real)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    benched = [c for c in calls if c.startswith("sal-runtime bench") and "--compare-torch" in c]
    assert len(benched) == 4
    assert f"--engine {real}/bundle_coop --compare-torch {real}/energy/last.pt --batch 1,4 --json {out}/real_coop.json" in benched[2]
    assert f"--engine {real}/bundle_qefpn --compare-torch {real}/qefpn/last.pt" in benched[3]
    (readme,) = [c for c in calls if c.startswith("python -m experiments.bench_readme")]
    assert f"{out}/coop.json {out}/qefpn.json {out}/real_coop.json {out}/real_qefpn.json --out" in readme
    assert not any(c.startswith("export-trt") and str(real) in c for c in calls)  # the bundles are used as make real wrote them
