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


def test_bench_takes_input_and_its_former_name_images(toy_qefpn, tmp_path, monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    from salkit.runtime.bench import record

    folder = tmp_path / "photos"
    folder.mkdir()
    for stem in ("b", "a"):
        Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(folder / f"{stem}.png")
    seen = []

    def fake_run_bench(bundle, batches, **kwargs):  # records which images bench was asked to time
        seen.append(kwargs["images"])
        return {"machine": {}}

    monkeypatch.setattr(record, "run_bench", fake_run_bench)
    monkeypatch.setattr(record, "format_record", lambda rec: "")
    base = ["bench", "--engine", str(toy_qefpn.path)]
    for option in ("--input", "--images"):
        result = CliRunner().invoke(main, [*base, option, str(folder)])
        assert result.exit_code == 0, result.output
        assert ("deprecated" in result.output) == (option == "--images")
    assert CliRunner().invoke(main, base).exit_code == 0
    assert seen == [[folder / "a.png", folder / "b.png"]] * 2 + [None]
    both = CliRunner().invoke(main, [*base, "--input", str(folder), "--images", str(folder)])
    assert both.exit_code == 2 and "--input only" in both.output
    help_text = CliRunner().invoke(main, ["bench", "--help"]).output
    assert "--input" in help_text and "--images" not in help_text
