"""DPR-style answer matching and top-k answer accuracy, on hand-made passages.

Expected tokens follow DPR's SimpleTokenizer as written in facebookresearch/DPR dpr/utils/tokenizers.py
(runs of \\p{L}\\p{N}\\p{M}, else one non-separator non-control character, lower-cased) after the NFD step of
dpr/data/qa_validation.py::_normalize; they are worked out by hand here, not by calling the code under test.
"""

from __future__ import annotations

import logging

import polars as pl
import pytest

from utilanno.evaluate import answer_match
from utilanno.evaluate.answer_match import (
    DEFAULT_KS,
    answer_tokens,
    first_answer_rank,
    has_answer,
    measure_name,
    parse_measure,
    ranked_docids,
    topk_accuracy,
)
from utilanno.evaluate.metrics import PER_QUERY_SCHEMA

E_ACUTE = "\u00e9"  # precomposed é
COMBINING_ACUTE = "\u0301"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Hello, World!", ["hello", ",", "world", "!"]),
        ("U.S.", ["u", ".", "s", "."]),  # punctuation is a token of its own, even inside an abbreviation
        ("don't", ["don", "'", "t"]),
        ("3.5%", ["3", ".", "5", "%"]),
        ("1,000", ["1", ",", "000"]),
        ("well-known", ["well", "-", "known"]),
        ("The 2nd", ["the", "2nd"]),  # letters and digits in one run
        ("a\tb\nc  d", ["a", "b", "c", "d"]),  # whitespace is never a token
        ("x\u00a0y", ["x", "y"]),  # no-break space: a separator (Zs)
        ("x\u200by", ["x", "y"]),  # zero-width space: a format character (Cf), not a token
        ("", []),
        # NFD splits é into e + U+0301; the mark is \p{M}, so it stays inside the word token
        (f"Beyonc{E_ACUTE}", ["beyonce" + COMBINING_ACUTE]),
        (f"Beyonce{COMBINING_ACUTE}", ["beyonce" + COMBINING_ACUTE]),
        ("ÅNGSTRÖM", ["a\u030angstro\u0308m"]),
    ],
)
def test_answer_tokens_are_dprs(text, want):
    assert answer_tokens(text) == want


@pytest.mark.parametrize(
    ("answers", "text", "want"),
    [
        (["party"], "The party started.", True),
        (["art"], "The party started.", False),  # part of a word never matches
        (["start"], "The party started.", False),
        (["PARIS"], "paris is big", True),  # uncased
        (["paris"], "PARIS IS BIG", True),
        (["york"], "new york", True),  # at the very end of the passage
        (["new"], "new york", True),  # at the very start
        (["new york"], "new york", True),  # the whole passage
        (["New York"], "I love New York City.", True),  # several tokens, contiguous
        (["New York"], "I love New\nYork City.", True),  # whitespace between tokens does not matter
        (["New York"], "York, New", False),  # order matters
        (["New York"], "New, York", False),  # contiguous: the comma is a token in between
        (["New York City"], "New York", False),  # longer than the passage
        (["U.S."], "the U.S. army", True),
        (["U.S"], "the U.S. army", True),  # [u . s] is a run of [the u . s . army]
        (["US"], "the U.S. army", False),
        (["Paris, France"], "Paris France", False),
        (["Paris France"], "Paris, France", False),
        (["well-known"], "a well known fact", False),
        (["1,000"], "about 1000 people", False),
        (["1000"], "about 1,000 people", False),
        ([f"Beyonc{E_ACUTE}"], f"Beyonce{COMBINING_ACUTE} Knowles", True),  # NFD: composed == decomposed
        ([f"Beyonce{COMBINING_ACUTE}"], f"Beyonc{E_ACUTE} Knowles", True),
        ([f"Beyonc{E_ACUTE}"], "Beyonce Knowles", False),  # accents are kept, not stripped
        (["Beyonce"], f"Beyonc{E_ACUTE} Knowles", False),
        (["xyz", "party"], "The party started.", True),  # any of the answers
        (["party", "xyz"], "The party started.", True),
        (["xyz", "abc"], "The party started.", False),
        ([], "The party started.", False),
        ([""], "The party started.", True),  # DPR: an answer without tokens matches any passage
        (["  "], "", True),  # ... even an empty one
        (["party"], "", False),
    ],
)
def test_has_answer(answers, text, want):
    assert has_answer(answers, text) is want


