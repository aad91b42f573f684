"""Stream the elements of one large top-level JSON array (DPR's biencoder files: a single array of several GB,
indented or not), one element at a time, with the 1-based line each element starts on.

The standard library decodes each element (`json.JSONDecoder.raw_decode`, the C scanner); only the array's
framing (`[`, `,`, `]` and whitespace between elements) is read here. Memory holds one buffer of text plus the
element being decoded, whatever the file size. Every malformed input is an `InputFormatError` naming the file
and line: invalid JSON inside an element, a missing comma, a trailing comma, a truncated array, data after it.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from utilanno.errors import InputFormatError

CHUNK_BYTES = 4 << 20
# An element still undecodable with this much text after its start is reported as invalid, not read further.
MAX_ELEMENT_CHARS = 64 << 20
_WHITESPACE = " \t\n\r"
_MARGIN = 16  # a token cut by the end of the buffer stops the scanner within this many characters of it


class _Reader:
    """A text buffer over a binary stream: decodes UTF-8 chunk by chunk, drops what was consumed, and keeps
    the line number of a moving mark so that any later position's line is found by counting forward."""

    def __init__(self, stream: BinaryIO, name: str, chunk_bytes: int):
        self.stream, self.name, self.chunk_bytes = stream, name, chunk_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.eof = "", 0, False
        self.mark, self.mark_line = 0, 1  # buf[mark] is on line mark_line
        self.bytes_newlines = 0  # newlines in the bytes read before the current chunk (for decode errors)

    def line_at(self, pos: int) -> int:
        """The line of buf[pos]; positions asked for never go back before the last one asked for."""
        self.mark_line += self.buf.count("\n", self.mark, pos)
        self.mark = pos
        return self.mark_line

    def fill(self) -> bool:
        """Read one more chunk (dropping the consumed text first); False at the end of the file."""
        if self.eof:
            return False
        raw = self.stream.read(self.chunk_bytes)
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            line = 1 + self.bytes_newlines + raw.count(b"\n", 0, err.start)
            bad = raw[err.start : err.start + 1]
            raise InputFormatError(
                self.name, line, f"not valid UTF-8 ({err.reason} at byte {bad!r})"
            ) from None
        self.bytes_newlines += raw.count(b"\n")
        if not raw:  # positions in the buffer stay valid: nothing is dropped at the end of the file
            self.eof = True
            return False
        if self.pos:
            self.line_at(self.pos)
            self.buf, self.mark, self.pos = self.buf[self.pos :], self.mark - self.pos, 0
        self.buf += text
        return True

    def peek(self) -> str:
        """The next character that is not whitespace (consumed whitespace is skipped), or '' at the end."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def fail(self, reason: str, pos: int | None = None):
        raise InputFormatError(self.name, self.line_at(self.pos if pos is None else pos), reason)


def iter_json_array(stream: BinaryIO, name: str, chunk_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) for each element of the JSON array that is the whole of `stream`.

    An empty (or whitespace-only) stream yields nothing; the caller decides whether that is an error.
    """
    r = _Reader(stream, name, chunk_bytes or CHUNK_BYTES)
    decoder = json.JSONDecoder()
    first = r.peek()
    if first == "":
        return
    if first != "[":
        r.fail(f"expected a JSON array ('['), found {first!r}")
    r.pos += 1
    if r.peek() == "]":
        r.pos += 1
    else:
        while True:
            if r.peek() == "":
                r.fail("unexpected end of file inside the JSON array (truncated?)")
            start = r.pos
            while True:
                try:
                    element, end = decoder.raw_decode(r.buf, start)
                except json.JSONDecodeError as err:
                    if _maybe_cut(err, len(r.buf)) and len(r.buf) - start < MAX_ELEMENT_CHARS and r.fill():
                        start = r.pos
                        continue
                    cut = (
                        " (the file ends inside this element: truncated?)"
                        if r.eof and _maybe_cut(err, len(r.buf))
                        else ""
                    )
                    r.fail(f"invalid JSON: {err.msg}{cut}", err.pos)
                if end + _MARGIN < len(r.buf) or not r.fill():  # a number may go on in the next chunk
                    break
                start = r.pos
            yield r.line_at(start), element
            r.pos = end
            sep = r.peek()
            if sep == ",":
                comma_line = r.line_at(r.pos)
                r.pos += 1
                if r.peek() == "]":
                    raise InputFormatError(name, comma_line, "trailing comma before ']'")
                continue
            if sep == "]":
                r.pos += 1
                break
            if sep == "":
                r.fail("unexpected end of file: the JSON array is not closed (truncated?)")
            r.fail(f"expected ',' or ']' after an array element, found {sep!r}")
    if r.peek() != "":
        r.fail(f"unexpected data after the JSON array: {r.buf[r.pos : r.pos + 20]!r}")


def _maybe_cut(err: json.JSONDecodeError, buffered: int) -> bool:
    """Whether a decode error may only mean that the buffer ends inside the element: the scanner stopped
    within the last few characters (a cut token or escape) or in a string still open at the end."""
    return err.pos >= buffered - _MARGIN or err.msg.startswith("Unterminated string")
