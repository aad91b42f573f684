"""DPR's NQ files (the paper's App. C): psgs_w100.tsv (`dpr-passages`), nq-test.qa.csv (`dpr-qa`) and
biencoder-nq-train.json (`dpr-biencoder`) -> corpus, queries, answers and train-pool tables.

Fixtures are tiny hand-made files in the official layouts; expected tables are written out by hand (and, for
CSV quoting, checked against Python's csv module, the reader DPR itself uses)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from utilanno.data import convert, gold_answers, jsonarray, train_pool
from utilanno.data import lineblocks as lines
from utilanno.data.convert import Counts
from utilanno.data.jsonarray import iter_json_array
from utilanno.errors import InputFormatError

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_gz(path: Path, data: str) -> Path:
    path.write_bytes(gzip.compress(data.encode()))
    return path


def rows(path: Path) -> list[tuple]:
    return pl.read_parquet(path).rows()


def fail(fn, *args) -> InputFormatError:
    with pytest.raises(InputFormatError) as err:
        fn(*args)
    return err.value


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Line blocks of a few bytes (the default is 32 MiB), so that a file spans many blocks; returns the
    list of blocks read."""
    original, blocks = lines.iter_byte_blocks, []

    def tiny(stream, block_bytes=None):
        for body in original(stream, 24):
            blocks.append(body)
            yield body

    monkeypatch.setattr(lines, "iter_byte_blocks", tiny)
    return blocks


# ---------------------------------------------------------------------------------------------------------
# dpr-passages: psgs_w100.tsv

PASSAGES = (
    "id\ttext\ttitle\n"
    '1\t"Aaron Aaron ( or ; ""Ahärôn"") is a prophet, high priest."\tAaron\n'
    "2\tGod at Sinai granted Aaron the priesthood.\tAaron\n"
    '3\tThe song "Weird" charted in 1983.\t"""Weird Al"" Yankovic"\n'
)
PASSAGE_ROWS = [  # (docid, title, text), unquoted by hand
    ("1", "Aaron", 'Aaron Aaron ( or ; "Ahärôn") is a prophet, high priest.'),
    ("2", "Aaron", "God at Sinai granted Aaron the priesthood."),
    ("3", '"Weird Al" Yankovic', 'The song "Weird" charted in 1983.'),
]


def test_passages_plain_and_gz(tmp_path):
    for src in (
        write(tmp_path / "psgs_w100.tsv", PASSAGES),
        write_gz(tmp_path / "psgs_w100.tsv.gz", PASSAGES),
    ):
        out = tmp_path / f"{src.name}.parquet"
        counts = convert.convert_corpus(src, None, "dpr-passages", out)
        assert counts == Counts(lines_in=4, rows_out=3)  # the header is a line read, not a row
        assert pl.read_parquet(out).columns == ["docid", "title", "text"]
        assert rows(out) == PASSAGE_ROWS


def test_passage_quoting_agrees_with_csv_reader(tmp_path):
    """DPR reads psgs_w100.tsv with csv.reader(delimiter='\\t'): on well-formed quoting we read the same."""
    body = PASSAGES + '4\t"x"\t"a ""b"" c"""\n5\tplain "inner" quotes\tT\n'
    reference = [(r[0], r[2], r[1]) for r in csv.reader(io.StringIO(body), delimiter="\t")][1:]
    convert.convert_corpus(write(tmp_path / "p.tsv", body), None, "dpr-passages", tmp_path / "c.parquet")
    assert rows(tmp_path / "c.parquet") == reference
    assert reference == PASSAGE_ROWS + [("4", 'a "b" c"', "x"), ("5", "T", 'plain "inner" quotes')]


def test_passages_many_blocks(tmp_path, tiny_blocks):
    body = "id\ttext\ttitle\n" + "".join(f"{i}\tpassage number {i}\tT{i % 3}\n" for i in range(1, 41))
    counts = convert.convert_corpus(
        write(tmp_path / "p.tsv", body), None, "dpr-passages", tmp_path / "c.parquet"
    )
    assert (counts.lines_in, counts.rows_out) == (41, 40)
    assert len(tiny_blocks) > 20  # the header is only in the first
    assert rows(tmp_path / "c.parquet")[-1] == ("40", "T1", "passage number 40")
    late = body + '41\t"never closed\tT\n'  # an error in a late block names its line
    err = fail(
        convert.convert_corpus, write(tmp_path / "q.tsv", late), None, "dpr-passages", tmp_path / "d.parquet"
    )
    assert err.line == 42


