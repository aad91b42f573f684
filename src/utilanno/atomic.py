"""Publish outputs atomically: write to a temporary name beside the target, then rename.

A crash leaves only `.tmp-*` files, never a file under the final name that looks finished. Temporary names
carry the writer's host and process id; the next writer of the same target removes those whose process is
gone (on this host), so a job killed mid-write leaves nothing behind once it has run again.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def _prefix(target: Path) -> str:
    return f".tmp-{target.name}.{socket.gethostname()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clear_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders of `target` left by writers on this host that have died."""
    target = Path(target)
    host, removed = socket.gethostname(), []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.glob(f".tmp-{glob.escape(target.name)}.{glob.escape(host)}.*"):
        pid = p.name[len(f".tmp-{target.name}.{host}.") :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target), dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_text(target: str | os.PathLike, encoding: str = "utf-8") -> Iterator:
    """Open a text file for writing that appears under `target` only once closed without error."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding=encoding, newline="\n") as fh:
        yield fh


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside `target`; on success it replaces `target` by a rename.

    A crash leaves only `.tmp-*` folders, never a partial folder under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=target.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; published folders get the usual mode
    try:
        yield tmp
        if target.exists():  # a rename cannot replace a non-empty folder: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=_prefix(target), dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
