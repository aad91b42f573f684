"""Read a large text file in blocks of whole lines, as polars frames with their 1-based line numbers.

Blocks are decoded as UTF-8 one at a time, so memory stays bounded whatever the file size, and a decode
error is reported with the exact line it is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import polars as pl

from .errors import InputFormatError

BLOCK_BYTES = 32 << 20


def iter_line_blocks(stream: BinaryIO, name: str, block_bytes: int | None = None) -> Iterator[pl.DataFrame]:
    """Yield frames with columns `line` (u64, 1-based) and `raw` (str, without the newline)."""
    block_bytes = block_bytes or BLOCK_BYTES
    first_line = 1
    carry = b""
    while True:
        block = stream.read(block_bytes)
        if not block:
            break
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1 :]
        body = data[:cut]
        yield _frame(body, first_line, name)
        first_line += body.count(b"\n") + 1
    if carry:
        yield _frame(carry, first_line, name)


def _frame(body: bytes, first_line: int, name: str) -> pl.DataFrame:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + body.count(b"\n", 0, err.start)
        raise InputFormatError(
            name, line, f"not valid UTF-8 ({err.reason} at byte {body[err.start : err.start + 1]!r})"
        ) from None
    if "\r" in text:  # CRLF files; a block ends just before a '\n', so its last line may end in '\r'
        text = text.replace("\r\n", "\n").removesuffix("\r")
    lines = text.split("\n")
    return pl.DataFrame(
        {
            "line": pl.int_range(first_line, first_line + len(lines), dtype=pl.UInt64, eager=True),
            "raw": pl.Series(lines, dtype=pl.String),
        }
    )


def split_fields(block: pl.DataFrame, name: str, names: list[str], sep: str = "\t") -> pl.DataFrame:
    """Split `raw` into exactly len(names) fields; any other count is an error naming the first bad line."""
    n = len(names)
    counts = block["raw"].str.count_matches(sep, literal=True)
    bad = counts != n - 1
    if bad.any():
        i = bad.arg_true()[0]
        raw = block["raw"][i]
        found = 0 if raw == "" else int(counts[i]) + 1
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise InputFormatError(
            name,
            int(block["line"][i]),
            f"expected {n} {_sep_name(sep)}-separated fields ({', '.join(names)}), found {found}: {shown!r}",
        )
    fields = block["raw"].str.split_exact(sep, n - 1).struct.rename_fields(names)
    return block.select("line", fields.alias("f")).unnest("f")


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