@pytest.mark.parametrize("first", ["1\tAaron Aaron\tAaron", "pid\ttext\ttitle", "id\ttitle\ttext"])
def test_passages_header_missing_or_wrong(tmp_path, first):
    src = write(tmp_path / "p.tsv", first + "\n2\tb\tB\n")
    err = fail(convert.convert_corpus, src, None, "dpr-passages", tmp_path / "c.parquet")
    assert err.line == 1
    assert "expected the header 'id<TAB>text<TAB>title'" in str(err)
    assert not (tmp_path / "c.parquet").exists()


def test_passages_duplicate_ids(tmp_path):
    same = "id\ttext\ttitle\n1\ta\tT\n2\tb\tT\n1\ta\tT\n"
    counts = convert.convert_corpus(
        write(tmp_path / "p.tsv", same), None, "dpr-passages", tmp_path / "c.parquet"
    )
    assert (counts.lines_in, counts.rows_out) == (4, 2)
    assert counts.notes == ["1 identical duplicate docids removed (first kept)"]
    assert rows(tmp_path / "c.parquet") == [("1", "T", "a"), ("2", "T", "b")]
    clash = same + "2\tb\tother title\n"
    err = fail(
        convert.convert_corpus, write(tmp_path / "q.tsv", clash), None, "dpr-passages", tmp_path / "d.parquet"
    )
    assert err.line == 5
    assert "duplicate docid '2' with different content (first at line 3)" in str(err)


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("4\t\tEmpty", "empty passage text"),
        ('4\t""\tQuoted empty', "empty passage text"),
        ("4\t   \tBlank", "empty passage text"),
        ('4\t"never closed\tT', "field 'text' opens a CSV quote it does not close"),
        ('4\t"a "lone" quote"\tT', "field 'text' opens a CSV quote it does not close"),
        ('4\tok\t"Title', "field 'title' opens a CSV quote it does not close"),
        ("4\ta\tb\tc", "expected 3 tab-separated fields"),
        ("4 4\ta\tT", "bad docid '4 4'"),
    ],
)
def test_passages_bad_lines_are_named(tmp_path, bad, reason):
    src = write(tmp_path / "p.tsv", PASSAGES + bad + "\n5\tfine\tT\n")
    err = fail(convert.convert_corpus, src, None, "dpr-passages", tmp_path / "c.parquet")
    assert (err.path, err.line) == (str(src), 5)
    assert reason in str(err)


def test_passages_header_only_or_empty(tmp_path):
    for body in ("id\ttext\ttitle\n", ""):
        err = fail(
            convert.convert_corpus,
            write(tmp_path / "p.tsv", body),
            None,
            "dpr-passages",
            tmp_path / "c.parquet",
        )
        assert "no rows" in str(err)


# ---------------------------------------------------------------------------------------------------------
# dpr-qa: nq-test.qa.csv (question<TAB>answers, no header, no ids)

QA = (
    "who got the first nobel prize in physics\t['Wilhelm Conrad Röntgen']\n"
    "when is the next deadpool movie being released\t['May 18 , 2018']\n"
    'who sang "it\'s raining men"\t"[""The Weather Girls"", \'Izora Armstead\']"\n'
)
QA_QUERIES = [  # qid = line - 1
    ("0", "who got the first nobel prize in physics"),
    ("1", "when is the next deadpool movie being released"),
    ("2", 'who sang "it\'s raining men"'),
]
QA_ANSWERS = [
    ("0", ["Wilhelm Conrad Röntgen"]),
    ("1", ["May 18 , 2018"]),
    ("2", ["The Weather Girls", "Izora Armstead"]),
]


def test_qa_queries_and_answers_plain_and_gz(tmp_path):
    for src in (write(tmp_path / "nq-test.qa.csv", QA), write_gz(tmp_path / "nq-test.qa.csv.gz", QA)):
        queries = tmp_path / f"{src.name}.queries.parquet"
        counts = convert.convert_queries(src, None, "dpr-qa", queries)
        assert counts == Counts(lines_in=3, rows_out=3)
        assert rows(queries) == QA_QUERIES
        answers = tmp_path / f"{src.name}.answers.parquet"
        counts = gold_answers.convert_answers(src, None, "dpr-qa", queries, answers)
        assert (counts.lines_in, counts.rows_out) == (3, 3)
        assert counts.notes == ["0 of 3 queries have no answer and are left out"]
        assert rows(answers) == QA_ANSWERS


