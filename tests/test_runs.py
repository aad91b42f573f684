"""TREC run files: stable tie-break, exact scores, round trip, errors naming the line (DESIGN: formats)."""

from __future__ import annotations

import gzip

import numpy as np
import polars as pl
import pytest

from utilanno.errors import InputFormatError
from utilanno.evaluate import runfiles as runs


def table(rows: list[tuple[str, str, float]], dtype=pl.Float32) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"qid": pl.String, "docid": pl.String, "score": dtype}, orient="row")


def test_ties_break_by_docid_and_depth_cuts_per_query(tmp_path):
    rows = table([("q2", "b", 1.0), ("q1", "z", 0.5), ("q1", "c", 2.0), ("q1", "a", 0.5), ("q2", "a", 1.0)])
    out = tmp_path / "run.trec"
    assert runs.write_run(out, rows, "dense", depth=2) == 4
    assert out.read_text() == (
        "q1 Q0 c 1 2.0 dense\nq1 Q0 a 2 0.5 dense\nq2 Q0 a 1 1.0 dense\nq2 Q0 b 2 1.0 dense\n"
    )


def test_shuffled_input_gives_a_byte_identical_file(tmp_path):
    rng = np.random.default_rng(3)
    n = 500
    rows = pl.DataFrame(
        {
            "qid": [f"q{i % 7}" for i in range(n)],
            "docid": [f"d{i}" for i in range(n)],
            "score": rng.integers(0, 4, n).astype(np.float16),  # many ties
        }
    )
    runs.write_run(tmp_path / "a.trec", rows, "t", depth=30)
    for seed in range(5):
        runs.write_run(tmp_path / "b.trec", rows.sample(fraction=1.0, shuffle=True, seed=seed), "t", depth=30)
        assert (tmp_path / "b.trec").read_bytes() == (tmp_path / "a.trec").read_bytes()


def test_round_trip_keeps_float32_scores_ties_and_order(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(300).astype(np.float32)
    near = np.nextafter(base[:50], np.float32(np.inf), dtype=np.float32)  # neighbours must stay distinct
    scores = np.concatenate([base, near, base[:40]])  # and repeated values stay tied
    n = len(scores)
    rows = pl.DataFrame(
        {"qid": [f"q{i % 3}" for i in range(n)], "docid": [f"d{i:04d}" for i in range(n)], "score": scores}
    )
    out = tmp_path / "run.trec"
    runs.write_run(out, rows, "t")
    back = runs.read_run(out)
    expected = runs.rank(rows)
    assert back.columns == ["qid", "docid", "rank", "score"] and back.schema["score"] == pl.Float64
    assert back.select("qid", "docid", "rank").equals(expected.select("qid", "docid", "rank"))
    assert (back["score"].cast(pl.Float32) == expected["score"]).all()
    assert runs.rank(back).select("qid", "docid", "rank").equals(expected.select("qid", "docid", "rank"))
    assert back["score"].n_unique() == rows["score"].n_unique()


def test_float64_scores_round_trip_exactly(tmp_path):
    rows = table([("q", "a", 1 / 3), ("q", "b", 1 / 3 + 2**-52 / 3), ("q", "c", 1e-300)], dtype=pl.Float64)
    runs.write_run(tmp_path / "r.trec", rows, "t")
    back = runs.read_run(tmp_path / "r.trec")
    assert back.sort("docid")["score"].to_list() == rows["score"].to_list()


def test_any_whitespace_reads_like_single_spaces(tmp_path):
    rows = table([("q1", "a", 2.5), ("q1", "b", 1.0), ("q2", "c", -1.0)])
    runs.write_run(tmp_path / "clean.trec", rows, "t")
    text = (tmp_path / "clean.trec").read_text()
    (tmp_path / "messy.trec").write_text(text.replace(" Q0 ", "\tQ0  ").replace("\n", " \r\n"))
    assert runs.read_run(tmp_path / "messy.trec").equals(runs.read_run(tmp_path / "clean.trec"))


def test_read_gzipped_and_empty_runs(tmp_path):
    with gzip.open(tmp_path / "r.trec.gz", "wt") as fh:
        fh.write("1\tQ0\t7\t1\t-3.5\tbm25\n1 Q0 8 0 1e-3 bm25\n")
    back = runs.read_run(tmp_path / "r.trec.gz")
    assert back.rows() == [("1", "7", 1, -3.5), ("1", "8", 0, 0.001)]
    (tmp_path / "empty.trec").write_text("")
    assert runs.read_run(tmp_path / "empty.trec").is_empty()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("q Q0 d 1 1.0 t\nq Q0 e 2 0.5\n", 2, "expected 6 whitespace-separated fields"),
        ("q Q0 d 1 1.0 t\n\nq Q0 e 2 0.5 t\n", 2, "found 0"),
        ("q Q0 d 1 1.0 t\nq Q0 e two 0.5 t\n", 2, "bad rank 'two'"),
        ("q Q0 d 1 1.0 t\nq Q0 e 2.5 0.5 t\n", 2, "bad rank '2.5'"),
        ("q Q0 d 1 high t\n", 1, "bad score 'high': expected a finite number"),
        ("q Q0 d 1 nan t\n", 1, "bad score 'nan'"),
        ("q Q0 d 1 1.0 t\nr Q0 d 1 1.0 t\nq Q0 d 2 0.5 t\n", 3, "lists doc 'd' again (first at line 1)"),
    ],
)
@pytest.mark.parametrize("sep", [" ", "\t"])  # the fast single-space path and the line-by-line path
def test_malformed_lines_are_named(tmp_path, text, line, fragment, sep):
    path = tmp_path / "bad.trec"
    path.write_text(text.replace(" ", sep))
    with pytest.raises(InputFormatError) as err:
        runs.read_run(path)
    assert err.value.line == line and fragment in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    ("rows", "tag", "fragment"),
    [
        (table([("q 1", "d", 1.0)]), "t", "bad qid 'q 1'"),
        (table([("q", "", 1.0)]), "t", "bad docid ''"),
        (table([("q", "d", float("nan"))]), "t", "not a finite number"),
        (table([("q", "d", 1.0), ("q", "d", 2.0)]), "t", "lists doc 'd' more than once"),
        (table([("q", "d", 1.0)]), "my run", "run tag"),
        (pl.DataFrame({"qid": ["q"], "docid": ["d"]}), "t", "missing ['score']"),
    ],
)
def test_write_refuses_tables_that_would_corrupt_the_file(tmp_path, rows, tag, fragment):
    with pytest.raises(ValueError, match=None) as err:
        runs.write_run(tmp_path / "r.trec", rows, tag)
    assert fragment in str(err.value)
    assert not (tmp_path / "r.trec").exists()


