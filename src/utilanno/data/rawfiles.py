"""Open a raw input as a binary stream: a plain or gzipped file, or one member of a tar/zip archive.

Members are streamed, never extracted to disk: MS MARCO's collection.tar.gz holds a 3 GB TSV.
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from utilanno.errors import InputFormatError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: str | Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def display_name(path: str | Path, member: str | None) -> str:
    """How errors name an input: `archive.tar.gz!member` for archive members."""
    return f"{path}!{member}" if member else str(path)


@contextlib.contextmanager
def open_raw(path: str | Path, member: str | None = None) -> Iterator[BinaryIO]:
    """Yield a binary stream over `path` (or over `member` inside the archive `path`), gunzipping `.gz`."""
    path = Path(path)
    if not path.exists():
        raise InputFormatError(str(path), None, "file does not exist")
    if member is None:
        if is_archive(path):
            raise InputFormatError(
                str(path), None, "is an archive: name the member to read ('member:' in config)"
            )
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            yield fh
        return
    if str(path).endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise InputFormatError(
                    str(path), None, f"archive has no member {member!r} (has e.g. {zf.namelist()[:5]})"
                ) from None
            with zf.open(info) as fh:
                yield _maybe_gunzip(fh, member)
        return
    if is_archive(path):
        # Stream mode ("r|*") reads the archive once, front to back, without a seekable index.
        with tarfile.open(path, mode="r|*") as tf:
            seen = []
            for info in tf:
                name = info.name.removeprefix("./")
                if name == member.removeprefix("./") and info.isfile():
                    fh = tf.extractfile(info)
                    yield _maybe_gunzip(fh, member)
                    return
                if len(seen) < 5:
                    seen.append(name)
            raise InputFormatError(str(path), None, f"archive has no member {member!r} (has e.g. {seen})")
    raise InputFormatError(
        str(path), None, f"member {member!r} given, but the file is not a .tar.gz/.tgz/.tar/.zip"
    )


def _maybe_gunzip(fh: BinaryIO, member: str) -> BinaryIO:
    return gzip.GzipFile(fileobj=fh, mode="rb") if member.endswith(".gz") else fh
