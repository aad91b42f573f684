"""Benchmark utilanno.data.convert.convert_corpus (msmarco-tsv -> Parquet) against a plain pandas conversion.

    .venv/bin/python benchmarks/convert_collection.py --passages 8841823 --workdir /tmp/bench

1. Generates (and caches in --workdir) a synthetic MS MARCO-like collection.tsv: ids 0..N-1, passages of
   ~56 words / ~330 characters on average, drawn from a Zipf vocabulary with some non-ASCII words and quotes.
2. Runs each implementation in its own fresh subprocess; wall time, CPU time and peak RSS come from
   os.wait4 (per-child rusage), the conversion time alone is measured inside the child.
3. Checks that both outputs hold the same rows (every column compared in full, via polars).
4. Prints a table and appends a dated entry to benchmarks/convert_collection.md.

Targets: ours >= 3x faster than pandas, ours peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE / "convert_collection.md"
TARGET_SPEEDUP = 3.0
TARGET_RSS_GB = 2.0

HEADER = """# Benchmark: MS MARCO collection.tsv -> corpus.parquet

`utilanno.data.convert.convert_corpus(path, None, "msmarco-tsv", out)` (streamed in blocks, with validation of field
count, digit ids, UTF-8 and duplicate ids) against a straightforward pandas conversion
(`pd.read_csv(sep="\\t", quoting=QUOTE_NONE, dtype=str)` + `title=""` + `docid.duplicated().any()` +
`to_parquet` via pyarrow), on a synthetic collection of MS MARCO size (8,841,823 passages, ~56 words /
~330 characters each). Each implementation runs in its own fresh subprocess; peak RSS is the child's
`ru_maxrss`. Produced by `benchmarks/convert_collection.py`.

