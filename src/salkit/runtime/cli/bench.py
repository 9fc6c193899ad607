"""``sal-runtime bench``: latency, throughput, roofline fraction and torch / fp32 / plan comparisons.

``--compare-torch`` reaches torch through the ``salkit.bench_baselines`` entry point (salkit[train]
registers it), so this command, like the rest of the runtime, imports no training code.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.runtime.cli.common import input_folder, input_folder_options, plan_options


def command_line(ctx: click.Context) -> str:
    """The options given on the command line, in the command's order: the record says how it was made."""
    import shlex

    from click.core import ParameterSource

    words = ["sal-runtime", ctx.info_name or "bench"]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        value = ctx.params[param.name]
        flag = max(param.opts, key=len)
        words += [flag] if param.is_flag else [flag, str(value)]
    return shlex.join(words)


def _batches(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SalkitError(f"--batch must be comma-separated integers such as 1,8; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise SalkitError(f"--batch needs positive batch sizes, got {text!r}")
    return values


@click.command(name="bench")
@click.option("--engine", "bundle", required=True, type=click.Path(), help="Bundle directory to measure.")
@click.option("--compare-torch", "ckpt", type=click.Path(),
              help="Checkpoint of the same model: time torch the authors' way and torch's best CPU recipe (needs salkit[train]).")
@click.option("--fp32", "fp32_bundle", type=click.Path(), help="fp32 bundle of the same checkpoint, for an int8/fp16 --engine: speed and MAE delta.")
@click.option("--batch", "batch_text", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--samples", type=int, help="Latent samples N (default: the bundle's).")
@click.option("--steps", type=int, help="Langevin steps K / Broyden iterations T (default: the bundle's).")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed calls before timing.")
@click.option("--repeat", type=int, default=5, show_default=True, help="Timed calls per batch size and path.")
@input_folder_options("Folder of images to time instead of synthetic ones.")
@click.option("--gemm-size", type=int, default=1536, show_default=True, help="Matrix side of the fp32 GEMM peak measurement.")
@plan_options
@click.option("--compare-plans", "plans_text", default="", help="Also time these plans interleaved with the main one, per graph "
              "and per predict, e.g. ort-cpu:fp32,openvino:fp32.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the record as JSON (stable keys).")
@report_user_errors
def bench(
    bundle: str, ckpt: str | None, fp32_bundle: str | None, batch_text: str, samples: int | None, steps: int | None,
    warmup: int, repeat: int, images_dir: str | None, images_alias: str | None, gemm_size: int, backend: str, precision: str,
    threads: int | None, plans_text: str, json_path: str | None,
) -> None:
    """Time predict per batch size (p50/p99, images/s), both cooperative paths, and the roofline.

    The performance record, not a test: run it on a quiet machine.
    """
    from salkit.base.atomic import atomic_write_text
    from salkit.base.images import list_images
    from salkit.runtime.bench.record import format_record, run_bench

    images_dir = input_folder(images_dir, images_alias, required=False)
    images = list_images(images_dir) if images_dir else None
    baselines = None
    if ckpt:
        from functools import partial

        from salkit.runtime.bench.baselines import baseline_plugin

        if not Path(ckpt).is_file():
            raise SalkitError(f"--compare-torch {ckpt}: no such checkpoint file")
        baselines = partial(baseline_plugin("torch"), ckpt)
    plans = [p.strip() for p in plans_text.split(",") if p.strip()]
    record = run_bench(
        bundle, _batches(batch_text), backend=backend, precision=precision, threads=threads, samples=samples, steps=steps, warmup=warmup,
        repeat=repeat, baselines=baselines, fp32_bundle=fp32_bundle, compare_plans=plans, images=images, gemm_size=gemm_size,
        progress=lambda message: click.echo(message, err=True),
    )
    record["command"] = command_line(click.get_current_context())
    record["machine"]["platform"] = platform.platform()
    # When it ran: records of different sessions (and machines) must not be read as one run.
    record["recorded_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    click.echo(format_record(record))
    if json_path:
        atomic_write_text(json_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        click.echo(f"record written to {json_path}", err=True)