def test_qa_fields_agree_with_csv_reader_and_eval(tmp_path):
    """DPR and Pyserini read a qa file with csv.reader(delimiter='\\t') and eval(answers)."""
    reference = [
        (str(i), r[0], eval(r[1])) for i, r in enumerate(csv.reader(io.StringIO(QA), delimiter="\t"))
    ]  # noqa: S307
    src = write(tmp_path / "qa.csv", QA)
    queries = tmp_path / "q.parquet"
    convert.convert_queries(src, None, "dpr-qa", queries)
    gold_answers.convert_answers(src, None, "dpr-qa", queries, tmp_path / "a.parquet")
    answers = dict(rows(tmp_path / "a.parquet"))
    assert [(q, t, answers[q]) for q, t in rows(queries)] == reference


def test_qa_answers_only_for_the_queries_given(tmp_path):
    src = write(tmp_path / "qa.csv", QA)
    queries = tmp_path / "q.parquet"
    pl.DataFrame({"qid": ["2", "7"], "text": ["x", "y"]}).write_parquet(queries)
    counts = gold_answers.convert_answers(src, None, "dpr-qa", queries, tmp_path / "a.parquet")
    assert counts.notes == ["1 of 2 queries have no answer and are left out"]
    assert rows(tmp_path / "a.parquet") == [("2", ["The Weather Girls", "Izora Armstead"])]


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("q2\t['a', 'b'", "answers must be a non-empty Python list of strings"),
        ("q2\t'a'", "answers must be a non-empty Python list of strings"),
        ("q2\t[]", "answers must be a non-empty Python list of strings"),
        ("q2\t[1, 2]", "answers must be a non-empty Python list of strings"),
        ("q2\t__import__('os').getcwd()", "answers must be a non-empty Python list of strings"),
        ("\t['a']", "empty question"),
        ("q2 ['a']", "expected 2 tab-separated fields"),
        ("q2\t['a']\textra", "expected 2 tab-separated fields"),
        ("\"q2\t['a']", "field 'text' opens a CSV quote it does not close"),
    ],
)
def test_qa_bad_lines_are_named(tmp_path, bad, reason):
    src = write(tmp_path / "qa.csv", f"q1\t['x']\n{bad}\nq3\t['y']\n")
    for convert_fn in (
        lambda: convert.convert_queries(src, None, "dpr-qa", tmp_path / "q.parquet"),
        lambda: gold_answers.convert_answers(
            src, None, "dpr-qa", queries_of_three(tmp_path), tmp_path / "a.parquet"
        ),
    ):
        err = fail(convert_fn)
        assert (err.path, err.line) == (str(src), 2)
        assert reason in str(err)
    assert not (tmp_path / "q.parquet").exists() and not (tmp_path / "a.parquet").exists()


def queries_of_three(tmp_path: Path) -> Path:
    path = tmp_path / "three.parquet"
    pl.DataFrame({"qid": ["0", "1", "2"], "text": ["q1", "q2", "q3"]}).write_parquet(path)
    return path


def test_qa_empty_file(tmp_path):
    err = fail(
        convert.convert_queries, write(tmp_path / "qa.csv", ""), None, "dpr-qa", tmp_path / "q.parquet"
    )
    assert "no queries" in str(err)


# ---------------------------------------------------------------------------------------------------------
# dpr-biencoder: biencoder-nq-train.json (one JSON array)


def ctx(pid, title="T", score=0):
    return {"title": title, "text": f"text of {pid}", "score": score, "title_score": 0, "passage_id": pid}


ELEMENTS = [
    {
        "dataset": "nq_train_psgs_w100",
        "question": "big little lies season 2 how many episodes",
        "answers": ["seven"],
        "positive_ctxs": [ctx("18768923", "Big Little Lies (TV series)", 1000)],
        "negative_ctxs": [ctx("1"), ctx("2")],
        "hard_negative_ctxs": [ctx("18768924"), ctx("7")],
    },
    {
        "dataset": "nq_train_psgs_w100",
        "question": "who sang waiting for a girl like you",
        "answers": ["Foreigner"],
        "positive_ctxs": [ctx("11828866"), ctx(11828867)],  # an integer passage_id is read as its digits
        "negative_ctxs": [],
        "hard_negative_ctxs": [ctx("11828866"), ctx("99"), ctx("99")],  # a positive, then a repeat
    },
    {
        "dataset": "nq_train_psgs_w100",
        "question": "where do you cross the arctic circle in norway",
        "answers": ["Saltfjellet", "Saltfjellet mountain"],
        "positive_ctxs": [ctx("2"), ctx("3")],
        "negative_ctxs": [ctx("4"), ctx("5"), ctx("6")],
        "hard_negative_ctxs": [],
    },
]
POOL_ROWS = [  # qid = element index; negatives = hard_negative_ctxs less repeats and the query's positives
    ("0", "big little lies season 2 how many episodes", ["18768923"], ["18768924", "7"]),
    ("1", "who sang waiting for a girl like you", ["11828866", "11828867"], ["99"]),
    ("2", "where do you cross the arctic circle in norway", ["2", "3"], []),
]
POOL_NOTES = [
    "5 random negatives (negative_ctxs) not used",
    "1 repeated negatives removed",
    "1 negatives that were also positives of their query removed",
    "5 positives, 3 negatives",
]


