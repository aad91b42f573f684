"""Downloads: local copies, file:// URLs, HTTP with Range resume and retries, checksum verification."""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from utilanno.data import download
from utilanno.data.download import ChecksumError

PAYLOAD = random.Random(0).randbytes(300_001)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# A local HTTP server with Range support (SimpleHTTPRequestHandler ignores Range).


class RangeHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv: FileServer = self.server
        with srv.lock:
            srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
            fail_with = srv.fail_with.pop(0) if srv.fail_with else None
            drop = srv.drops > 0
            if drop:
                srv.drops -= 1
        if fail_with is not None:
            self.send_error(fail_with)
            return
        if self.path != "/data.bin":
            self.send_error(404, "Not Found")
            return
        data, start, status = srv.payload, 0, 200
        wanted = self.headers.get("Range")
        if wanted and srv.range_from is not None:  # a 206 that does not start where it was asked to
            body = data[srv.range_from :]
            self.send_response(206)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Range", f"bytes {srv.range_from}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.wfile.write(body)
            return
        if srv.chunked_cuts > 0:  # chunked transfer encoding, cut short before the last chunk
            with srv.lock:
                srv.chunked_cuts -= 1
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = data[: len(data) // 2]
            self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if wanted and srv.honor_range:
            m = re.fullmatch(r"bytes=(\d+)-", wanted)
            assert m, wanted
            start = int(m[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if drop:  # a correct Content-Length, then only part of the body and a closed connection
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.lock = threading.Lock()
        self.payload = PAYLOAD
        self.requests: list[dict] = []
        self.honor_range = True
        self.drops = 0
        self.fail_with: list[int] = []
        self.range_from: int | None = None
        self.chunked_cuts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/data.bin"


@pytest.fixture
def server():
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def sleeps(monkeypatch):
    """Record retry waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    return waits


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# ---------------------------------------------------------------------------------------------------------
# Local files


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "src" / "collection.tar.gz"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


def test_local_path_copy(tmp_path, source):
    dest = tmp_path / "raw" / "deep" / "collection.tar.gz"
    got = download.fetch(None, str(source), dest, md5=MD5, sha256=SHA256)
    assert got == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_of(dest).exists()


def test_file_url(tmp_path):
    src = tmp_path / "a dir" / "data file.bin"  # spaces are percent-encoded in the URL
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    assert "%20" in src.as_uri()
    dest = tmp_path / "out.bin"
    download.fetch(src.as_uri(), None, dest, sha256=SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert not part_of(dest).exists()


def test_local_copy_resumes_from_part(tmp_path, source):
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD[:1000])
    download.fetch(None, str(source), dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD


def test_local_copy_part_longer_than_source_starts_over(tmp_path, source):
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD + b"garbage")
    download.fetch(None, str(source), dest, md5=MD5, sha256=SHA256)
    assert dest.read_bytes() == PAYLOAD


def test_local_copy_overwrites_existing_dest(tmp_path, source):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    download.fetch(None, str(source), dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("which", ["md5", "sha256"])
def test_checksum_mismatch_leaves_nothing(tmp_path, source, which):
    dest = tmp_path / "out.bin"
    wrong = {"md5": "0" * 32} if which == "md5" else {"sha256": "0" * 64}
    with pytest.raises(ChecksumError) as err:
        download.fetch(None, str(source), dest, **wrong)
    assert f"{which} mismatch" in str(err.value)
    assert (MD5 if which == "md5" else SHA256) in str(err.value)
    assert not dest.exists()
    assert not part_of(dest).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_corrupt_part_fails_checksum_and_is_removed(tmp_path, source):
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(b"\0" * 1000)  # wrong first bytes: resuming cannot fix them
    with pytest.raises(ChecksumError):
        download.fetch(None, str(source), dest, md5=MD5)
    assert not dest.exists() and not part_of(dest).exists()
    download.fetch(None, str(source), dest, md5=MD5)  # the next run starts clean
    assert dest.read_bytes() == PAYLOAD


def test_no_checksum_is_accepted_with_a_warning(tmp_path, source, caplog):
    dest = tmp_path / "out.bin"
    with caplog.at_level("WARNING", logger="utilanno.download"):
        download.fetch(None, str(source), dest)
    assert dest.read_bytes() == PAYLOAD
    assert "no checksum configured" in caplog.text


def test_missing_local_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        download.fetch(None, str(tmp_path / "nope.bin"), tmp_path / "out.bin")
    with pytest.raises(FileNotFoundError):
        download.fetch((tmp_path / "nope.bin").as_uri(), None, tmp_path / "out.bin")


def test_file_digests_and_verify(tmp_path, source):
    assert download.file_digests(source) == {"md5": MD5, "sha256": SHA256}
    assert download.file_digests(source, ("sha256",)) == {"sha256": SHA256}
    download.verify(source, md5=MD5, sha256=SHA256)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        download.verify(source, md5=MD5, sha256="f" * 64)


# ---------------------------------------------------------------------------------------------------------
# HTTP


def test_http_download(tmp_path, server, sleeps):
    dest = tmp_path / "out.bin"
    download.fetch(server.url, None, dest, md5=MD5, sha256=SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None]
    assert sleeps == []


def test_http_resume_sends_range(tmp_path, server, sleeps):
    dest = tmp_path / "out.bin"
    half = len(PAYLOAD) // 2
    part_of(dest).write_bytes(PAYLOAD[:half])
    download.fetch(server.url, None, dest, md5=MD5, sha256=SHA256)
    assert server.requests == [{"path": "/data.bin", "range": f"bytes={half}-"}]
    assert dest.read_bytes() == PAYLOAD
    assert download.file_digests(dest) == {"md5": MD5, "sha256": SHA256}
    assert not part_of(dest).exists()
    assert sleeps == []


def test_http_server_ignoring_range_starts_over(tmp_path, server, sleeps):
    server.honor_range = False
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD[:5000])
    download.fetch(server.url, None, dest, md5=MD5, sha256=SHA256)
    assert server.requests[0]["range"] == "bytes=5000-"
    assert dest.read_bytes() == PAYLOAD


def test_http_part_already_complete_gets_416(tmp_path, server, sleeps):
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD)
    download.fetch(server.url, None, dest, sha256=SHA256)
    assert server.requests == [{"path": "/data.bin", "range": f"bytes={len(PAYLOAD)}-"}]
    assert dest.read_bytes() == PAYLOAD


def test_http_connection_dropped_once_is_resumed(tmp_path, server, sleeps):
    server.drops = 1
    dest = tmp_path / "out.bin"
    download.fetch(server.url, None, dest, md5=MD5, sha256=SHA256, retries=3)
    assert dest.read_bytes() == PAYLOAD
    cut = len(PAYLOAD) // 3
    assert [r["range"] for r in server.requests] == [None, f"bytes={cut}-"]
    assert sleeps == [2]
    assert not part_of(dest).exists()


def test_http_resume_then_drop_then_resume(tmp_path, server, sleeps):
    server.drops = 1
    dest = tmp_path / "out.bin"
    start = 100_000
    part_of(dest).write_bytes(PAYLOAD[:start])
    download.fetch(server.url, None, dest, md5=MD5, sha256=SHA256)
    second = start + (len(PAYLOAD) - start) // 3
    assert [r["range"] for r in server.requests] == [f"bytes={start}-", f"bytes={second}-"]
    assert dest.read_bytes() == PAYLOAD


def test_http_404_fails_without_retries(tmp_path, server, sleeps):
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="HTTP 404"):
        download.fetch(server.url.replace("data.bin", "missing.bin"), None, dest, md5=MD5)
    assert len(server.requests) == 1
    assert sleeps == []
    assert not dest.exists()


def test_http_server_errors_are_retried(tmp_path, server, sleeps):
    server.fail_with = [503, 500]
    dest = tmp_path / "out.bin"
    download.fetch(server.url, None, dest, sha256=SHA256, retries=3)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 3
    assert sleeps == [2, 4]


def test_http_gives_up_after_retries(tmp_path, server, sleeps):
    server.fail_with = [500] * 10
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="giving up after 2 retries"):
        download.fetch(server.url, None, dest, sha256=SHA256, retries=2)
    assert len(server.requests) == 3
    assert sleeps == [2, 4]
    assert not dest.exists()


def test_http_checksum_mismatch_leaves_nothing(tmp_path, server, sleeps):
    dest = tmp_path / "out.bin"
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        download.fetch(server.url, None, dest, md5="0" * 32)
    assert not dest.exists()
    assert not part_of(dest).exists()


def test_http_connection_refused_is_retried(tmp_path, sleeps):
    srv = FileServer()  # bound but never serving, then closed: the port refuses connections
    url = srv.url
    srv.server_close()
    with pytest.raises(RuntimeError, match="giving up after 1 retries"):
        download.fetch(url, None, tmp_path / "out.bin", retries=1, timeout=5)
    assert sleeps == [2]


# ---------------------------------------------------------------------------------------------------------
# Bodies that must never be published


def test_http_short_body_every_time_publishes_nothing(tmp_path, server, sleeps):
    server.drops = 100  # Content-Length promised, a third of the body sent, connection closed
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="giving up after 2 retries"):
        download.fetch(server.url, None, dest, retries=2, manifest=tmp_path / "manifest.json")
    assert not dest.exists() and not (tmp_path / "manifest.json").exists()


def test_http_stale_part_larger_than_the_file_starts_over(tmp_path, server, sleeps):
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD + b"stale tail of an older, longer file")
    download.fetch(server.url, None, dest)  # no checksum: only the 416's size tells the part is wrong
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [f"bytes={len(PAYLOAD) + 35}-", None]


def test_http_206_from_byte_zero_starts_over(tmp_path, server, sleeps):
    server.range_from = 0
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD[:5000])
    download.fetch(server.url, None, dest)
    assert dest.read_bytes() == PAYLOAD  # not PAYLOAD[:5000] + PAYLOAD


def test_http_206_from_another_offset_is_refused(tmp_path, server, sleeps):
    server.range_from = 7000
    dest = tmp_path / "out.bin"
    part_of(dest).write_bytes(PAYLOAD[:5000])
    with pytest.raises(RuntimeError, match="asked for bytes from 5000, got a range from 7000"):
        download.fetch(server.url, None, dest, retries=1)
    assert not dest.exists() and part_of(dest).read_bytes() == PAYLOAD[:5000]


def test_http_chunked_transfer_cut_short_is_retried(tmp_path, server, sleeps):
    server.chunked_cuts = 1
    dest = tmp_path / "out.bin"
    download.fetch(server.url, None, dest, retries=2)
    assert dest.read_bytes() == PAYLOAD and sleeps == [2]


def test_chunked_transfer_cut_short_every_time_publishes_nothing(tmp_path, server, sleeps):
    server.chunked_cuts = 100
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="giving up after 1 retries"):
        download.fetch(server.url, None, dest, retries=1)
    assert not dest.exists()


def test_manifest_records_the_first_download_and_refuses_a_changed_file(tmp_path, server, sleeps):
    manifest = tmp_path / "downloads" / "manifest.json"
    download.fetch(server.url, None, tmp_path / "a.bin", manifest=manifest)
    assert json.loads(manifest.read_text()) == {server.url: {"size": len(PAYLOAD), "sha256": SHA256}}
    download.fetch(server.url, None, tmp_path / "b.bin", manifest=manifest)  # same bytes: accepted
    server.payload = PAYLOAD[:-1] + b"X"
    with pytest.raises(ChecksumError, match="differs from its first download"):
        download.fetch(server.url, None, tmp_path / "c.bin", manifest=manifest)
    assert not (tmp_path / "c.bin").exists() and not part_of(tmp_path / "c.bin").exists()


def test_manifest_covers_local_copies(tmp_path, source):
    manifest = tmp_path / "manifest.json"
    download.fetch(None, str(source), tmp_path / "a", manifest=manifest)
    assert json.loads(manifest.read_text())[str(source.resolve())]["sha256"] == SHA256
    source.write_bytes(PAYLOAD[::-1])
    with pytest.raises(ChecksumError, match="differs from its first download"):
        download.fetch(None, str(source), tmp_path / "b", manifest=manifest)
    assert not (tmp_path / "b").exists()


def test_configured_checksums_take_precedence_over_the_manifest(tmp_path, server, sleeps):
    manifest = tmp_path / "manifest.json"
    download.fetch(server.url, None, tmp_path / "a.bin", sha256=SHA256, manifest=manifest)
    assert not manifest.exists()  # verified against the published checksum; nothing to record


def test_cli_reports_an_http_error_as_one_line_with_url_and_status(tmp_path, server, sleeps):
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location(
        "data_cli", Path(__file__).parents[1] / "scripts" / "data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url = server.url.replace("data.bin", "missing.bin")
    result = CliRunner().invoke(module.cli, ["download", "--url", url, "--dest", str(tmp_path / "x")])
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert result.output.strip() == f"Error: {url}: HTTP 404 Not Found"
    assert not (tmp_path / "x").exists()
