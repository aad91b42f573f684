"""Resumable, verified downloads of the raw sources (http(s), file:// URLs and local paths).

Bytes go to `<dest>.part`; an interrupted download continues from there with an HTTP Range request. The
file appears under its final name only after every configured checksum matched, so a finished-looking
file is always a verified one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    pass


def file_digests(path: str | Path, algorithms=("md5", "sha256")) -> dict[str, str]:
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def verify(path: str | Path, md5: str | None = None, sha256: str | None = None) -> None:
    expected = {k: v for k, v in (("md5", md5), ("sha256", sha256)) if v}
    if not expected:
        log.warning("%s: no checksum configured; file is not verified", path)
        return
    got = file_digests(path, tuple(expected))
    for name, want in expected.items():
        if got[name] != want:
            raise ChecksumError(f"{path}: {name} mismatch: expected {want}, got {got[name]}")
    log.info("%s: %s verified", path, ", ".join(f"{k} {v}" for k, v in expected.items()))


def fetch(
    url: str | None,
    path: str | None,
    dest: str | Path,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
) -> Path:
    """Download `url` (or copy the local `path`) to `dest`, resuming a partial `.part`, then verify."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if path is not None or (url or "").startswith("file://"):
        src = Path(path) if path is not None else Path(unquote(urlparse(url).path))
        _copy_resumable(src, part)
    else:
        _http_resumable(url, part, retries=retries, timeout=timeout)
    try:
        verify(part, md5, sha256)
    except ChecksumError:
        part.unlink()  # a corrupt partial must not be resumed
        raise
    os.replace(part, dest)
    log.info("%s: %d bytes", dest, dest.stat().st_size)
    return dest


def _copy_resumable(src: Path, part: Path) -> None:
    if not src.is_file():
        raise FileNotFoundError(f"source file {src} does not exist")
    size = src.stat().st_size
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        have = 0
    with open(src, "rb") as fin, open(part, "r+b" if have else "wb") as fout:
        fin.seek(have)
        fout.seek(have)
        fout.truncate()
        shutil.copyfileobj(fin, fout, CHUNK)
    log.info("copied %s (%d bytes, resumed at %d)", src, size, have)


def _http_resumable(url: str, part: Path, retries: int, timeout: float) -> None:
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "utilanno-download/0.1"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                if have and resp.status != 206:
                    log.info("%s: server ignored the range request; starting over", url)
                    have = 0
                total = resp.headers.get("Content-Length")
                total = int(total) + have if total is not None else None
                with (
                    open(part, "ab" if have else "wb") as fh,
                    tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, desc=part.name, mininterval=5
                    ) as bar,
                ):
                    while block := resp.read(CHUNK):
                        fh.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size != total:
                    raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")
                return
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # range beyond the end: the part is already complete
                return
            if 400 <= err.code < 500 and err.code not in (408, 429):
                raise RuntimeError(f"{url}: HTTP {err.code} {err.reason}") from None
            failure = err
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            failure = err
        attempt += 1
        if attempt > retries:
            raise RuntimeError(
                f"{url}: giving up after {retries} retries ({failure}); rerun to resume"
            ) from None
        wait = min(60, 2**attempt)
        log.warning(
            "%s: %s; retrying in %d s (attempt %d of %d), resuming", url, failure, wait, attempt, retries
        )
        time.sleep(wait)
