from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from salkit.base.atomic import atomic_directory, atomic_path, atomic_write_text
from salkit.base.errors import SalkitError


def test_atomic_path_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_directory_refuses_existing_without_force(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    with pytest.raises(SalkitError, match="already exists"):
        with atomic_directory(target):
            pass


def test_atomic_directory_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_directory(target, force=True) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError("check failed")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with atomic_directory(target, force=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]


def test_unwritable_parent_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SalkitError, match="cannot create directory"):
        atomic_write_text(blocker / "sub" / "out.txt", "x")


def test_cli_user_error_is_one_line_and_exit_2() -> None:
    exe = Path(sys.executable).with_name("sal-runtime")
    result = subprocess.run([str(exe), "bench", "--engine", "/nonexistent"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_mode_plain_writes_get(tmp_path: Path, umask: int) -> None:
    import os
    import stat

    old = os.umask(umask)
    try:
        (tmp_path / "plain.txt").write_text("x")
        (tmp_path / "plain_dir").mkdir()
        atomic_write_text(tmp_path / "atomic.txt", "x")
        with atomic_directory(tmp_path / "atomic_dir") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "atomic_dir") == mode(tmp_path / "plain_dir") == 0o777 & ~umask
