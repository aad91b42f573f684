"""Raw input reading: rawio.open_raw (plain, .gz, tar/zip members) and lines (blocks of whole lines)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest

from utilanno.data import lineblocks as lines
from utilanno.data import rawfiles as rawio
from utilanno.errors import InputFormatError

# ---------------------------------------------------------------------------------------------------------
# Helpers: write fixtures in the layouts of the official downloads.


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def read_all(path, member=None) -> bytes:
    with rawio.open_raw(path, member) as fh:
        return fh.read()


def blocks(data: bytes, block_bytes: int) -> list[tuple[int, str]]:
    frames = list(lines.iter_line_blocks(io.BytesIO(data), "f.tsv", block_bytes=block_bytes))
    for frame in frames:
        assert frame.columns == ["line", "raw"]
        assert frame["line"].dtype == pl.UInt64
        assert frame["raw"].dtype == pl.String
    return [row for frame in frames for row in frame.iter_rows()]


PAYLOAD = b"1\tfirst line\n2\tsecond line\n"

# ---------------------------------------------------------------------------------------------------------
# open_raw


def test_plain_file(tmp_path):
    p = tmp_path / "collection.tsv"
    p.write_bytes(PAYLOAD)
    assert read_all(p) == PAYLOAD


def test_gz_file_is_gunzipped(tmp_path):
    p = tmp_path / "queries.tsv.gz"
    p.write_bytes(gzip.compress(PAYLOAD))
    assert read_all(p) == PAYLOAD


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_tar_member(tmp_path, suffix, mode):
    p = write_tar(
        tmp_path / f"collectionandqueries{suffix}", {"other.tsv": b"x\ty\n", "collection.tsv": PAYLOAD}, mode
    )
    assert read_all(p, "collection.tsv") == PAYLOAD
    assert read_all(p, "other.tsv") == b"x\ty\n"


def test_tar_member_with_dot_slash_prefix(tmp_path):
    p = write_tar(tmp_path / "a.tar.gz", {"./collection.tsv": PAYLOAD})
    assert read_all(p, "collection.tsv") == PAYLOAD
    assert read_all(p, "./collection.tsv") == PAYLOAD


def test_gz_member_in_tar(tmp_path):
    p = write_tar(tmp_path / "a.tar.gz", {"dir/q.tsv.gz": gzip.compress(PAYLOAD)})
    assert read_all(p, "dir/q.tsv.gz") == PAYLOAD


def test_zip_member(tmp_path):
    p = write_zip(
        tmp_path / "scifact.zip", {"scifact/corpus.jsonl": b"{}\n", "scifact/qrels/test.tsv": PAYLOAD}
    )
    assert read_all(p, "scifact/qrels/test.tsv") == PAYLOAD


def test_gz_member_in_zip(tmp_path):
    p = write_zip(tmp_path / "a.zip", {"nq/NQ-open.dev.jsonl.gz": gzip.compress(PAYLOAD)})
    assert read_all(p, "nq/NQ-open.dev.jsonl.gz") == PAYLOAD


def test_missing_tar_member_lists_names(tmp_path):
    p = write_tar(tmp_path / "a.tar.gz", {"collection.tsv": PAYLOAD, "queries.dev.tsv": PAYLOAD})
    with pytest.raises(InputFormatError) as err:
        read_all(p, "qrels.dev.tsv")
    msg = str(err.value)
    assert err.value.line is None
    assert err.value.path == str(p)
    assert "archive has no member 'qrels.dev.tsv'" in msg
    assert "collection.tsv" in msg and "queries.dev.tsv" in msg


def test_missing_zip_member_lists_names(tmp_path):
    p = write_zip(tmp_path / "a.zip", {"scifact/corpus.jsonl": b"{}\n", "scifact/queries.jsonl": b"{}\n"})
    with pytest.raises(InputFormatError) as err:
        read_all(p, "scifact/qrels/test.tsv")
    msg = str(err.value)
    assert err.value.line is None
    assert "archive has no member 'scifact/qrels/test.tsv'" in msg
    assert "scifact/corpus.jsonl" in msg and "scifact/queries.jsonl" in msg


def test_tar_directory_entry_is_not_a_member(tmp_path):
    p = tmp_path / "a.tar.gz"
    with tarfile.open(p, "w:gz") as tf:
        info = tarfile.TarInfo("collection.tsv")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
    with pytest.raises(InputFormatError, match="no member 'collection.tsv'"):
        read_all(p, "collection.tsv")


@pytest.mark.parametrize("name", ["a.tar.gz", "a.tgz", "a.tar", "a.zip"])
def test_archive_without_member_is_an_error(tmp_path, name):
    p = tmp_path / name
    if name.endswith(".zip"):
        write_zip(p, {"x": PAYLOAD})
    else:
        write_tar(p, {"x": PAYLOAD}, "w" if name.endswith(".tar") else "w:gz")
    with pytest.raises(InputFormatError) as err:
        read_all(p)
    assert "is an archive: name the member" in str(err.value)
    assert err.value.line is None


def test_member_of_a_non_archive_is_an_error(tmp_path):
    p = tmp_path / "collection.tsv"
    p.write_bytes(PAYLOAD)
    with pytest.raises(InputFormatError, match="member 'x' given, but the file is not"):
        read_all(p, "x")


def test_missing_file(tmp_path):
    with pytest.raises(InputFormatError) as err:
        read_all(tmp_path / "nope.tsv")
    assert "file does not exist" in str(err.value)
    assert err.value.path == str(tmp_path / "nope.tsv")


def test_display_name_and_is_archive():
    assert rawio.display_name("a.tar.gz", "collection.tsv") == "a.tar.gz!collection.tsv"
    assert rawio.display_name("q.tsv", None) == "q.tsv"
    assert rawio.is_archive("x.tar.gz") and rawio.is_archive("x.zip") and rawio.is_archive("x.tgz")
    assert not rawio.is_archive("x.tsv.gz") and not rawio.is_archive("x.tsv")


def test_error_message_format():
    err = InputFormatError("f.tsv", 3, "bad thing")
    assert str(err) == "f.tsv:3: bad thing"
    assert (err.path, err.line, err.reason) == ("f.tsv", 3, "bad thing")
    assert str(InputFormatError("f.tsv", None, "bad")) == "f.tsv: bad"
    assert isinstance(err, ValueError)


# ---------------------------------------------------------------------------------------------------------
# lines.iter_line_blocks: line numbering across blocks, newlines, decoding errors

TEXT = b"1\talpha\n22\tbeta gamma\n333\t\xc3\xa9t\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac\n4\tdelta\n"
EXPECTED = [(1, "1\talpha"), (2, "22\tbeta gamma"), (3, "333\tété 東京"), (4, "4\tdelta")]


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 7, 11, 16, 1 << 20])
def test_blocks_number_lines_across_block_boundaries(block_bytes):
    # Tiny blocks also split multi-byte UTF-8 characters and cut lines longer than a block.
    assert blocks(TEXT, block_bytes) == EXPECTED


def test_blocks_default_size_yields_one_block():
    frames = list(lines.iter_line_blocks(io.BytesIO(TEXT), "f"))
    assert len(frames) == 1
    assert frames[0].rows() == EXPECTED


def test_several_blocks_are_yielded_for_a_small_block_size():
    data = b"".join(b"%d\tline %d\n" % (i, i) for i in range(1, 101))
    frames = list(lines.iter_line_blocks(io.BytesIO(data), "f", block_bytes=64))
    assert len(frames) > 5
    got = [row for f in frames for row in f.iter_rows()]
    assert got == [(i, f"{i}\tline {i}") for i in range(1, 101)]


def test_line_longer_than_block():
    long = "x" * 500
    data = f"1\ta\n2\t{long}\n3\tc\n".encode()
    assert blocks(data, 8) == [(1, "1\ta"), (2, f"2\t{long}"), (3, "3\tc")]


def test_no_trailing_newline():
    assert blocks(b"1\ta\n2\tb", 1 << 20) == [(1, "1\ta"), (2, "2\tb")]
    assert blocks(b"1\ta\n2\tb", 3) == [(1, "1\ta"), (2, "2\tb")]


def test_empty_line_in_the_middle_is_kept():
    assert blocks(b"1\ta\n\n3\tc\n", 1 << 20) == [(1, "1\ta"), (2, ""), (3, "3\tc")]
    assert blocks(b"1\ta\n\n3\tc\n", 2) == [(1, "1\ta"), (2, ""), (3, "3\tc")]


def test_empty_input_yields_nothing():
    assert blocks(b"", 4) == []


def test_trailing_blank_line_is_a_line():
    assert blocks(b"1\ta\n\n", 1 << 20) == [(1, "1\ta"), (2, "")]


def test_crlf_inside_a_block():
    assert blocks(b"1\ta\r\n2\tb\r\n3\tc\n", 1 << 20) == [(1, "1\ta"), (2, "2\tb"), (3, "3\tc")]


@pytest.mark.parametrize("block_bytes", [1 << 20, 5])
def test_crlf_last_line_of_block(block_bytes):
    assert blocks(b"1\ta\r\n2\tb\r\n", block_bytes) == [(1, "1\ta"), (2, "2\tb")]


def test_lone_carriage_return_is_text():
    assert blocks(b"1\ta\rb\n2\tc", 1 << 20) == [(1, "1\ta\rb"), (2, "2\tc")]


@pytest.mark.parametrize("block_bytes", [1, 3, 6, 10, 1 << 20])
@pytest.mark.parametrize("bad_line", [1, 2, 4, 5])
def test_invalid_utf8_names_the_line(block_bytes, bad_line):
    rows = [b"%d\tgood \xc3\xa9 text" % i for i in range(1, 6)]
    rows[bad_line - 1] = b"%d\tbad \xff byte" % bad_line
    data = b"\n".join(rows) + b"\n"
    with pytest.raises(InputFormatError) as err:
        blocks(data, block_bytes)
    assert err.value.line == bad_line
    assert err.value.path == "f.tsv"
    assert "not valid UTF-8" in str(err.value)
    assert "\\xff" in str(err.value)


def test_invalid_utf8_in_a_line_longer_than_the_block():
    data = b"1\tok\n2\tok\n3\t" + b"y" * 300 + b"\xfe" + b"y" * 10 + b"\n4\tok\n"
    with pytest.raises(InputFormatError) as err:
        blocks(data, 16)
    assert err.value.line == 3


def test_invalid_utf8_on_last_line_without_newline():
    with pytest.raises(InputFormatError) as err:
        blocks(b"1\ta\n2\tb\n3\t\xc3", 4)
    assert err.value.line == 3


def test_truncated_multibyte_character_before_newline():
    with pytest.raises(InputFormatError) as err:
        blocks(b"1\ta\n2\tb\xe6\x9d\n3\tc\n", 1 << 20)
    assert err.value.line == 2


# ---------------------------------------------------------------------------------------------------------
# lines.split_fields / split_whitespace / check_ids


def frame(raws: list[str], first: int = 1) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "line": pl.Series(range(first, first + len(raws)), dtype=pl.UInt64),
            "raw": pl.Series(raws, dtype=pl.String),
        }
    )


def test_split_fields():
    got = lines.split_fields(frame(["1\ta b  c", "2\t", "3\tx"]), "f", ["docid", "text"])
    assert got.columns == ["line", "docid", "text"]
    assert got.rows() == [(1, "1", "a b  c"), (2, "2", ""), (3, "3", "x")]


def test_split_fields_three_fields():
    with pytest.raises(InputFormatError) as err:
        lines.split_fields(frame(["1\ta", "2\tb", "3\tc\td"], first=1), "f.tsv", ["docid", "text"])
    assert err.value.line == 3
    assert "expected 2 tab-separated fields (docid, text), found 3" in str(err.value)
    assert "'3\\tc\\td'" in str(err.value)


def test_split_fields_one_field_and_empty_line():
    with pytest.raises(InputFormatError) as err:
        lines.split_fields(frame(["1\ta", "2 b"], first=10), "f.tsv", ["docid", "text"])
    assert err.value.line == 11
    assert "found 1" in str(err.value)
    with pytest.raises(InputFormatError) as err:
        lines.split_fields(frame(["1\ta", ""], first=1), "f.tsv", ["docid", "text"])
    assert err.value.line == 2
    assert "found 0" in str(err.value)


def test_split_fields_long_line_is_shortened_in_the_message():
    with pytest.raises(InputFormatError) as err:
        lines.split_fields(frame(["z" * 200]), "f", ["docid", "text"])
    assert "z" * 77 + "..." in str(err.value)
    assert "z" * 100 not in str(err.value)


def test_split_whitespace():
    got = lines.split_whitespace(
        frame(["q1 0 d1 1", "q2\t0\td2\t2", "  q3 \t Q0   d3\t-1  "]), "f", ["a", "b", "c", "d"]
    )
    assert got.rows() == [(1, "q1", "0", "d1", "1"), (2, "q2", "0", "d2", "2"), (3, "q3", "Q0", "d3", "-1")]


@pytest.mark.parametrize("raw,found", [("q1 0 d1", 3), ("q1 0 d1 1 x", 5), ("", 0), ("  \t ", 0)])
def test_split_whitespace_bad_count(raw, found):
    with pytest.raises(InputFormatError) as err:
        lines.split_whitespace(frame(["q 0 d 1", raw]), "f", ["qid", "iter", "docid", "rel"])
    assert err.value.line == 2
    assert f"expected 4 whitespace-separated fields (qid, iter, docid, rel), found {found}" in str(err.value)


def test_check_ids():
    rows = pl.DataFrame({"line": [1, 2, 3], "docid": ["1", "22", "3x"]})
    lines.check_ids(rows.head(2), "docid", "f", r"\d+", "an id of digits")
    with pytest.raises(InputFormatError) as err:
        lines.check_ids(rows, "docid", "f", r"\d+", "an id of digits")
    assert err.value.line == 3
    assert "bad docid '3x': expected an id of digits" in str(err.value)


def test_check_ids_is_anchored():
    rows = pl.DataFrame({"line": [7], "qid": ["a b"]})
    with pytest.raises(InputFormatError) as err:
        lines.check_ids(rows, "qid", "f", r"\S+", "an id without spaces")
    assert err.value.line == 7