def one_per_line(elements: list) -> str:
    """The array with element i on line i + 2 (so that expected error lines can be read off by hand)."""
    return "[\n" + ",\n".join(json.dumps(e) for e in elements) + "\n]\n"


def test_biencoder_pool_pretty_printed_plain_and_gz(tmp_path):
    pretty = json.dumps(ELEMENTS, indent=4)  # an element spans many lines; the layout must not matter
    for src in (write(tmp_path / "train.json", pretty), write_gz(tmp_path / "train.json.gz", pretty)):
        out = tmp_path / f"{src.name}.parquet"
        counts = train_pool.convert_pool(src, None, "dpr-biencoder", out)
        assert counts == Counts(lines_in=3, rows_out=3, notes=POOL_NOTES)
        table = pl.read_parquet(out)
        assert table.columns == ["qid", "query", "positives", "negatives"]
        assert table.schema["negatives"] == pl.List(pl.String)
        assert table.rows() == POOL_ROWS


def test_biencoder_pool_same_as_tevatron_for_the_same_queries(tmp_path):
    """Both pool formats end in the same table: the tevatron JSONL of the same queries gives the same rows."""
    tev = "".join(
        json.dumps(
            {
                "query_id": str(i),
                "query": e["question"],
                "positive_passages": [
                    {"docid": str(c["passage_id"]), "title": "", "text": ""} for c in e["positive_ctxs"]
                ],
                "negative_passages": [
                    {"docid": str(c["passage_id"]), "title": "", "text": ""} for c in e["hard_negative_ctxs"]
                ],
            }
        )
        + "\n"
        for i, e in enumerate(ELEMENTS)
    )
    train_pool.convert_pool(write(tmp_path / "t.jsonl", tev), None, "tevatron", tmp_path / "tev.parquet")
    train_pool.convert_pool(
        write(tmp_path / "d.json", one_per_line(ELEMENTS)), None, "dpr-biencoder", tmp_path / "dpr.parquet"
    )
    assert pl.read_parquet(tmp_path / "tev.parquet").equals(pl.read_parquet(tmp_path / "dpr.parquet"))


def test_biencoder_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonarray, "CHUNK_BYTES", 5)
    src = write_gz(tmp_path / "train.json.gz", json.dumps(ELEMENTS, indent=2, ensure_ascii=False))
    train_pool.convert_pool(src, None, "dpr-biencoder", tmp_path / "p.parquet")
    assert rows(tmp_path / "p.parquet") == POOL_ROWS


def test_biencoder_queries_and_answers_share_the_pool_ids(tmp_path):
    src = write(tmp_path / "train.json", json.dumps(ELEMENTS, indent=4))
    queries = tmp_path / "queries-train.parquet"
    counts = convert.convert_queries(src, None, "dpr-biencoder", queries)
    assert counts == Counts(lines_in=3, rows_out=3)
    assert rows(queries) == [(q, text) for q, text, _, _ in POOL_ROWS]
    counts = gold_answers.convert_answers(src, None, "dpr-biencoder", queries, tmp_path / "answers.parquet")
    assert (counts.lines_in, counts.rows_out) == (3, 3)
    assert rows(tmp_path / "answers.parquet") == [
        ("0", ["seven"]),
        ("1", ["Foreigner"]),
        ("2", ["Saltfjellet", "Saltfjellet mountain"]),
    ]


