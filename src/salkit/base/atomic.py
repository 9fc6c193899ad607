"""Atomic file and directory writes: a reader sees the old content or the new, never half.

Everything salkit writes for a user (checkpoints, bundles, PNG maps, JSON reports) goes
through these helpers: write to a temporary sibling, flush and fsync, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from salkit.base.errors import SalkitError


def _check_parent_writable(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SalkitError(f"cannot create directory {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise SalkitError(f"directory {parent} is not writable")


def _umask() -> int:
    """The process umask (read from /proc where it can be, so it is never changed, even briefly)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_created(path: Path, base_mode: int) -> None:
    """Give a temporary file or directory the mode ``open``/``mkdir`` would have given it.

    ``mkstemp``/``mkdtemp`` create 0600/0700 entries; renamed into place those would keep a bundle
    from being read by another user (a Triton server in a container, a web server).
    """
    os.chmod(path, base_mode & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The caller writes the temporary file however it likes (``torch.save``, ``PIL.save`` …).
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    _check_parent_writable(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    _as_created(tmp, 0o666)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds.

    An existing ``path`` is refused unless ``force``; with ``force`` it is replaced only after
    the new directory is complete, so a failed run leaves the old one intact.
    """
    target = Path(path)
    if target.exists() and not force:
        raise SalkitError(f"{target} already exists (pass --force to replace it)")
    if target.exists() and not target.is_dir():
        raise SalkitError(f"{target} exists and is not a directory")
    _check_parent_writable(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    _as_created(tmp, 0o777)
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def make_readable(directory: Path) -> None:
    """Give a finished tree the permissions of a normal mkdir/open under the umask.

    Temporary files and directories (mkstemp/mkdtemp, also inside libraries) are private; a
    bundle or a Triton repository is meant to be read by others (a server in a container).
    """
    umask = _umask()
    for path in (directory, *directory.rglob("*")):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
