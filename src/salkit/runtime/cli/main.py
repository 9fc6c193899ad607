"""``sal-runtime``: predict, refine, serve, bench and eval on an exported bundle.

Each sub-command lives in its own module and imports its heavy dependencies (onnxruntime,
the web stack, TensorRT) only when it runs, so ``--help`` works on any install.
"""

from __future__ import annotations

import click

from salkit.runtime.cli.bench import bench
from salkit.runtime.cli.eval import eval_command
from salkit.runtime.cli.predict import predict
from salkit.runtime.cli.refine import refine
from salkit.runtime.server.cmd_serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="salkit")
def main() -> None:
    """Run exported salkit bundles: no PyTorch needed."""


for command in (predict, refine, serve, bench, eval_command):
    main.add_command(command)