def test_measure_names():
    assert [measure_name(k) for k in DEFAULT_KS] == ["Top20", "Top40", "Top60", "Top80", "Top100"]
    assert DEFAULT_KS == (20, 40, 60, 80, 100)
    assert [parse_measure(measure_name(k)) for k in (1, 9, 10, 20, 100, 1000)] == [1, 9, 10, 20, 100, 1000]
    for other in [
        "Top0",
        "Top020",
        "top20",
        "TOP20",
        "Top",
        "Top20x",
        "xTop20",
        "Top@20",
        "Top-20",
        "nDCG@10",
    ]:
        assert parse_measure(other) is None, other


PASSAGES = {
    "p1": "The Eiffel Tower is in Paris.",
    "p2": "Paris is the capital of France.",
    "p3": "Rome is the capital of Italy.",
    "p4": "Berlin has many parties.",
    "p5": "It was built in 1889.",
}


def _values(table: pl.DataFrame) -> dict[tuple[str, str], float]:
    return {(m, q): v for q, m, v in table.iter_rows()}


def test_topk_accuracy_hand_made():
    ranked = {
        "q1": ["p3", "p2", "p1"],  # "France" first at rank 2
        "q2": ["p1", "p2", "p3"],  # "Berlin" nowhere in the top 3
        "q4": ["p5", "p4"],  # "1889" at rank 1
        "q5": ["p1"],  # no answer strings
        "qx": ["p1"],  # not a judged query: ignored
    }
    answers = {"q1": ["France"], "q2": ["Berlin"], "q3": ["Paris"], "q4": ["1889", "Berlin"], "q5": []}
    table = topk_accuracy(ranked, PASSAGES, answers, ks=[1, 2, 3])
    assert dict(table.schema) == PER_QUERY_SCHEMA
    want = {
        "q1": (0.0, 1.0, 1.0),  # at rank k counts, at rank k + 1 does not
        "q2": (0.0, 0.0, 0.0),
        "q3": (0.0, 0.0, 0.0),  # missing from the run
        "q4": (1.0, 1.0, 1.0),
        "q5": (0.0, 0.0, 0.0),
    }
    assert _values(table) == {(f"Top{k}", q): v[i] for q, v in want.items() for i, k in enumerate([1, 2, 3])}
    # rows: measures in the order given, then qid
    assert table["measure"].to_list() == ["Top1"] * 5 + ["Top2"] * 5 + ["Top3"] * 5
    assert table["qid"].to_list() == ["q1", "q2", "q3", "q4", "q5"] * 3
    # DPR's top-k accuracy is the mean over all judged queries
    means = table.group_by("measure").agg(pl.col("value").mean())
    assert dict(means.iter_rows()) == {"Top1": 1 / 5, "Top2": 2 / 5, "Top3": 2 / 5}


def test_topk_accuracy_keeps_the_order_of_ks_and_sorts_qids():
    ranked = {"b": ["p2"], "a": ["p3"]}
    answers = {"b": ["Paris"], "a": ["Paris"]}
    table = topk_accuracy(ranked, PASSAGES, answers, ks=[3, 1])
    assert table.rows() == [("a", "Top3", 0.0), ("b", "Top3", 1.0), ("a", "Top1", 0.0), ("b", "Top1", 1.0)]


def test_topk_accuracy_default_cutoffs_at_their_boundaries():
    filler = {f"d{i}": f"filler passage number {i}" for i in range(1, 101)}
    passages = {**filler, "gold": "The answer is Zanzibar."}

    def run_with_gold_at(rank):
        docs = [f"d{i}" for i in range(1, 101)]
        docs.insert(rank - 1, "gold")
        return docs[:100]

    ranked = {f"at{r}": run_with_gold_at(r) for r in (1, 20, 21, 40, 41, 100)}
    ranked["never"] = [f"d{i}" for i in range(1, 101)]
    answers = {q: ["zanzibar"] for q in ranked}
    got = _values(topk_accuracy(ranked, passages, answers))
    reached = {"at1": 20, "at20": 20, "at21": 40, "at40": 40, "at41": 60, "at100": 100, "never": None}
    for qid, first_k in reached.items():
        for k in DEFAULT_KS:
            assert got[(f"Top{k}", qid)] == float(first_k is not None and first_k <= k), (qid, k)


