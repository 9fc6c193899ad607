"""`serve` command (placeholder until the server issue lands: it says so and exits non-zero)."""

from __future__ import annotations

import click

from salkit.kernels.errors import SalkitError, report_user_errors


@click.command(name="serve", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@report_user_errors
def serve(args: tuple[str, ...]) -> None:
    """Not implemented yet (the server issue)."""
    raise SalkitError("'serve' is not implemented yet (the server issue)")
