"""Corpus encoding and dense search (PAPER-SPEC F): float16 embeddings per corpus shard, a faiss index per
shard (exact inner product by default), top-k per query merged over shards.

Searching shard by shard and merging the top-k is exact for a Flat index (the global top-k is inside the
union of the per-shard top-k) and keeps memory at one shard, so an 8.8M-passage corpus needs no 27 GB index.
Embeddings are stored as float16 `.npy` plus a text file of ids, one per line (never pickle).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from utilanno import tables
from utilanno.atomic import atomic_path
from utilanno.errors import InputFormatError

log = logging.getLogger(__name__)


def shard_rows(n: int, shard: int, shards: int) -> tuple[int, int]:
    """Contiguous row range [start, end) of corpus shard `shard` of `shards` (sizes differ by at most one)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    base, extra = divmod(n, shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (shard < extra)


def save_embeddings(emb: np.ndarray, ids: list[str], npy: str | Path, ids_file: str | Path) -> None:
    if emb.shape[0] != len(ids):
        raise ValueError(f"{emb.shape[0]} embeddings for {len(ids)} ids")
    with atomic_path(ids_file) as tmp:
        tmp.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, emb.astype(np.float16))


def load_embeddings(npy: str | Path, ids_file: str | Path) -> tuple[np.ndarray, list[str]]:
    try:
        emb = np.load(npy, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # cut short, or not an .npy file
        raise InputFormatError(str(npy), None, f"not a readable embeddings file ({err}); delete it") from None
    ids = Path(ids_file).read_text(encoding="utf-8").splitlines()
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise InputFormatError(
            str(npy),
            None,
            f"{emb.shape} embeddings do not match the {len(ids)} ids of {ids_file}; delete both",
        )
    return emb, ids


def _device(gpus: int) -> str:
    import torch

    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def encode_corpus(
    model_dir,
    corpus: str | Path,
    shard: int,
    shards: int,
    out_npy,
    out_ids,
    batch_size: int = 256,
    gpus: int = 0,
    max_len: int | None = None,
    passage_text: str = "sep",
    pooling: str | None = None,
) -> int:
    """Encode one shard of a corpus table (docid, title, text) with a trained retriever, `max_len` tokens
    per passage (None: the length it was trained with) in the `passage_text` style (encoder.passage_text).
    `pooling` overrides the model's own (a backbone that was never trained here)."""
    from utilanno.train.encoder import Encoder, encode, read_settings

    n = tables.scan_parquet(corpus).select(pl.len()).collect().item()
    start, end = shard_rows(n, shard, shards)
    # only this shard's rows are read: a shard job of an 8.8M corpus never holds the whole table
    part = tables.scan_parquet(corpus).select("docid", "title", "text").slice(start, end - start).collect()
    settings = read_settings(model_dir)
    device = _device(gpus)
    enc = Encoder(model_dir, pooling).to(device)
    length = enc.max_len(max_len or settings.get("passage_max_len", 140))
    texts = [enc.passage(t, x, passage_text) for t, x in zip(part["title"], part["text"], strict=True)]
    emb = encode(
        enc, texts, length, batch_size, device, desc=f"passages {shard}/{shards}", autocast_dtype=_amp(device)
    )
    save_embeddings(emb, part["docid"].to_list(), out_npy, out_ids)
    log.info(
        "%s: shard %d/%d = rows %d..%d, %d passages encoded (max length %d, text %s)",
        corpus,
        shard,
        shards,
        start,
        end,
        part.height,
        length,
        passage_text,
    )
    return part.height


def encode_queries(
    model_dir,
    queries: str | Path,
    out_npy,
    out_ids,
    batch_size: int = 256,
    gpus: int = 0,
    max_len: int | None = None,
    pooling: str | None = None,
) -> int:
    """Encode a queries table (qid, text), `max_len` tokens each (None: the length it was trained with)."""
    from utilanno.train.encoder import Encoder, encode, read_settings

    table = tables.read_parquet(queries, columns=["qid", "text"])
    device = _device(gpus)
    enc = Encoder(model_dir, pooling).to(device)
    length = enc.max_len(max_len or read_settings(model_dir).get("query_max_len", 32))
    emb = encode(
        enc, table["text"].to_list(), length, batch_size, device, desc="queries", autocast_dtype=_amp(device)
    )
    save_embeddings(emb, table["qid"].to_list(), out_npy, out_ids)
    log.info("%s: %d queries encoded (max length %d)", queries, table.height, length)
    return table.height


def _amp(device: str):
    import torch

    return torch.float16 if device == "cuda" else None


def build_index(emb: np.ndarray, factory: str = "Flat"):
    """A faiss inner-product index over float32 vectors (`Flat` is exact; others are trained on `emb`)."""
    import faiss

    index = faiss.index_factory(emb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(np.ascontiguousarray(emb, dtype=np.float32))
    for start in range(0, emb.shape[0], 65536):  # float16 -> float32 in chunks: no full float32 copy
        index.add(np.ascontiguousarray(emb[start : start + 65536], dtype=np.float32))
    return index


def search(
    shards: list[tuple[str | Path, str | Path]],
    query_npy,
    query_ids_file,
    depth: int,
    factory: str = "Flat",
    batch: int = 512,
    drop_self_hits: bool = False,
) -> pl.DataFrame:
    """Top-`depth` passages per query over every corpus shard: (qid, docid, score), scores as float32.

    `drop_self_hits` (BEIR): a passage whose id is the query's is no hit, and `depth` others remain."""
    import faiss

    from utilanno.evaluate import runfiles

    want, depth = depth, runfiles.search_depth(depth, drop_self_hits)

    # database rows per BLAS block in exact search: faiss' default (1024) is ~3x slower here than 16384
    faiss.cvar.distance_compute_blas_database_bs = 16384
    queries, qids = load_embeddings(query_npy, query_ids_file)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(qids), depth), -np.inf, dtype=np.float32)
    best_d = np.full((len(qids), depth), "", dtype=object)
    total = 0
    for npy, ids_file in shards:
        emb, ids = load_embeddings(npy, ids_file)
        total += len(ids)
        if not ids:  # more shards than passages
            continue
        index = build_index(emb, factory)
        k = min(depth, len(ids))
        ids_arr = np.asarray(ids, dtype=object)
        for start in range(0, len(qids), batch):
            s, i = index.search(q[start : start + batch], k)
            docs = np.where(i >= 0, ids_arr[np.clip(i, 0, None)], "")
            s = np.where(i >= 0, s, -np.inf).astype(np.float32)
            both_s = np.concatenate([best_s[start : start + batch], s], axis=1)
            both_d = np.concatenate([best_d[start : start + batch], docs], axis=1)
            # keep the top `depth` by (-score, docid): ties resolve the same whichever shard a passage is in
            order = np.lexsort((both_d.astype(str), -both_s), axis=1)[:, :depth]
            best_s[start : start + batch] = np.take_along_axis(both_s, order, 1)
            best_d[start : start + batch] = np.take_along_axis(both_d, order, 1)
        del index, emb, ids, ids_arr  # free this shard before the next one is loaded
    keep = np.isfinite(best_s)
    rows = np.nonzero(keep)
    table = pl.DataFrame(
        {
            "qid": np.asarray(qids, dtype=object)[rows[0]].tolist(),
            "docid": best_d[keep].tolist(),
            "score": best_s[keep],
        },
        schema={"qid": pl.String, "docid": pl.String, "score": pl.Float32},
    )
    if drop_self_hits:
        table = runfiles.cut_self_hits(table, want)
    log.info(
        "searched %d queries over %d passages in %d shards (%s): %d rows",
        len(qids),
        total,
        len(shards),
        factory,
        table.height,
    )
    return table


def dense_run(
    model,
    corpus: str | Path,
    queries: str | Path,
    depth: int,
    work: str | Path,
    pooling: str | None = None,
    batch_size: int = 256,
    gpus: int = 0,
    passage_max_len: int | None = None,
    query_max_len: int | None = None,
    passage_text: str = "sep",
    drop_self_hits: bool = False,
) -> pl.DataFrame:
    """Top-`depth` passages of the whole corpus per query with one encoder (candidate mining): the corpus and
    the queries encoded into `work` (one shard), then exact search. Returns (qid, docid, score)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    c_npy, c_ids, q_npy, q_ids = (
        work / n for n in ("corpus.npy", "corpus.ids", "queries.npy", "queries.ids")
    )
    encode_corpus(model, corpus, 0, 1, c_npy, c_ids, batch_size, gpus, passage_max_len, passage_text, pooling)
    encode_queries(model, queries, q_npy, q_ids, batch_size, gpus, query_max_len, pooling)
    return search([(c_npy, c_ids)], q_npy, q_ids, depth, drop_self_hits=drop_self_hits)
