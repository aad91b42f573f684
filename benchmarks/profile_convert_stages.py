"""Full-file passes without Parquet writing: current vs proposed block reader / frame / parse.

    .venv/bin/python benchmarks/profile_convert_stages.py /tmp/bench/collection-8841823.tsv
"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import polars as pl
import profile_convert as p

src = sys.argv[1]
def timed(name, it):
    t = time.perf_counter(); n = 0
    for f in it:
        n += f.height
    print(f"{name:<60} {time.perf_counter() - t:6.1f} s  ({n:,} rows)", flush=True)

timed("current: iter_line_blocks + _frame (decode, str.split, Series)", p.iter_blocks(src, p.frame_python, 32 << 20))
timed("readinto reuse buffer + Rust split (Binary->String, split, explode)", p.iter_blocks_nocopy(src, p.frame_polars_mv, 32 << 20))
timed("  + parse_current (split_fields + check_ids + title)", (p.parse_current(b) for b in p.iter_blocks_nocopy(src, p.frame_polars_mv, 32 << 20)))
timed("  + parse_lean", (p.parse_lean(b) for b in p.iter_blocks_nocopy(src, p.frame_polars_mv, 32 << 20)))
timed("current reader (carry+block, data[:cut], count) + Rust split", p.iter_blocks(src, p.frame_polars, 32 << 20))
timed("readinto reuse buffer only (no frame)", p.iter_blocks_nocopy(src, lambda b, l: type("F", (), {"height": b.nbytes // 10**9})(), 32 << 20))
