"""The bundles ``make real`` exported, and the checkpoints they came from, for ``make bench``.

    python -m experiments.bench_real runs/real

Prints one line per bundle found, ``KIND BUNDLE CHECKPOINT`` (coop, then qefpn), for
``sal-runtime bench --engine BUNDLE --compare-torch CHECKPOINT``. The checkpoint is the one
``make real``'s export stage names in ``<real>/stages/export.json`` (the coop bundle comes from
the energy fine-tune when the recipe has one), found under ``<real>`` by its job's folder so the
run may have been moved. A bundle counts only when its export finished (the stage marker), its
manifest is there and the checkpoint is still the one exported (the manifest's sha256: a job
trained again since would time torch on other weights than the runtime's). Whatever is missing
is said in one line on stderr; the exit code is 0 either way, since the bench then times the
paper presets alone. This never trains: ``make real`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

KINDS = ("coop", "qefpn")


def real_bundles(real: Path) -> tuple[list[tuple[str, Path, Path]], str | None]:
    """([(kind, bundle, checkpoint)…], one line on what is missing or None)."""
    marker = real / "stages" / "export.json"
    if not marker.is_file():
        return [], f"no make real bundles in {real} (no finished export: {marker}); benching the paper presets only"
    try:
        exported = json.loads(marker.read_text()).get("bundles", {})
    except (OSError, ValueError) as exc:
        return [], f"make real's export record {marker} is unreadable ({exc}); benching the paper presets only"
    found, missing = [], []
    for kind in KINDS:
        bundle, source = real / f"bundle_{kind}", exported.get(f"bundle_{kind}")
        # The job's folder under <real>: the record holds the path as make real was called.
        ckpt = real / Path(str(source)).parent.name / Path(str(source)).name if source else None
        why = _why_not(bundle, ckpt)
        if why:
            missing.append(f"{kind}: {why}")
        else:
            found.append((kind, bundle, ckpt))
    line = f"make real bundles in {real}: {'; '.join(missing)}; benching {'the rest' if found else 'the paper presets only'}" if missing else None
    return found, line


def _why_not(bundle: Path, ckpt: Path | None) -> str | None:
    from salkit.runtime.bundle import sha256_file

    if ckpt is None:
        return "not in the export record"
    manifest = bundle / "manifest.json"
    if not manifest.is_file():
        return f"{manifest} missing"
    if not ckpt.is_file():
        return f"its checkpoint {ckpt} is missing"
    try:
        recorded = json.loads(manifest.read_text()).get("extra", {}).get("checkpoint", {}).get("sha256")
    except (OSError, ValueError):
        return f"{manifest} is unreadable"
    if recorded and recorded != sha256_file(ckpt):
        return f"{ckpt} changed since the export"
    return None


@click.command()
@click.argument("real", type=click.Path(path_type=Path))
def main(real: Path) -> None:
    found, line = real_bundles(real)
    if line:
        click.echo(line, err=True)
    for kind, bundle, ckpt in found:
        click.echo(f"{kind} {bundle} {ckpt}")


if __name__ == "__main__":
    main()
