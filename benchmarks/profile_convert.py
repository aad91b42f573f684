"""Where does convert_corpus(msmarco-tsv) spend its time? Stage timings of a copy of its per-block logic.

    .venv/bin/python benchmarks/profile_convert.py stages /tmp/bench/collection-8841823.tsv [--block-mb 32]
    .venv/bin/python benchmarks/profile_convert.py variant NAME SRC OUT    (one end-to-end variant; see VARIANTS)
    .venv/bin/python benchmarks/profile_convert.py variants SRC            (all variants, each in a fresh child)

The copy follows src/utilanno/lines.py (iter_line_blocks, _frame, split_fields, check_ids) and
src/utilanno/convert.py (_parse_msmarco_tsv, _stream_to_parquet, _duplicates) as of this benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DIGITS = r"\d+"


# ---------------------------------------------------------------------------------------------------------
# Stage timings (the current logic, single thread, no Parquet writing except where noted)


def stages(src: str, block_mb: int = 32) -> None:
    t = defaultdict(float)
    keys = []
    n = 0
    first_line = 1
    carry = b""

    def tick(name, t0):
        now = time.perf_counter()
        t[name] += now - t0
        return now

    total0 = time.perf_counter()
    with open(src, "rb") as fh:
        while True:
            t0 = time.perf_counter()
            block = fh.read(block_mb << 20)
            if not block:
                break
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            carry = data[cut + 1:]
            body = data[:cut]
            nl = body.count(b"\n")
            t0 = tick("1 read + carry + count newlines", t0)
            text = body.decode("utf-8")
            t0 = tick("2 bytes.decode utf-8", t0)
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            t0 = tick("3 '\\r' in text", t0)
            lines = text.split("\n")
            t0 = tick("4 str.split('\\n') -> list[str]", t0)
            frame = pl.DataFrame({
                "line": pl.int_range(first_line, first_line + len(lines), dtype=pl.UInt64, eager=True),
                "raw": pl.Series(lines, dtype=pl.String),
            })
            del lines, text
            t0 = tick("5 pl.Series(list[str])", t0)
            counts = frame["raw"].str.count_matches("\t", literal=True)
            bad = counts != 1
            assert not bad.any()
            t0 = tick("6 count_matches tab + check", t0)
            fields = frame["raw"].str.split_exact("\t", 1).struct.rename_fields(["docid", "text"])
            rows = frame.select("line", fields.alias("f")).unnest("f")
            t0 = tick("7 split_exact + unnest", t0)
            ok = rows["docid"].str.contains(f"^(?:{DIGITS})$")
            assert ok.all()
            t0 = tick("8 check_ids regex", t0)
            rows = rows.with_columns(title=pl.lit(""))
            keys.append(rows.select("docid", "line", h=pl.struct(["title", "text"]).hash()))
            t0 = tick("9 title + struct hash (keys)", t0)
            out = rows.select("docid", "title", "text")
            t0 = tick("10 select", t0)
            n += frame.height
            first_line += nl + 1
            del frame, rows, out, fields, counts
    t0 = time.perf_counter()
    all_keys = pl.concat(keys)
    dup = all_keys.filter(pl.col("docid").is_duplicated())
    assert dup.is_empty()
    tick("11 concat keys + is_duplicated", t0)
    total = time.perf_counter() - total0
    print(f"{n:,} lines, block {block_mb} MiB, total {total:.1f} s (no Parquet writing)")
    for k in sorted(t, key=lambda s: int(s.split()[0])):
        print(f"  {k:<40} {t[k]:7.2f} s  {100 * t[k] / total:5.1f} %")


# ---------------------------------------------------------------------------------------------------------
# Alternative frame builders


def frame_python(body: bytes, first_line: int) -> pl.DataFrame:
    """Current lines._frame (without the error path)."""
    text = body.decode("utf-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    return pl.DataFrame({
        "line": pl.int_range(first_line, first_line + len(lines), dtype=pl.UInt64, eager=True),
        "raw": pl.Series(lines, dtype=pl.String),
    })


def frame_polars(body: bytes, first_line: int) -> pl.DataFrame:
    """UTF-8 check and line split in Rust: one Binary value -> String (strict cast validates) -> split -> explode.

    On a cast error, the real code would fall back to body.decode() to name the line (error path only)."""
    raw = pl.Series("raw", [body], dtype=pl.Binary).cast(pl.String).str.split("\n").explode()
    if raw.str.contains("\r", literal=True).any():
        raw = raw.str.strip_suffix("\r")  # same effect as replace("\r\n", "\n") on lines split at "\n"
    return pl.DataFrame({
        "line": pl.int_range(first_line, first_line + raw.len(), dtype=pl.UInt64, eager=True),
        "raw": raw,
    })


def iter_blocks(src, frame, block_bytes):
    first_line, carry = 1, b""
    with open(src, "rb") as fh:
        while True:
            block = fh.read(block_bytes)
            if not block:
                break
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            body = data[:cut]
            yield frame(body, first_line)
            first_line += body.count(b"\n") + 1
    if carry:
        yield frame(carry, first_line)


def iter_blocks_nocopy(src, frame, block_bytes):
    """Like iter_blocks, but reads into one reused buffer (no `carry + block`, no `data[:cut]` copies of fresh
    32 MiB bytes objects, no separate newline count: the frame's height gives the next line number)."""
    buf = bytearray(block_bytes)
    mv = memoryview(buf)
    filled, first_line = 0, 1
    with open(src, "rb", buffering=0) as fh:
        while True:
            if filled == len(buf):  # a line longer than the buffer: grow it
                mv.release()
                buf.extend(bytes(len(buf)))
                mv = memoryview(buf)
            n = fh.readinto(mv[filled:])
            if not n:
                break
            end = filled + n
            cut = buf.rfind(b"\n", 0, end)
            if cut < 0:
                filled = end
                continue
            frame_ = frame(mv[:cut], first_line)
            first_line += frame_.height
            yield frame_
            rest = end - cut - 1
            buf[:rest] = mv[cut + 1:end]
            filled = rest
    if filled:
        yield frame(mv[:filled], first_line)


def frame_polars_mv(body, first_line: int) -> pl.DataFrame:
    raw = pl.Series("raw", [bytes(body)], dtype=pl.Binary).cast(pl.String).str.split("\n").explode()
    if raw.str.contains("\r", literal=True).any():
        raw = raw.str.strip_suffix("\r")
    return pl.DataFrame({
        "line": pl.int_range(first_line, first_line + raw.len(), dtype=pl.UInt64, eager=True),
        "raw": raw,
    })


def run_fast(src, out, compression="zstd", compression_level=None, block_mb=32):
    """nocopy reader + Rust split + lean parse + ids-only keys + integer duplicate check."""
    from polars.io.plugins import register_io_source

    keys = []

    def blocks(with_columns=None, predicate=None, n_rows=None, batch_size=None):
        for block in iter_blocks_nocopy(src, frame_polars_mv, block_mb << 20):
            rows = parse_lean(block)
            keys.append(rows.select("docid", "line"))
            yield rows.select(list(SCHEMA))

    register_io_source(blocks, schema=SCHEMA).sink_parquet(out, compression=compression,
                                                             compression_level=compression_level)
    ids = pl.concat(keys)["docid"]
    # Digit ids without leading zeros (and < 20 digits) map 1:1 to u64, so an integer check is exact;
    # the full string-based _duplicates() would run only when this finds a duplicate (or ids are odd).
    plain = ((ids.str.len_bytes() < 20) & ~(ids.str.starts_with("0") & (ids.str.len_bytes() > 1))).all()
    assert plain and ids.cast(pl.UInt64).n_unique() == ids.len()
    return ids.len()


def parse_current(block: pl.DataFrame) -> pl.DataFrame:
    counts = block["raw"].str.count_matches("\t", literal=True)
    if (counts != 1).any():
        raise ValueError("field count")
    fields = block["raw"].str.split_exact("\t", 1).struct.rename_fields(["docid", "text"])
    rows = block.select("line", fields.alias("f")).unnest("f")
    if not rows["docid"].str.contains(f"^(?:{DIGITS})$").all():
        raise ValueError("id")
    return rows.with_columns(title=pl.lit(""))


def parse_lean(block: pl.DataFrame) -> pl.DataFrame:
    """Same checks in one select: tab count via str.find of the first tab + count, id check without regex."""
    out = block.select(
        "line",
        n_tabs=pl.col("raw").str.count_matches("\t", literal=True),
        docid=pl.col("raw").str.split_exact("\t", 1).struct.field("field_0"),
        text=pl.col("raw").str.split_exact("\t", 1).struct.field("field_1"),
    )
    if (out["n_tabs"] != 1).any():
        raise ValueError("field count")
    if not out["docid"].str.contains(r"^\d+$").all():
        raise ValueError("id")
    return out.select("line", "docid", title=pl.lit(""), text="text")


SCHEMA = {"docid": pl.String, "title": pl.String, "text": pl.String}


def run_stream(src, out, frame=frame_python, parse=parse_current, block_mb=32, compression="zstd",
               key_hash="struct", lazy_hash=False):
    from polars.io.plugins import register_io_source

    keys = []

    def blocks(with_columns=None, predicate=None, n_rows=None, batch_size=None):
        for block in iter_blocks(src, frame, block_mb << 20):
            rows = parse(block)
            if key_hash == "struct":
                keys.append(rows.select("docid", "line", h=pl.struct(["title", "text"]).hash()))
            elif key_hash == "text":
                keys.append(rows.select("docid", "line", h=pl.col("text").hash()))
            else:  # ids only; content hashed later only for the (rare) duplicated ids
                keys.append(rows.select("docid", "line"))
            yield rows.select(list(SCHEMA))

    register_io_source(blocks, schema=SCHEMA).sink_parquet(out, compression=compression)
    all_keys = pl.concat(keys)
    assert not all_keys["docid"].is_duplicated().any()
    return all_keys.height


def run_scan_csv(src, out, compression="zstd"):
    """Upper bound: polars' own streaming CSV reader (no per-line Python), same checks as lazy expressions.

    Errors would be located by re-running the block reader (slow path) only when this fails."""
    lf = pl.scan_csv(src, separator="\t", has_header=False, quote_char=None, schema={"docid": pl.String, "text": pl.String},
                     raise_if_empty=False)
    lf.select("docid", title=pl.lit(""), text="text").sink_parquet(out, compression=compression)
    ids = pl.scan_parquet(out).select(
        n=pl.len(), bad_id=(~pl.col("docid").str.contains(r"^\d+$")).sum(), null_text=pl.col("text").is_null().sum(),
        dup=pl.col("docid").is_duplicated().sum(),
    ).collect()
    assert ids["bad_id"][0] == 0 and ids["null_text"][0] == 0 and ids["dup"][0] == 0, ids
    return ids["n"][0]


def run_ours(src, out):
    from utilanno.convert import convert_corpus

    return convert_corpus(src, None, "msmarco-tsv", out).rows_out


def run_pandas(src, out):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from convert_collection import impl_pandas

    return impl_pandas(Path(src), Path(out))["rows"]


VARIANTS = {
    "pandas": lambda s, o: run_pandas(s, o),
    "ours": lambda s, o: run_ours(s, o),
    "copy": lambda s, o: run_stream(s, o),
    "copy-block8": lambda s, o: run_stream(s, o, block_mb=8),
    "copy-block128": lambda s, o: run_stream(s, o, block_mb=128),
    "copy-lz4": lambda s, o: run_stream(s, o, compression="lz4"),
    "copy-snappy": lambda s, o: run_stream(s, o, compression="snappy"),
    "copy-uncompressed": lambda s, o: run_stream(s, o, compression="uncompressed"),
    "rustsplit": lambda s, o: run_stream(s, o, frame=frame_polars),
    "rustsplit-lean": lambda s, o: run_stream(s, o, frame=frame_polars, parse=parse_lean),
    "rustsplit-lean-texthash": lambda s, o: run_stream(s, o, frame=frame_polars, parse=parse_lean, key_hash="text"),
    "rustsplit-lean-idsonly": lambda s, o: run_stream(s, o, frame=frame_polars, parse=parse_lean, key_hash="none"),
    "rustsplit-lean-idsonly-lz4": lambda s, o: run_stream(s, o, frame=frame_polars, parse=parse_lean, key_hash="none",
                                                          compression="lz4"),
    "fast-zstd": lambda s, o: run_fast(s, o),
    "fast-zstd1": lambda s, o: run_fast(s, o, compression_level=1),
    "fast-lz4": lambda s, o: run_fast(s, o, compression="lz4"),
    "fast-snappy": lambda s, o: run_fast(s, o, compression="snappy"),
    "fast-uncompressed": lambda s, o: run_fast(s, o, compression="uncompressed"),
    "scan_csv": lambda s, o: run_scan_csv(s, o),
    "scan_csv-snappy": lambda s, o: run_scan_csv(s, o, compression="snappy"),
    "scan_csv-lz4": lambda s, o: run_scan_csv(s, o, compression="lz4"),
}


def variant(name, src, out):
    t0 = time.perf_counter()
    n = VARIANTS[name](src, out)
    print("RESULT " + json.dumps({"rows": n, "convert_s": time.perf_counter() - t0}), flush=True)


def variants(src, names, workdir):
    os.sync()
    print("| variant | convert s | wall s | CPU s | peak RSS MiB | output MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        out = Path(workdir) / f"variant-{name}.parquet"
        os.sync()  # do not let the previous output's writeback run into this one
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, __file__, "variant", name, src, str(out)], stdout=subprocess.PIPE, text=True)
        stdout = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            print(f"| {name} | FAILED ({p.returncode}) |||||", flush=True)
            continue
        r = json.loads(next(l for l in stdout.splitlines() if l.startswith("RESULT "))[7:])
        print(f"| {name} | {r['convert_s']:.1f} | {wall:.1f} | {ru.ru_utime + ru.ru_stime:.1f} | {ru.ru_maxrss / 1024:,.0f} "
              f"| {out.stat().st_size / 2**20:,.0f} |", flush=True)
        out.unlink()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "stages":
        stages(sys.argv[2], int(sys.argv[4]) if len(sys.argv) > 4 else 32)
    elif cmd == "variant":
        variant(*sys.argv[2:5])
    elif cmd == "variants":
        names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(VARIANTS)
        variants(sys.argv[2], names, Path(sys.argv[2]).parent)