def test_biencoder_question_without_positive_is_refused_as_in_tevatron(tmp_path):
    """The tevatron converter refuses a query without a positive passage; so does this one."""
    bad = [ELEMENTS[0], dict(ELEMENTS[1], positive_ctxs=[]), ELEMENTS[2]]
    src = write(tmp_path / "t.json", one_per_line(bad))
    err = fail(train_pool.convert_pool, src, None, "dpr-biencoder", tmp_path / "p.parquet")
    assert (err.path, err.line) == (str(src), 3)
    assert "question has no positive passage" in str(err)
    assert not (tmp_path / "p.parquet").exists()


def without(element: dict, key: str) -> dict:
    return {k: v for k, v in element.items() if k != key}


@pytest.mark.parametrize(
    "bad,reason",
    [
        (without(ELEMENTS[1], "positive_ctxs"), "missing list field 'positive_ctxs'"),
        (without(ELEMENTS[1], "hard_negative_ctxs"), "missing list field 'hard_negative_ctxs'"),
        (dict(ELEMENTS[1], positive_ctxs={"passage_id": "1"}), "missing list field 'positive_ctxs'"),
        (without(ELEMENTS[1], "question"), "missing or non-string field 'question'"),
        (dict(ELEMENTS[1], question=7), "missing or non-string field 'question'"),
        (dict(ELEMENTS[1], question="  "), "empty question"),
        (dict(ELEMENTS[1], answers="Foreigner"), "field 'answers' must be a list of strings"),
        (
            dict(ELEMENTS[1], hard_negative_ctxs=[{"title": "t", "text": "no id"}]),
            "has no string or integer 'passage_id'",
        ),
        (dict(ELEMENTS[1], hard_negative_ctxs=[ctx(True)]), "has no string or integer 'passage_id'"),
        (dict(ELEMENTS[1], positive_ctxs=["11828866"]), "a passage in 'positive_ctxs' has no string"),
        (dict(ELEMENTS[1], hard_negative_ctxs=[ctx("12 3")]), "bad docid '12 3' in 'hard_negative_ctxs'"),
        (["not", "an", "object"], "expected a JSON object, found list"),
    ],
)
def test_biencoder_bad_elements_are_named(tmp_path, bad, reason):
    src = write(tmp_path / "t.json", one_per_line([ELEMENTS[0], bad, ELEMENTS[2]]))
    for convert_fn in (
        lambda: train_pool.convert_pool(src, None, "dpr-biencoder", tmp_path / "p.parquet"),
        lambda: convert.convert_queries(src, None, "dpr-biencoder", tmp_path / "q.parquet"),
    ):
        err = fail(convert_fn)
        assert (err.path, err.line) == (str(src), 3)
        assert reason in str(err)


def test_biencoder_answers_required_for_the_answers_table(tmp_path):
    src = write(tmp_path / "t.json", one_per_line([ELEMENTS[0], without(ELEMENTS[1], "answers")]))
    train_pool.convert_pool(src, None, "dpr-biencoder", tmp_path / "p.parquet")  # the pool needs none
    err = fail(
        gold_answers.convert_answers,
        src,
        None,
        "dpr-biencoder",
        queries_of_three(tmp_path),
        tmp_path / "a.parquet",
    )
    assert (err.line, "'answers' must be a non-empty list of strings" in str(err)) == (3, True)


def test_biencoder_truncated_array(tmp_path):
    full = one_per_line(ELEMENTS)  # '[' on line 1, elements on lines 2-4, ']' on line 5
    cases = {
        "cut inside the third element": (full[: full.index('"where do you') + 5], 4, "truncated?"),
        "cut after a comma": (full[: full.index(",\n", full.index("who sang")) + 2], 4, "truncated?"),
        "no closing bracket": (full[: full.rindex("]")], 5, "the JSON array is not closed"),
    }
    for what, (text, line, reason) in cases.items():
        for src in (write(tmp_path / "t.json", text), write_gz(tmp_path / "t.json.gz", text)):
            err = fail(train_pool.convert_pool, src, None, "dpr-biencoder", tmp_path / "p.parquet")
            assert (err.line, reason in str(err)) == (line, True), (what, str(err))
    assert not (tmp_path / "p.parquet").exists()


E0 = json.dumps(ELEMENTS[0])  # a valid element, so that only the array around it is wrong


