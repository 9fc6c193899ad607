"""`refine` command (placeholder until the runtime issue lands: it says so and exits non-zero)."""

from __future__ import annotations

import click

from salkit.kernels.errors import SalkitError, report_user_errors


@click.command(name="refine", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@report_user_errors
def refine(args: tuple[str, ...]) -> None:
    """Not implemented yet (the runtime issue)."""
    raise SalkitError("'refine' is not implemented yet (the runtime issue)")
