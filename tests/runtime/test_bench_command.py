"""The bench record names the command that made it (the README's results section quotes it)."""

from __future__ import annotations

import json
import platform
import shlex

from click.testing import CliRunner

from salkit.runtime.cli.main import main


def test_bench_record_holds_its_command_line(toy_qefpn, tmp_path) -> None:
    out = tmp_path / "q b.json"  # a space: the command must stay one shell word per argument
    args = ["bench", "--engine", str(toy_qefpn.path), "--batch", "2", "--repeat", "2", "--gemm-size", "256", "--json", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    command = json.loads(out.read_text())["command"]
    words = shlex.split(command)
    assert words[:2] == ["sal-runtime", "bench"]
    # Exactly the options given (in the command's declaration order), defaults left out.
    given = dict(zip(args[1::2], args[2::2], strict=True))
    assert dict(zip(words[2::2], words[3::2], strict=True)) == given
    assert json.loads(out.read_text())["machine"]["platform"] == platform.platform()
