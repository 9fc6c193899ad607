"""`python -m experiments.repro` (`make repro`): train and evaluate on the synthetic set, several
seeds, and report whether each of the papers' claims reproduces.

Per claim and seed the harness trains what it needs through the trainers' own entry points
(``repro_runs``), measures the claim's rows (``repro_claims``) and caches them under
``<out>/cache/<claim>_s<seed>.json``; a second call (or one after an interruption) reuses the
cache and the finished runs, and resumes an unfinished run from its checkpoint. The verdicts come
from the numbers alone (``repro_verdict``). With ``--claims`` only those are measured; the
report still includes every other claim whose cache is complete, and lists the rest as "not run".
Written atomically under ``--out``: ``results.json``,
``results.md``, ``residuals.png``, ``examples.png`` / ``refine.png`` (image | gt | … grids) and
``curves.png`` (precision–recall and score-vs-threshold curves of the first seed's models).
``--publish`` copies the report to ``<docs>/repro-report.md`` and the pictures to ``<docs>/img``;
``--doc`` (docs/results.md) also rewrites that file's generated results section (``repro_readme``).
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import click

from experiments.repro_runs import BUDGETS, Budget
from salkit.base.atomic import atomic_write_bytes, atomic_write_text
from salkit.base.errors import SalkitError, report_user_errors

# Claims whose measurement trains the first seed's QE-FPN (quasi solver, Sobel edge loss) run.
QEFPN_CLAIMS = frozenset({"refine", "solvers", "edge", "operators", "residuals"})


def scribble_mode_available() -> bool:
    try:
        from salkit.train.coop.scribble import ScribbleOptions  # noqa: F401 — imported only to see whether it exists
    except ImportError:
        return False
    return True


def _budget_guard(out: Path, budget: Budget) -> None:
    """One output folder holds one budget: cached runs of another would be silently mixed in."""
    from dataclasses import asdict

    path = out / "budget.json"
    wanted = json.loads(json.dumps(asdict(budget)))  # tuples → lists, as read back from JSON
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != wanted:
            raise SalkitError(f"{out} holds results of budget {saved.get('name')!r} with other sizes; "
                              f"use another --out for budget {budget.name!r}")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(wanted, indent=1) + "\n")


def reproduce(out: Path, budget: Budget, claims: list[str] | None = None,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the selected claims (all by default) and write the reports; returns the results."""
    import torch

    from experiments import repro_runs as rr
    from experiments.repro_claims import CLAIMS, Context
    from experiments.repro_verdict import check_verdict, claim_verdict, summarise_rows

    known = [c.key for c in CLAIMS]
    for key in claims or []:
        if key not in known:
            raise SalkitError(f"unknown claim {key!r}; choose from {', '.join(known)}")
    _budget_guard(out, budget)
    started = time.time()
    train_dir, test_dir = rr.prepare_data(out, budget)
    images, masks = rr.load_test(test_dir, budget.size)
    ctx = Context(out, budget, train_dir, test_dir, images, masks)
    results: dict[str, Any] = {"budget": budget.name, "claims": {}}
    measured_now = False
    for claim in CLAIMS:
        entry: dict[str, Any] = {"title": claim.title, "metrics": list(claim.metrics), "note": claim.note}
        caches = [out / "cache" / f"{claim.key}_s{seed}.json" for seed in budget.seeds]
        if claims and claim.key not in claims and not all(c.is_file() for c in caches):
            # Not selected and not measured before: listed, so the report never hides a claim.
            entry.update(rows={}, checks=[], per_seed=[], verdict="not run")
            results["claims"][claim.key] = entry
            continue
        if claim.key == "weak" and not scribble_mode_available():
            entry.update(rows={}, checks=[], per_seed=[], verdict="skipped",
                         note="skipped: train-coop has no --scribble mode in this installation")
            results["claims"][claim.key] = entry
            continue
        t0 = time.time()
        per_seed = []
        for seed, cache in zip(budget.seeds, caches, strict=True):
            if cache.is_file():
                measured = json.loads(cache.read_text())
            else:
                echo(f"[repro] {claim.key}, seed {seed} …")
                torch.manual_seed(seed)
                measured = claim.measure(ctx, seed)
                measured_now = True
                cache.parent.mkdir(parents=True, exist_ok=True)
                rr.save_json(cache, measured)
            per_seed.append(measured)
        rows = [m["rows"] for m in per_seed]
        checks = [check_verdict(c, rows) for c in claim.checks]
        entry.update(rows=summarise_rows(rows), checks=checks, verdict=claim_verdict(checks),
                     per_seed=per_seed, seconds=round(time.time() - t0, 1))
        results["claims"][claim.key] = entry
        echo(f"[repro] {claim.key}: reproduced? {entry['verdict']}")
    results["machine"] = _measuring_machine(out, measured_now, {
        "platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "measuring_call_seconds": round(time.time() - started, 1)})
    results["sizes"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in budget.__dict__.items()}
    results["seconds"] = round(time.time() - started, 1)
    results["command"] = repro_command(budget.name, out)
    write_reports(out, results, ctx)
    return results


def _wall_time(results: dict[str, Any]) -> str:
    measuring = results["machine"].get("measuring_call_seconds")
    text = f"wall time of this call {results['seconds']:.0f} s"
    if measuring is not None and measuring > results["seconds"]:
        text += f", of the last call that trained and measured into `<out>` {measuring:.0f} s"
    return text + " (entries read from `<out>/cache` are not measured again)."


def _measuring_machine(out: Path, measured_now: bool, current: dict[str, Any]) -> dict[str, Any]:
    """The machine of the last call that measured something into ``out``: a call that only reads
    the cache (publishing) reports where the numbers came from, not where it ran."""
    path = out / "machine.json"
    if measured_now or not path.is_file():
        atomic_write_text(path, json.dumps(current, indent=1) + "\n")
        return current
    return json.loads(path.read_text())


def repro_command(budget: str, out: Path) -> str:
    """The command that measures every claim of a budget into ``out`` (what ``--claims`` calls add up to)."""
    import shlex

    return shlex.join(["python", "-m", "experiments.repro", "--budget", budget, "--out", str(out)])


def resolve_budget(out: Path, name: str | None) -> Budget:
    """``--budget`` as given, else the one ``out`` already holds (so publishing needs no --budget), else full."""
    if name is None:
        saved = out / "budget.json"
        name = json.loads(saved.read_text()).get("name", "full") if saved.is_file() else "full"
        if name not in BUDGETS:
            raise SalkitError(f"{saved} names an unknown budget {name!r}; pass --budget")
    return BUDGETS[name]


def render_markdown(results: dict[str, Any]) -> str:
    from experiments.repro_verdict import markdown_claim

    s = results["sizes"]
    lines = [
        f"# Reproduction on the synthetic set (budget `{results['budget']}`)", "",
        f"Command: `python -m experiments.repro --budget {results['budget']}` (`make repro`). "
        f"Seeds {', '.join(map(str, s['seeds']))}; mean ± std (ddof 1) over seeds; no tuning per seed.", "",
        f"Sizes: {s['size']}² images, {s['n_train']} training / {s['n_test']} test scenes; cooperative model "
        f"`tiny`, {s['coop_epochs']} epochs, batch {s['coop_batch']}; QE-FPN `tiny`, {s['qefpn_epochs']} epochs, "
        f"batch {s['qefpn_batch']}, {s['qefpn_solver_warmup']} unrolled warm-up steps; {s['samples']} latent samples.",
        "",
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, torch "
        f"{results['machine']['torch']} ({results['machine']['threads']} threads); {_wall_time(results)}", "",
        "Metrics (PySODMetrics, min-max scaled per image as the toolkits do): MAE ↓, S-measure ↑, mean E-measure ↑, "
        "max F (β² = 0.3) ↑, binary ratio = share of pixels below 0.1 or above 0.9. A check holds in a seed "
        "or not; **yes** = every seed, **no** = no seed or the mean goes against it, **mixed k/n** otherwise; "
        "a claim is **yes** when every check is, **no** when none is, else **partly**.", "",
        "| claim | reproduced? |", "|---|---|",
    ]
    lines += [f"| {c['title']} | {c['verdict']} |" for c in results["claims"].values()]
    lines.append("")
    for key, claim in results["claims"].items():
        lines.append(markdown_claim(key, claim))
    lines += ["## Pictures", "",
              f"Seed {s['seeds'][0]}, first test images. Image | ground truth | generator Ŷ (mean of the samples) | "
              "cooperative Ỹ | predictive entropy (÷ ln 2):", "", f"![examples]({PICTURES['examples']})", "",
              "Image | ground truth | QE-FPN | QE-FPN + energy refine | degraded GT | degraded GT + energy refine:", "",
              f"![refine]({PICTURES['refine']})", "", "Relative residuals at the inference solve (Fig. 7):", "",
              f"![residuals]({PICTURES['residuals']})", "",
              f"Seed {s['seeds'][0]}, all test images: precision–recall and F-/E-measure vs threshold "
              "(`sal-runtime eval --plot`'s curves) of the generator Ŷ, the cooperative Ỹ and QE-FPN:", "",
              f"![curves]({PICTURES['curves']})", ""]
    return "\n".join(lines)


PICTURES = {"examples": "examples.png", "refine": "refine.png", "residuals": "residuals.png", "curves": "curves.png"}
REPORT = "repro-report.md"  # the full report's name in the docs folder; docs/results.md holds the summary


def publish_docs(out: Path, docs: Path) -> None:
    """Copy ``results.md`` to ``<docs>/repro-report.md`` and the pictures to ``<docs>/img/repro_*.png``,
    with the picture links rewritten to match."""
    markdown = (out / "results.md").read_text()
    for name in PICTURES.values():
        if (out / name).is_file():
            atomic_write_bytes(docs / "img" / f"repro_{name}", (out / name).read_bytes())
        markdown = markdown.replace(f"]({name})", f"](img/repro_{name})")
    atomic_write_text(docs / REPORT, markdown)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def plot_residuals(results: dict[str, Any]) -> bytes | None:
    claim = results["claims"].get("residuals")
    if not claim or not claim.get("per_seed"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name in ("equilibrium", "quasi-equilibrium"):
        values = np.concatenate([m["residuals"][name] for m in claim["per_seed"]])
        ax.hist(np.log10(np.maximum(values, 1e-12)), bins=30, alpha=0.55, label=f"{name} (median {np.median(values):.1e})")
    ax.set_xlabel("log10 ‖f(z*) − z*‖ / ‖z*‖ (test images, all seeds)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def first_seed_maps(ctx: Any, results: dict[str, Any]) -> dict[str, Any]:
    """The first seed's maps (B,S,S) on the whole test set, for the models the measured claims
    trained (a picture never trains a model): ``generator``, ``coop``, ``entropy``, ``qefpn``."""
    from experiments import repro_runs as rr

    seed = ctx.budget.seeds[0]
    measured = {k for k, c in results["claims"].items() if c["verdict"] not in ("not run", "skipped")}
    maps: dict[str, Any] = {}
    if measured & {"ablation", "uncertainty"}:
        coop = ctx.coop_maps(seed)
        maps.update(generator=coop["generator"], coop=coop["coop"], entropy=coop["entropy"])
    if measured & QEFPN_CLAIMS:
        maps["qefpn"] = rr.qefpn_outputs(ctx.qefpn(seed), ctx.images)["saliency"]
    return maps


def write_curves(out: Path, ctx: Any, maps: dict[str, Any]) -> None:
    from experiments.repro_curves import curve_results, curves_png

    labels = {"generator": "generator Ŷ", "coop": "cooperative Ỹ", "qefpn": "QE-FPN"}
    chosen = {label: maps[key] for key, label in labels.items() if key in maps}
    if chosen:
        caption = f"seed {ctx.budget.seeds[0]}"
        atomic_write_bytes(out / PICTURES["curves"], curves_png(curve_results(chosen, ctx.masks), caption))


def write_grids(out: Path, ctx: Any, results: dict[str, Any], maps: dict[str, Any], rows: int = 4) -> None:
    import numpy as np
    import torch

    from experiments import repro_runs as rr
    from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD
    from salkit.train.engine.logs import save_grid

    seed = ctx.budget.seeds[0]
    image = ctx.images[:rows] * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    gt = torch.as_tensor(ctx.masks[:rows, None].astype(np.float32))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a[:rows], dtype=np.float32))[:, None]  # (B,1,S,S)

    measured = {k for k, c in results["claims"].items() if c["verdict"] not in ("not run", "skipped")}
    if "coop" in maps:
        save_grid([image, gt, t(maps["generator"]), t(maps["coop"]), t(maps["entropy"] / np.log(2.0))],
                  out / "examples.png", max_rows=rows)
    if "refine" in measured:
        coop = ctx.coop(seed)
        qefpn = maps["qefpn"][:rows]
        degraded = rr.degrade(ctx.masks, seed)[:rows]
        save_grid([image, gt, t(qefpn), t(rr.coop_refine(coop, ctx.images[:rows], qefpn)), t(degraded),
                   t(rr.coop_refine(coop, ctx.images[:rows], degraded))], out / "refine.png", max_rows=rows)


def write_reports(out: Path, results: dict[str, Any], ctx: Any) -> None:
    markdown = render_markdown(results)
    residuals = plot_residuals(results)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / "results.md", markdown)
    if residuals is not None:
        atomic_write_bytes(out / "residuals.png", residuals)
    maps = first_seed_maps(ctx, results)
    write_grids(out, ctx, results, maps)
    write_curves(out, ctx, maps)


def publish_readme(out: Path, results: dict[str, Any], docs: Path, doc: Path, command: str) -> bool:
    """Rewrite the generated results section of ``doc`` (docs/results.md) from the published report;
    whether it changed."""
    from experiments import repro_readme

    pictures = {name: repro_readme.relative_link(docs / "img" / f"repro_{file}", doc)
                for name, file in PICTURES.items() if (out / file).is_file()}
    section = repro_readme.render_section(results, command=command, pictures=pictures,
                                          results_link=repro_readme.relative_link(docs / REPORT, doc))
    return repro_readme.write_readme(doc, section)


def publish_command(budget: str, out: Path, docs: Path, doc: Path) -> str:
    import shlex

    words = ["python", "-m", "experiments.repro", "--budget", budget, "--out", str(out), "--publish", str(docs),
             "--doc", str(doc)]
    return shlex.join(words)


@click.command(name="repro", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--budget", type=click.Choice(sorted(BUDGETS)), default=None,
              help="smoke: seconds, checks the harness; full: about 10 minutes on a quiet 2-core CPU. "
                   "Default: the budget --out already holds, else full.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/repro"), show_default=True)