Targets: **ours >= 3x faster than pandas** and **ours peak RSS < 2 GB**.
"""


# ---------------------------------------------------------------------------------------------------------
# Synthetic data


def _vocabulary(rng, size: int = 200_000) -> list[bytes]:
    import numpy as np

    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    # English-like letter frequencies, roughly.
    freq = np.array(
        [
            8.2,
            1.5,
            2.8,
            4.3,
            12.7,
            2.2,
            2.0,
            6.1,
            7.0,
            0.2,
            0.8,
            4.0,
            2.4,
            6.7,
            7.5,
            1.9,
            0.1,
            6.0,
            6.3,
            9.1,
            2.8,
            1.0,
            2.4,
            0.2,
            2.0,
            0.1,
        ]
    )
    lengths = np.clip(rng.poisson(5.5, size) + 1, 1, 18)
    chars = rng.choice(letters, size=int(lengths.sum()), p=freq / freq.sum()).tobytes()
    ends = np.cumsum(lengths)
    words = [chars[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist(), strict=True)]
    # The most frequent words are short function words, as in English.
    common = [
        b"the",
        b"of",
        b"and",
        b"to",
        b"a",
        b"in",
        b"is",
        b"for",
        b"that",
        b"it",
        b"on",
        b"as",
        b"with",
        b"are",
        b"by",
        b"be",
        b"or",
        b"from",
        b"was",
        b"this",
        b"an",
        b"can",
        b"at",
        b"your",
        b"you",
    ]
    words[: len(common)] = common
    # Decoration: capitals, punctuation, numbers, quotes and some non-ASCII (MS MARCO has all of these).
    deco = rng.random(size)
    for i in range(len(common), size):
        w, d = words[i], deco[i]
        if d < 0.08:
            words[i] = w.capitalize()
        elif d < 0.12:
            words[i] = w + b","
        elif d < 0.15:
            words[i] = w + b"."
        elif d < 0.17:
            words[i] = str(int(rng.integers(0, 10_000))).encode()
        elif d < 0.18:
            words[i] = b'"' + w + b'"'
        elif d < 0.19:
            words[i] = w[:2] + "é".encode() + w[2:]
        elif d < 0.195:
            words[i] = w + "’s".encode()
        elif d < 0.197:
            words[i] = "–".encode()
        elif d < 0.198:
            words[i] = "°C".encode()
    return words


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Write n passages `i<TAB>text` (i = 0..n-1) to path, ~330 chars / ~56 words each on average."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    # A pool of Zipf-distributed words; passages are word-aligned random windows into it.
    pool_words = 16_000_000
    ranks = (rng.zipf(1.15, pool_words) - 1) % len(vocab)  # fold the long tail back, not onto one word
    pool = b" ".join([vocab[r] for r in ranks.tolist()]) + b" "
    word_len = np.fromiter((len(vocab[r]) + 1 for r in ranks.tolist()), dtype=np.int64, count=pool_words)
    word_off = np.concatenate([[0], np.cumsum(word_len)])
    del ranks, word_len
    tmp = path.with_suffix(".partial")
    chunk = 1_000_000
    with open(tmp, "wb") as fh:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            m = hi - lo
            nwords = np.clip(np.rint(rng.gamma(5.0, 56 / 5.0, m)), 3, 230).astype(np.int64)
            first = rng.integers(0, pool_words - 240, m)
            starts = word_off[first]
            ends = word_off[first + nwords] - 1  # drop the trailing space
            fh.write(
                b"".join(
                    [
                        b"%d\t%b\n" % (i, pool[s:e])
                        for i, s, e in zip(range(lo, hi), starts.tolist(), ends.tolist(), strict=True)
                    ]
                )
            )
    tmp.replace(path)


def ensure_collection(workdir: Path, n: int) -> tuple[Path, float]:
    path = workdir / f"collection-{n}.tsv"
    if path.exists():
        return path, 0.0
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # In a child: on Linux a child's ru_maxrss starts from its parent's high-water mark at fork time, so the
    # parent must stay small for the per-implementation peaks to mean anything.
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--generate", str(path), str(n)], check=True
    )
    os.sync()
    return path, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------
# Implementations (each run in a fresh child process)


def impl_ours(src: Path, out: Path) -> dict:
    from utilanno.data.convert import convert_corpus

    counts = convert_corpus(src, None, "msmarco-tsv", out)
    return {"rows": counts.rows_out, "lines_in": counts.lines_in}


def impl_pandas(src: Path, out: Path) -> dict:
    import csv

    import pandas as pd

    df = pd.read_csv(
        src,
        sep="\t",
        header=None,
        names=["docid", "text"],
        quoting=csv.QUOTE_NONE,
        dtype=str,
        keep_default_na=False,
    )
    if df.docid.duplicated().any():
        raise ValueError("duplicate docids")
    df["title"] = ""
    df = df[["docid", "title", "text"]]
    df.to_parquet(out, engine="pyarrow")
    return {"rows": len(df)}


IMPLS = {"ours": impl_ours, "pandas": impl_pandas}


def child_main(impl: str, src: str, out: str) -> None:
    t0 = time.perf_counter()
    info = IMPLS[impl](Path(src), Path(out))
    info["convert_s"] = time.perf_counter() - t0
    print("RESULT " + json.dumps(info), flush=True)


def run_child(impl: str, src: Path, out: Path) -> dict:
    if out.exists():
        out.unlink()
    _warm_cache(src)
    os.sync()  # flush earlier outputs now rather than during this run
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", impl, str(src), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampled = _poll_rss(proc.pid)
    stdout = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    sampled["stop"] = True
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} failed with exit code {proc.returncode}:\n{stdout}")
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    info = json.loads(line[len("RESULT ") :])
    info.update(
        impl=impl,
        wall_s=wall,
        cpu_s=ru.ru_utime + ru.ru_stime,
        peak_rss_mb=ru.ru_maxrss / 1024,
        sampled_rss_mb=sampled["peak"] / 2**20,
        out_mb=out.stat().st_size / 2**20,
    )
    return info


def _poll_rss(pid: int) -> dict:
    """Cross-check of ru_maxrss: sample the child's RSS every 20 ms in a thread."""
    import threading

    import psutil

    state = {"peak": 0, "stop": False}

    def loop():
        try:
            p = psutil.Process(pid)
            while not state["stop"]:
                state["peak"] = max(state["peak"], p.memory_info().rss)
                time.sleep(0.02)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass

    threading.Thread(target=loop, daemon=True).start()
    return state


