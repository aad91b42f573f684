"""Resumable, verified downloads of the raw sources (http(s), file:// URLs and local paths).

Bytes go to `<dest>.part`; an interrupted download continues from there with an HTTP Range request. The
file appears under its final name only after every configured checksum matched, so a finished-looking
file is always a verified one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from utilanno.atomic import atomic_text

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    pass


class DownloadError(RuntimeError):
    """An HTTP error or a transfer that kept failing: one line with the URL and the status."""


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


class Manifest:
    """Size and sha256 of every file fetched without a published checksum, recorded on its first download;
    later downloads of the same source must match (an upstream file that changed is not taken silently).

    One JSON file shared by concurrent download jobs: read-modify-write under an exclusive lock.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def check(self, key: str, part: Path) -> None:
        import fcntl

        got = {"size": part.stat().st_size, "sha256": file_digests(part, ("sha256",))["sha256"]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
            want = entries.get(key)
            if want is None:
                entries[key] = got
                with atomic_text(self.path) as fh:
                    json.dump(entries, fh, indent=1, sort_keys=True)
                log.info(
                    "%s: recorded in %s (size %d, sha256 %s)", key, self.path, got["size"], got["sha256"]
                )
            elif want != got:
                raise ChecksumError(
                    f"{key}: differs from its first download recorded in {self.path} (then size"
                    f" {want['size']}, sha256 {want['sha256']}; now size {got['size']}, sha256"
                    f" {got['sha256']}); remove its entry there to accept the new file"
                )
            else:
                log.info("%s: matches %s", key, self.path)


def fetch(
    url: str | None,
    path: str | None,
    dest: str | Path,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    manifest: str | Path | None = None,
) -> Path:
    """Download `url` (or copy the local `path`) to `dest`, resuming a partial `.part`, then verify: against
    the configured checksums, else against `manifest` (recorded there on the first download)."""
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
        if not (md5 or sha256) and manifest is not None:
            Manifest(manifest).check(url or str(Path(path).resolve()), part)
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
    if part.stat().st_size != size:
        raise ConnectionError(f"{src}: copied {part.stat().st_size} of {size} bytes (the file changed?)")
    log.info("copied %s (%d bytes, resumed at %d)", src, size, have)


def _content_range(resp) -> tuple[int | None, int | None]:
    """(first byte, total size) of a `Content-Range: bytes a-b/total` (or `bytes */total`) header."""
    m = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (resp.headers.get("Content-Range") or "").strip())
    if not m:
        return None, None
    start = int(m[1]) if m[1] is not None else None
    return start, int(m[2]) if m[2] != "*" else None


def _http_resumable(url: str, part: Path, retries: int, timeout: float) -> None:
    """Fetch `url` into `part`, continuing what it holds. Every body is checked: a 206 must start where the
    part ends, a Content-Length must be met; otherwise the attempt is retried (resuming), never accepted."""
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "utilanno-download/0.1"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                start, size = _content_range(resp) if resp.status == 206 else (0, None)
                if resp.status == 206 and start != have:
                    if start != 0:
                        raise ConnectionError(f"asked for bytes from {have}, got a range from {start}")
                    log.info("%s: range answered from byte 0; starting over", url)
                    have = 0
                elif have and resp.status != 206:
                    log.info("%s: server ignored the range request; starting over", url)
                    have = 0
                length = resp.headers.get("Content-Length")
                total = int(length) + have if length is not None else size
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
            if (
                err.code == 416 and have
            ):  # range beyond the end: complete only if the part is exactly the file
                _, size = _content_range(err)
                if size == have:
                    return
                log.warning(
                    "%s: the partial file (%d bytes) does not fit the file (%s bytes); starting over",
                    url,
                    have,
                    size if size is not None else "unknown",
                )
                part.unlink()
                failure = err
            elif 400 <= err.code < 500 and err.code not in (408, 429):
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
            else:
                failure = err
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            OSError,
        ) as err:
            failure = err  # includes IncompleteRead: a chunked transfer cut short
        attempt += 1
        if attempt > retries:
            raise DownloadError(
                f"{url}: giving up after {retries} retries ({failure}); rerun to resume"
            ) from None
        wait = min(60, 2**attempt)
        log.warning(
            "%s: %s; retrying in %d s (attempt %d of %d), resuming", url, failure, wait, attempt, retries
        )
        time.sleep(wait)
