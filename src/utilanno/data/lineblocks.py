"""Read a large text file in blocks of whole lines, as polars frames with their 1-based line numbers.

Blocks are decoded as UTF-8 one at a time, so memory stays bounded whatever the file size, and a decode
error is reported with the exact line it is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import polars as pl

from utilanno.errors import InputFormatError

BLOCK_BYTES = 32 << 20


def iter_byte_blocks(stream: BinaryIO, block_bytes: int | None = None) -> Iterator[bytes]:
    """Whole lines in blocks of about `block_bytes`, without the newline that ends each block.

    One reused buffer: each block is read into it and the unfinished last line moves to its front.
    """
    buf = bytearray(block_bytes or BLOCK_BYTES)
    have = 0
    while True:
        if have == len(buf):  # a line longer than the buffer
            buf.extend(bytes(len(buf)))
        end, eof = have, False
        with memoryview(buf) as view:
            while end < len(buf):
                n = stream.readinto(view[end:])
                if not n:
                    eof = True
                    break
                end += n
        cut = buf.rfind(b"\n", 0, end)
        if eof:
            if end:  # the last line; the file's final newline ends it, it does not start another
                yield bytes(buf[: end - 1 if buf[end - 1] == 0x0A else end])
            return
        if cut < 0:
            have = end
            continue
        yield bytes(buf[:cut])
        rest = end - cut - 1
        buf[:rest] = buf[cut + 1 : end]
        have = rest


def iter_line_blocks(stream: BinaryIO, name: str, block_bytes: int | None = None) -> Iterator[pl.DataFrame]:
    """Yield frames with columns `line` (u64, 1-based) and `raw` (str, without the newline); lines are split
    and checked as UTF-8 in polars, and a decode error names its line."""
    first_line = 1
    for body in iter_byte_blocks(stream, block_bytes):
        frame = _frame(body, first_line, name)
        first_line += frame.height
        yield frame


def iter_tsv_blocks(stream: BinaryIO, name: str, names: list[str], block_bytes: int | None = None):
    """Frames of `line` plus one string column per name, from a file of exactly len(names) tab-separated
    fields per line (no quoting). Polars' CSV reader parses each block; a block it cannot read unambiguously
    (a blank or short line, an extra field, invalid UTF-8) goes through `iter_line_blocks`' path, whose error
    names the line."""
    first_line = 1
    for body in iter_byte_blocks(stream, block_bytes):
        n_lines = body.count(b"\n") + 1
        rows = _read_tsv(body, names, n_lines)
        if rows is None:
            rows = split_fields(_frame(body, first_line, name), name, names, "\t")
        else:
            rows = rows.select(
                pl.int_range(first_line, first_line + n_lines, dtype=pl.UInt64).alias("line"), *names
            )
        first_line += n_lines
        yield rows


def _read_tsv(body: bytes, names: list[str], n_lines: int) -> pl.DataFrame | None:
    """The block through polars' CSV reader, or None unless every line has exactly len(names) fields."""
    if body.count(b"\t") != n_lines * (len(names) - 1):  # some blank, short or long line
        return None
    try:
        rows = pl.read_csv(
            body,
            separator="\t",
            has_header=False,
            quote_char=None,
            schema=dict.fromkeys(names, pl.String),
            empty_string_is_null=False,
        )
    except pl.exceptions.PolarsError:  # e.g. invalid UTF-8
        return None
    if rows.height != n_lines or rows.null_count().sum_horizontal().item():
        return None
    if b"\r" in body:  # CRLF files, as _frame treats them
        rows = rows.with_columns(pl.col(names[-1]).str.strip_suffix("\r"))
    return rows


def _frame(body: bytes, first_line: int, name: str) -> pl.DataFrame:
    try:
        text = pl.Series("raw", [body], dtype=pl.Binary).cast(pl.String, strict=True)
    except pl.exceptions.PolarsError:  # invalid UTF-8: find the line below
        text = None
    if text is None or text.null_count():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            line = first_line + body.count(b"\n", 0, err.start)
            bad = body[err.start : err.start + 1]
            raise InputFormatError(name, line, f"not valid UTF-8 ({err.reason} at byte {bad!r})") from None
        raise InputFormatError(name, None, "could not be decoded as UTF-8")
    lines = text.str.split("\n").explode()
    if b"\r" in body:  # CRLF files
        lines = lines.str.strip_suffix("\r")
    return pl.DataFrame(
        {
            "line": pl.int_range(first_line, first_line + len(lines), dtype=pl.UInt64, eager=True),
            "raw": lines,
        }
    )


def split_fields(block: pl.DataFrame, name: str, names: list[str], sep: str = "\t") -> pl.DataFrame:
    """Split `raw` into exactly len(names) fields; any other count is an error naming the first bad line."""
    n = len(names)
    raw = pl.col("raw")
    parts = raw.str.split_exact(sep, n - 1)
    rows = block.select(
        "line",
        raw.str.count_matches(sep, literal=True).alias("_seps"),
        *[parts.struct.field(f"field_{k}").alias(col) for k, col in enumerate(names)],
    )
    bad = rows["_seps"] != n - 1
    if bad.any():
        i = bad.arg_true()[0]
        text = block["raw"][i]
        found = 0 if text == "" else int(rows["_seps"][i]) + 1
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InputFormatError(
            name,
            int(block["line"][i]),
            f"expected {n} {_sep_name(sep)}-separated fields ({', '.join(names)}), found {found}: {shown!r}",
        )
    return rows.drop("_seps")


def split_whitespace(block: pl.DataFrame, name: str, names: list[str]) -> pl.DataFrame:
    """Split `raw` on runs of spaces/tabs (TREC files) into exactly len(names) fields."""
    n = len(names)
    parts = block["raw"].str.strip_chars().str.replace_all(r"[ \t]+", " ").str.split(" ")
    lens = parts.list.len()
    bad = (lens != n) | (block["raw"].str.strip_chars() == "")
    if bad.any():
        i = bad.arg_true()[0]
        raw = block["raw"][i]
        found = 0 if raw.strip() == "" else int(lens[i])
        raise InputFormatError(
            name,
            int(block["line"][i]),
            f"expected {n} whitespace-separated fields ({', '.join(names)}), found {found}: {raw[:80]!r}",
        )
    return block.select("line", *[parts.list.get(k).alias(col) for k, col in enumerate(names)])


def check_ids(frame: pl.DataFrame, column: str, name: str, pattern: str, what: str) -> None:
    """Every value of `column` must match `pattern` (anchored); report the first that does not."""
    ok = frame[column].str.contains(f"^(?:{pattern})$")
    if not ok.all():
        i = (~ok).arg_true()[0]
        raise InputFormatError(
            name, int(frame["line"][i]), f"bad {column} {frame[column][i]!r}: expected {what}"
        )


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", " ": "space"}.get(sep, repr(sep))
