"""`train-coop` command (placeholder until the cooperative-core issue lands: it says so and exits non-zero)."""

from __future__ import annotations

import click

from salkit.kernels.errors import SalkitError, report_user_errors


@click.command(name="train-coop", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@report_user_errors
def main(args: tuple[str, ...]) -> None:
    """Not implemented yet (the cooperative-core issue)."""
    raise SalkitError("'train-coop' is not implemented yet (the cooperative-core issue)")