@click.option("--claims", default=None, help="Comma-separated subset (ablation, refine, uncertainty, solvers, edge, "
              "operators, residuals, weak); default all.")
@click.option("--threads", type=int, default=2, show_default=True, help="torch CPU threads.")
@click.option("--publish", "publish_to", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Also copy results.md and the pictures to this docs folder ({REPORT}, img/repro_*.png).")
@click.option("--doc", "--readme", "doc", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also rewrite this file's section between <!-- results:begin --> and <!-- results:end --> "
                   "(docs/results.md; needs --publish: the section links the published pictures; --readme is "
                   "the old name).")
@report_user_errors
def main(budget: str | None, out: Path, claims: str | None, threads: int, publish_to: Path | None,
         doc: Path | None) -> None:
    """Reproduce the papers' claims on the synthetic set: train, evaluate, report verdicts.

    Claims already measured into --out are read from its cache, so publishing a finished run
    (--publish, --doc) trains nothing.
    """
    from experiments import repro_readme

    if threads < 1:
        raise SalkitError(f"--threads must be >= 1, got {threads}")
    if doc is not None and publish_to is None:
        raise SalkitError("--doc needs --publish DOCS: the section links the pictures published there")
    # Everything the --doc step needs is checked before a run that takes minutes.
    if doc is not None:
        repro_readme.check_readme(doc)
    chosen = resolve_budget(out, budget)
    import torch

    torch.set_num_threads(threads)
    selected = [c.strip() for c in claims.split(",") if c.strip()] if claims else None
    results = reproduce(out, chosen, selected, echo=lambda s: click.echo(s, err=True))
    click.echo(render_markdown(results))
    click.echo(f"wrote {out / 'results.json'}, {out / 'results.md'}")
    if publish_to is not None:
        publish_docs(out, publish_to)
        click.echo(f"published to {publish_to / REPORT}")
    if doc is not None and publish_to is not None:
        command = publish_command(chosen.name, out, publish_to, doc)
        changed = publish_readme(out, results, publish_to, doc, command)
        click.echo(f"{'rewrote' if changed else 'unchanged:'} the results section of {doc}")


if __name__ == "__main__":
    main()