def test_from_topk_maps_indices_and_skips_faiss_padding():
    ids = np.array([[2, 0, -1], [1, -1, -1]], dtype=np.int64)
    scores = np.array([[0.9, 0.5, -3.4e38], [0.7, -3.4e38, -3.4e38]], dtype=np.float32)
    got = runs.from_topk(["q1", "q2"], ids, scores, ["a", "b", "c"])
    assert got.rows() == [("q1", "c", pytest.approx(0.9)), ("q1", "a", 0.5), ("q2", "b", pytest.approx(0.7))]
    assert got.schema == {"qid": pl.String, "docid": pl.String, "score": pl.Float32}
    with pytest.raises(ValueError, match="index 3, outside the 3 documents"):
        runs.from_topk(["q1"], np.array([[3]]), np.array([[1.0]]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="2 query ids for 1 rows"):
        runs.from_topk(["q1", "q2"], np.array([[0]]), np.array([[1.0]]), ["a"])
    with pytest.raises(ValueError, match="one shape"):
        runs.from_topk(["q1"], np.array([[0, 1]]), np.array([[1.0]]), ["a", "b"])


def test_drop_self_hits():
    rows = table([("q1", "q1", 3.0), ("q1", "d", 1.0)])
    assert runs.drop_self_hits(rows)["docid"].to_list() == ["d"]


def test_cut_self_hits_keeps_depth_others():
    rows = table([("q1", "a", 1.0), ("q1", "q1", 5.0), ("q1", "b", 2.0), ("q2", "x", 1.0), ("q2", "y", 1.0)])
    assert runs.search_depth(3, True) == 4 and runs.search_depth(3, False) == 3
    cut = runs.cut_self_hits(rows, 1)
    assert cut.rows() == [("q1", "b", 2.0), ("q2", "x", 1.0)]
    assert runs.cut_self_hits(rows, 2)["docid"].to_list() == ["b", "a", "x", "y"]