def _warm_cache(src: Path) -> None:
    """Read the input once so both implementations start with it in the page cache."""
    with open(src, "rb", buffering=0) as fh:
        while fh.read(64 << 20):
            pass


def verify(ours: Path, theirs: Path) -> str:
    """Compare both outputs column by column (in a child, so the parent stays small)."""
    code = f"""
import polars as pl
a, b = {str(ours)!r}, {str(theirs)!r}
na, nb = pl.scan_parquet(a).select(pl.len()).collect().item(), pl.scan_parquet(b).select(pl.len()).collect().item()
assert na == nb, f"row counts differ: ours {{na}}, pandas {{nb}}"
for col in ["docid", "title", "text"]:
    ca, cb = pl.read_parquet(a, columns=[col])[col], pl.read_parquet(b, columns=[col])[col]
    assert ca.dtype == cb.dtype == pl.String, (col, ca.dtype, cb.dtype)
    if not ca.equals(cb):
        i = (ca != cb).arg_true()[0]
        raise AssertionError(f"column {{col}} differs first at row {{i}}: {{ca[i]!r}} vs {{cb[i]!r}}")
print(f"identical: {{na}} rows, docid/title/text compared in full")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("verification FAILED:\n" + res.stderr[-3000:])
    return res.stdout.strip()


# ---------------------------------------------------------------------------------------------------------


def machine() -> str:
    import psutil

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {os.cpu_count()}, RAM {psutil.virtual_memory().total / 2**30:.1f} GiB, {cpu or platform.machine()}"


def versions() -> str:
    import numpy
    import pandas
    import polars
    import pyarrow

    return (
        f"python {platform.python_version()}, polars {polars.__version__}, pandas {pandas.__version__}, "
        f"pyarrow {pyarrow.__version__}, numpy {numpy.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--passages", type=int, default=8_841_823, help="number of passages (default: MS MARCO size)"
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench"), help="where data and outputs go")
    ap.add_argument("--impl", choices=list(IMPLS), action="append", help="run only these (default: all)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per implementation, order alternating (default 3)"
    )
    ap.add_argument(
        "--no-report", action="store_true", help="do not append to benchmarks/convert_collection.md"
    )
    ap.add_argument("--child", nargs=3, metavar=("IMPL", "SRC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--generate", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]))
        return
    if args.child:
        child_main(*args.child)
        return

    impls = args.impl or list(IMPLS)
    src, gen_s = ensure_collection(args.workdir, args.passages)
    size_mb = src.stat().st_size / 2**20
    print(
        f"input: {src} ({args.passages:,} passages, {size_mb:,.0f} MiB, "
        f"{size_mb * 2**20 / args.passages:.0f} bytes/line)"
        + (f", generated in {gen_s:.1f} s" if gen_s else ", cached")
    )
    load0 = os.getloadavg()
    runs: dict[str, list[dict]] = {i: [] for i in impls}
    for rep in range(args.repeat):
        # Alternate the order so both see the same share of any background load (shared machine).
        for impl in impls if rep % 2 == 0 else impls[::-1]:
            print(f"[{rep + 1}/{args.repeat}] running {impl} ...", flush=True)
            r = run_child(impl, src, args.workdir / f"out-{impl}.parquet")
            runs[impl].append(r)
            print(
                f"  {impl}: {r['wall_s']:.1f} s wall, {r['convert_s']:.1f} s convert, {r['cpu_s']:.1f} s CPU, "
                f"{r['peak_rss_mb']:,.0f} MiB peak RSS",
                flush=True,
            )
    load1 = os.getloadavg()

    check = ""
    if {"ours", "pandas"} <= runs.keys():
        check = verify(args.workdir / "out-ours.parquet", args.workdir / "out-pandas.parquet")
        print(check)

    # Per implementation: best and median wall time (best is the least disturbed by other work on the
    # machine), CPU time and peak RSS of the best run, worst peak RSS over all runs.
    results = {}
    for impl, rs in runs.items():
        best = min(rs, key=lambda r: r["wall_s"])
        results[impl] = dict(
            best,
            wall_med=statistics.median(r["wall_s"] for r in rs),
            cpu_med=statistics.median(r["cpu_s"] for r in rs),
            rss_max=max(r["peak_rss_mb"] for r in rs),
            walls=", ".join(f"{r['wall_s']:.1f}" for r in rs),
        )
    rows = [
        "| impl | best wall s | median wall s | all walls s | convert s (best) | median CPU s | peak RSS MiB "
        "(max of runs) | sampled RSS MiB | output MiB | rows |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        rows.append(
            f"| {r['impl']} | {r['wall_s']:.1f} | {r['wall_med']:.1f} | {r['walls']} | {r['convert_s']:.1f} | "
            f"{r['cpu_med']:.1f} | {r['rss_max']:,.0f} | {r['sampled_rss_mb']:,.0f} | {r['out_mb']:,.0f} | "
            f"{r['rows']:,} |"
        )
    verdict = []
    if {"ours", "pandas"} <= results.keys():
        o, p = results["ours"], results["pandas"]
        speed = p["wall_s"] / o["wall_s"]
        verdict.append(
            f"speed-up pandas/ours, best wall: **{speed:.2f}x** (median wall {p['wall_med'] / o['wall_med']:.2f}x, "
            f"median CPU {p['cpu_med'] / o['cpu_med']:.2f}x) — target >= {TARGET_SPEEDUP:.0f}x: "
            f"{'MET' if speed >= TARGET_SPEEDUP else 'NOT MET'}"
        )
        verdict.append(f"peak RSS pandas/ours: {p['rss_max'] / o['rss_max']:.2f}x")
    if "ours" in results:
        gb = results["ours"]["rss_max"] / 1024
        verdict.append(
            f"ours peak RSS {gb:.2f} GiB — target < {TARGET_RSS_GB:.0f} GB: "
            f"{'MET' if gb * 2**30 < TARGET_RSS_GB * 1e9 else 'NOT MET'}"
        )
    verdict.append(
        f"load average (1 min) before/after: {load0[0]:.1f} / {load1[0]:.1f} "
        f"(other work on the machine inflates wall times)"
    )
    table = "\n".join(rows)
    print()
    print(table)
    for v in verdict:
        print(v)

    if not args.no_report:
        cmd = " ".join(
            [
                ".venv/bin/python",
                "benchmarks/convert_collection.py",
                "--passages",
                str(args.passages),
                "--workdir",
                str(args.workdir),
                "--repeat",
                str(args.repeat),
            ]
            + [f"--impl {i}" for i in (args.impl or [])]
        )
        entry = [
            f"\n## {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n",
            f"- command: `{cmd}`",
            f"- machine: {machine()}",
            f"- versions: {versions()}",
            f"- input: {args.passages:,} passages, {size_mb:,.0f} MiB",
            f"- check: {check or 'not run'}",
            "",
            table,
            "",
        ] + [f"- {v}" for v in verdict]
        if not REPORT.exists():
            REPORT.write_text(HEADER)
        with open(REPORT, "a") as fh:
            fh.write("\n".join(entry) + "\n")
        print(f"\nappended to {REPORT}")


if __name__ == "__main__":
    main()