def test_passages_beyond_the_deepest_cutoff_are_not_read():
    ranked = {"q": ["p3", "p4", "unknown"]}
    table = topk_accuracy(ranked, PASSAGES, {"q": ["Paris"]}, ks=[2])
    assert table.rows() == [("q", "Top2", 0.0)]
    with pytest.raises(KeyError, match="'unknown' of the run is not in the passage texts"):
        topk_accuracy(ranked, PASSAGES, {"q": ["Paris"]}, ks=[3])
    # the search stops at the first passage with an answer
    assert first_answer_rank(["p2", "unknown"], PASSAGES, ["Paris"], depth=5) == 1


def test_first_answer_rank():
    assert first_answer_rank(["p3", "p4", "p1"], PASSAGES, ["Eiffel Tower"], depth=3) == 3
    assert first_answer_rank(["p3", "p4", "p1"], PASSAGES, ["Eiffel Tower"], depth=2) is None
    assert first_answer_rank(["p3", "p4", "p1"], PASSAGES, ["tower eiffel"], depth=3) is None
    assert first_answer_rank([], PASSAGES, ["Paris"], depth=3) is None
    assert first_answer_rank(["p1"], PASSAGES, [], depth=3) is None


def test_topk_accuracy_with_no_queries():
    table = topk_accuracy({"q": ["p1"]}, PASSAGES, {}, ks=[1])
    assert table.height == 0
    assert dict(table.schema) == PER_QUERY_SCHEMA


@pytest.mark.parametrize(
    ("ks", "error", "match"),
    [
        ([], ValueError, "^no cut-offs k to compute$"),
        ([0], ValueError, "positive integer"),
        ([-1], ValueError, "positive integer"),
        ([2.0], ValueError, "positive integer"),
        ([True], ValueError, "positive integer"),
        ([5, 5], ValueError, "listed twice"),
        (5, TypeError, "list of cut-offs"),
    ],
)
def test_bad_cutoffs(ks, error, match):
    with pytest.raises(error, match=match):
        topk_accuracy({}, PASSAGES, {"q": ["x"]}, ks=ks)


def test_ranked_docids_orders_by_score_then_docid():
    run = pl.DataFrame(
        {
            "qid": ["q1", "q1", "q1", "q2", "q2"],
            "docid": ["p3", "p1", "p2", "p5", "p4"],
            "score": [1.0, 2.0, 2.0, 0.5, 0.7],
        }
    )
    assert ranked_docids(run) == {"q1": ["p1", "p2", "p3"], "q2": ["p4", "p5"]}
    assert list(ranked_docids(run.reverse())) == ["q1", "q2"]  # queries in qid order, whatever the rows
    assert ranked_docids(run, depth=1) == {"q1": ["p1"], "q2": ["p4"]}
    # straight into topk_accuracy: q1's "Rome" is in p3, third
    table = topk_accuracy(ranked_docids(run), PASSAGES, {"q1": ["Rome"]}, ks=[2, 3])
    assert table.rows() == [("q1", "Top2", 0.0), ("q1", "Top3", 1.0)]


