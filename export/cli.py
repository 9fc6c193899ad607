"""`export-trt` command (placeholder until the export issue lands: it says so and exits non-zero)."""

from __future__ import annotations

import click

from salkit.kernels.errors import SalkitError, report_user_errors


@click.command(name="export-trt", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@report_user_errors
def main(args: tuple[str, ...]) -> None:
    """Not implemented yet (the export issue)."""
    raise SalkitError("'export-trt' is not implemented yet (the export issue)")