@pytest.mark.parametrize(
    "text,line,reason",
    [
        (f"{E0}\n{E0}\n", 1, "expected a JSON array ('['), found '{'"),  # JSON lines, not an array
        (f"[\n{E0},\n]\n", 2, "trailing comma before ']'"),
        (f"[\n{E0}\n{E0}\n]\n", 3, "expected ',' or ']' after an array element"),
        (f'[\n{E0},\n{{"question": "a", "answers": [x]}}\n]\n', 3, "invalid JSON: Expecting value"),
        (f"[\n{E0}\n]\n]\n", 4, "unexpected data after the JSON array"),
    ],
)
def test_biencoder_broken_json_is_named(tmp_path, text, line, reason):
    src = write(tmp_path / "t.json", text)
    err = fail(train_pool.convert_pool, src, None, "dpr-biencoder", tmp_path / "p.parquet")
    assert (err.line, reason in str(err)) == (line, True), str(err)


def test_biencoder_empty(tmp_path):
    for text in ("[]", "[\n]\n", ""):
        src = write(tmp_path / "t.json", text)
        assert "no training queries" in str(
            fail(train_pool.convert_pool, src, None, "dpr-biencoder", tmp_path / "p.parquet")
        )
        assert "no queries" in str(
            fail(convert.convert_queries, src, None, "dpr-biencoder", tmp_path / "q.parquet")
        )


def test_pool_unknown_format_lists_both(tmp_path):
    with pytest.raises(ValueError, match=r"expected one of \['dpr-biencoder', 'tevatron'\]"):
        train_pool.convert_pool(write(tmp_path / "t.json", "[]"), None, "dpr", tmp_path / "p.parquet")


# ---------------------------------------------------------------------------------------------------------
# The JSON array reader itself, against json.loads


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    elements=st.lists(JSON, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
    chunk=st.integers(min_value=1, max_value=40),
)
def test_json_array_elements_equal_json_loads(elements, indent, ascii_only, chunk):
    text = json.dumps(elements, indent=indent, ensure_ascii=ascii_only)
    got = [e for _, e in iter_json_array(io.BytesIO(text.encode()), "x.json", chunk)]
    assert got == json.loads(text)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_json_array_lines_and_numbers_cut_by_chunks(chunk):
    text = '[\n  -2500.0,\n\n  {"a":\n 1e-3},\n  "x",\n  12345678901234567890\n]'
    got = list(iter_json_array(io.BytesIO(text.encode()), "x.json", chunk))
    assert got == [(2, -2500.0), (4, {"a": 0.001}), (6, "x"), (7, 12345678901234567890)]


def test_json_array_invalid_utf8_names_its_line():
    data = b'[\n"ok",\n"bad \xff byte"\n]'
    with pytest.raises(InputFormatError) as err:
        list(iter_json_array(io.BytesIO(data), "x.json", 4))
    assert (err.value.line, "not valid UTF-8" in str(err.value)) == (3, True)


# ---------------------------------------------------------------------------------------------------------
# The data stage's commands accept the new formats


def data_cli():
    spec = importlib.util.spec_from_file_location("data_cli", REPO / "scripts" / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cli


def test_data_commands(tmp_path):
    cli = data_cli()
    passages = write(tmp_path / "psgs_w100.tsv", PASSAGES)
    qa = write(tmp_path / "nq-test.qa.csv", QA)
    train = write_gz(tmp_path / "biencoder-nq-train.json.gz", json.dumps(ELEMENTS, indent=4))
    runner = CliRunner()
    calls = [
        ["corpus", "--raw", passages, "--format", "dpr-passages", "--out", tmp_path / "corpus.parquet"],
        ["queries", "--raw", qa, "--format", "dpr-qa", "--out", tmp_path / "queries-test.parquet"],
        ["queries", "--raw", train, "--format", "dpr-biencoder", "--out", tmp_path / "queries-train.parquet"],
        ["answers", "--raw", qa, "--format", "dpr-qa", "--queries", tmp_path / "queries-test.parquet",
         "--out", tmp_path / "answers-test.parquet"],
        ["pool", "--raw", train, "--format", "dpr-biencoder", "--out", tmp_path / "train-pool.parquet"],
    ]  # fmt: skip
    for args in calls:
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    assert rows(tmp_path / "corpus.parquet") == PASSAGE_ROWS
    assert rows(tmp_path / "answers-test.parquet") == QA_ANSWERS
    assert rows(tmp_path / "train-pool.parquet") == POOL_ROWS
    broken = write(tmp_path / "broken.tsv", "1\ta\tA\n")
    result = runner.invoke(
        cli,
        ["corpus", "--raw", str(broken), "--format", "dpr-passages", "--out", str(tmp_path / "x.parquet")],
    )
    assert result.exit_code != 0
    assert f"{broken}:1: expected the header" in result.output