def test_metrics_command_scores_top_k_beside_ir_measures(tmp_path):
    """`evaluate.py metrics` with --answers: Top-k accuracy from the gold answers and the corpus text, nDCG
    from the qrels, one per-query table; a dataset asking for TopK without answers fails naming it."""
    import importlib.util
    from pathlib import Path

    from click.testing import CliRunner

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("evaluate_cli", repo / "scripts" / "evaluate.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    corpus = {"d1": "Paris is in France", "d2": "the art of war", "d3": "a party in Paris"}
    pl.DataFrame({"docid": list(corpus), "title": "", "text": list(corpus.values())}).write_parquet(
        tmp_path / "corpus.parquet"
    )
    pl.DataFrame({"qid": ["q1", "q2", "q3"], "answers": [["paris"], ["art"], ["nowhere"]]}).write_parquet(
        tmp_path / "answers.parquet"
    )
    (tmp_path / "qrels.trec").write_text("q1 0 d1 1\nq2 0 d2 1\n")
    # q1: d2 then d1 (Paris at rank 2); q2: d3 ("party" is not "art") then d2; q3: nothing matches
    run = "q1 Q0 d2 1 3.0 t\nq1 Q0 d1 2 2.0 t\nq2 Q0 d3 1 3.0 t\nq2 Q0 d2 2 1.0 t\nq3 Q0 d1 1 1.0 t\n"
    (tmp_path / "run.trec").write_text(run)
    args = ["metrics", "--eval", "nq", str(tmp_path / "run.trec"), str(tmp_path / "qrels.trec"), "1"]
    args += ["--spec", '{"nq": ["nDCG@10", "Top1", "Top2"]}', "--out", str(tmp_path / "m.parquet")]
    answers = ["--answers", "nq", str(tmp_path / "answers.parquet"), str(tmp_path / "corpus.parquet")]
    result = CliRunner().invoke(cli.cli, args + answers)
    assert result.exit_code == 0, result.output
    got = pl.read_parquet(tmp_path / "m.parquet")
    value = {(q, m): v for _, q, m, v in got.iter_rows()}
    assert [value["q1", "Top1"], value["q2", "Top1"], value["q3", "Top1"]] == [0.0, 0.0, 0.0]
    assert [value["q1", "Top2"], value["q2", "Top2"], value["q3", "Top2"]] == [1.0, 1.0, 0.0]
    assert ("q3", "nDCG@10") not in value and value["q1", "nDCG@10"] > 0  # nDCG: the qrels' queries only
    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code != 0 and "Top1, Top2 need --answers for dataset 'nq'" in result.output


def test_progress_lines(caplog, monkeypatch):
    monkeypatch.setattr(answer_match, "_PROGRESS_EVERY", 2)
    ranked = {"q1": ["p2"], "q2": ["p3"], "q3": ["p1"], "q4": ["p1"], "q5": ["p1"]}
    answers = {q: ["Paris"] for q in ranked}
    with caplog.at_level(logging.INFO, logger="utilanno.evaluate.answer_match"):
        topk_accuracy(ranked, PASSAGES, answers, ks=[1])
    assert caplog.messages == [
        "answer match: 2 of 5 queries, 1 answered in the top 1",
        "answer match: 4 of 5 queries, 3 answered in the top 1",
        "answer match: 5 queries, 4 answered in the top 1",
    ]


def test_evaluate_file(tmp_path):
    """Answers and passage texts read from tables: extra columns are fine, a null answer list scores 0, run
    queries without answers are ignored, and passages past the deepest cut-off need not be in the corpus."""
    pl.DataFrame(
        {"qid": ["q1", "q2", "q3"], "answers": [["Paris"], None, ["Rome"]], "dataset": "x"},
        schema={"qid": pl.String, "answers": pl.List(pl.String), "dataset": pl.String},
    ).write_parquet(tmp_path / "answers.parquet")
    corpus = {k: PASSAGES[k] for k in ("p1", "p2", "p3")}
    pl.DataFrame({"docid": list(corpus), "title": "t", "text": list(corpus.values())}).write_parquet(
        tmp_path / "corpus.parquet"
    )
    run = pl.DataFrame(
        {
            "qid": ["q1", "q1", "q1", "q2", "q3", "q3", "qx"],
            "docid": ["p3", "p1", "gone", "p1", "p2", "p3", "gone"],
            "score": [3.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0],
        }
    )
    table = answer_match.evaluate_file(
        run, tmp_path / "answers.parquet", tmp_path / "corpus.parquet", ["Top2", "Top1"]
    )
    assert table.rows() == [
        ("q1", "Top2", 1.0),
        ("q2", "Top2", 0.0),
        ("q3", "Top2", 1.0),
        ("q1", "Top1", 0.0),
        ("q2", "Top1", 0.0),
        ("q3", "Top1", 0.0),
    ]
    with pytest.raises(ValueError, match=r"^not top-k accuracy measures: \['nDCG@10', 'top5'\]$"):
        answer_match.evaluate_file(
            run, tmp_path / "answers.parquet", tmp_path / "corpus.parquet", ["Top2", "nDCG@10", "top5"]
        )
