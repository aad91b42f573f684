"""Converters: official raw formats -> normalized tables, exact errors (file, line, reason) and counts."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest

from utilanno.data import convert, gold_answers, train_pool
from utilanno.data import lineblocks as lines
from utilanno.data.convert import Counts
from utilanno.errors import InputFormatError

# ---------------------------------------------------------------------------------------------------------
# Helpers


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_tar(path: Path, members: dict[str, bytes | str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path


def write_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def jsonl(*objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def rows(path: Path) -> list[tuple]:
    return pl.read_parquet(path).rows()


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed converter must not leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-") or p.name.endswith(".dedup"))


@pytest.fixture
def small_blocks(monkeypatch):
    """Make the converters read in tiny blocks (the default is 32 MiB), to cross block boundaries.

    Every reader in `lines` takes its blocks from `iter_byte_blocks`, which is patched here. Returns a
    function setting the block size; it returns the list of line counts of the blocks read so far.
    """
    heights: list[int] = []
    original = lines.iter_byte_blocks

    def use(block_bytes: int) -> list[int]:
        def tiny(stream, block_bytes_=None):
            for body in original(stream, block_bytes):
                heights.append(body.count(b"\n") + 1)
                yield body

        monkeypatch.setattr(lines, "iter_byte_blocks", tiny)
        return heights

    return use


def fail(fn, *args, **kwargs) -> InputFormatError:
    with pytest.raises(InputFormatError) as err:
        fn(*args, **kwargs)
    return err.value


# ---------------------------------------------------------------------------------------------------------
# Corpus: MS MARCO collection.tsv (pid<TAB>passage)

COLLECTION = (
    "0\tThe presence of communication amid scientific minds.\n"
    "1\tThe Manhattan Project, and its atomic bomb.\n"
    "7\tEssay on it\n"
)
COLLECTION_ROWS = [
    ("0", "", "The presence of communication amid scientific minds."),
    ("1", "", "The Manhattan Project, and its atomic bomb."),
    ("7", "", "Essay on it"),
]


def test_msmarco_corpus_happy_path(tmp_path):
    src = write(tmp_path / "collection.tsv", COLLECTION)
    out = tmp_path / "out" / "corpus.parquet"
    counts = convert.convert_corpus(src, None, "msmarco-tsv", out)
    assert counts == Counts(lines_in=3, rows_out=3, notes=[])
    table = pl.read_parquet(out)
    assert table.columns == ["docid", "title", "text"]
    assert table.schema == pl.Schema({"docid": pl.String, "title": pl.String, "text": pl.String})
    assert table.rows() == COLLECTION_ROWS
    assert str(counts) == "3 lines in, 3 rows out"
    assert leftovers(out.parent) == []


def test_titled_msmarco_corpus_joins_titles_by_pid(tmp_path, small_blocks):
    """RocketQA's marco.tar.gz: para.txt + para.title.txt; titles as written ("-" kept), "" without a line,
    corpus order kept, a title of a pid outside the corpus ignored, an identical repeat dropped."""
    small_blocks(40)
    titles = "7\tEssays\n1\t-\n99\tNowhere\n7\tEssays\n"
    src = write_tar(tmp_path / "marco.tar.gz", {"marco/para.txt": COLLECTION, "marco/para.title.txt": titles})
    out = tmp_path / "corpus.parquet"
    counts = convert.convert_corpus(src, "marco/para.txt", "msmarco-tsv", out, titles="marco/para.title.txt")
    assert rows(out) == [
        ("0", "", "The presence of communication amid scientific minds."),
        ("1", "-", "The Manhattan Project, and its atomic bomb."),
        ("7", "Essays", "Essay on it"),
    ]
    assert counts.rows_out == 3 and any(
        "2 passages titled" in n and "1 titles of other pids" in n for n in counts.notes
    )
    assert leftovers(tmp_path) == []
    # the untitled collection stays selectable: same rows, empty titles
    convert.convert_corpus(src, "marco/para.txt", "msmarco-tsv", out)
    assert rows(out) == COLLECTION_ROWS


@pytest.mark.parametrize(
    "titles, line, fragment",
    [
        ("7\tEssays\n7\tOther\n", 2, "duplicate docid '7' with different content"),
        ("7\tEssays\nx7\tBad\n", 2, "an id of digits"),
        ("7\n", 1, ""),
        ("", None, "empty"),
    ],
)
def test_bad_titles_are_named_and_publish_nothing(tmp_path, titles, line, fragment):
    src = write_tar(tmp_path / "marco.tar.gz", {"marco/para.txt": COLLECTION, "marco/para.title.txt": titles})
    out = tmp_path / "corpus.parquet"
    err = fail(
        convert.convert_corpus, src, "marco/para.txt", "msmarco-tsv", out, titles="marco/para.title.txt"
    )
    assert "para.title.txt" in str(err) and fragment in str(err) and err.line == line
    assert not out.exists() and leftovers(tmp_path) == []


def test_titles_only_for_msmarco_tsv(tmp_path):
    src = write(tmp_path / "corpus.jsonl", jsonl({"_id": "1", "title": "", "text": "x"}))
    with pytest.raises(ValueError, match="titles are joined to an msmarco-tsv corpus only"):
        convert.convert_corpus(src, None, "beir-corpus", tmp_path / "c.parquet", titles="t.txt")


def test_msmarco_corpus_in_tar_gz(tmp_path):
    src = write_tar(
        tmp_path / "collectionandqueries.tar.gz", {"queries.dev.tsv": "1\tq\n", "collection.tsv": COLLECTION}
    )
    out = tmp_path / "corpus.parquet"
    assert convert.convert_corpus(src, "collection.tsv", "msmarco-tsv", out).rows_out == 3
    assert rows(out) == COLLECTION_ROWS


def test_msmarco_corpus_gz_and_zip(tmp_path):
    gz = write(tmp_path / "collection.tsv.gz", gzip.compress(COLLECTION.encode()))
    assert convert.convert_corpus(gz, None, "msmarco-tsv", tmp_path / "a.parquet").rows_out == 3
    zp = write_zip(tmp_path / "c.zip", {"dir/collection.tsv": COLLECTION})
    assert (
        convert.convert_corpus(zp, "dir/collection.tsv", "msmarco-tsv", tmp_path / "b.parquet").rows_out == 3
    )
    assert rows(tmp_path / "a.parquet") == rows(tmp_path / "b.parquet") == COLLECTION_ROWS


def test_msmarco_corpus_no_trailing_newline(tmp_path):
    src = write(tmp_path / "collection.tsv", COLLECTION.rstrip("\n"))
    counts = convert.convert_corpus(src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert (counts.lines_in, counts.rows_out) == (3, 3)
    assert rows(tmp_path / "c.parquet") == COLLECTION_ROWS


def test_msmarco_corpus_crlf_first_lines(tmp_path):
    src = write(tmp_path / "collection.tsv", COLLECTION.replace("\n", "\r\n", 1))
    convert.convert_corpus(src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert rows(tmp_path / "c.parquet") == COLLECTION_ROWS


@pytest.mark.parametrize("final_newline", [True, False])
def test_msmarco_corpus_crlf(tmp_path, final_newline):
    text = COLLECTION if final_newline else COLLECTION.rstrip("\n")
    src = write(tmp_path / "collection.tsv", text.replace("\n", "\r\n"))
    convert.convert_corpus(src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert rows(tmp_path / "c.parquet") == COLLECTION_ROWS


def test_msmarco_corpus_empty_line_in_the_middle(tmp_path):
    src = write(tmp_path / "collection.tsv", "0\ta\n\n2\tc\n")
    out = tmp_path / "corpus.parquet"
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", out)
    assert err.line == 2
    assert err.path == str(src)
    assert "expected 2 tab-separated fields (docid, text), found 0" in str(err)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_msmarco_corpus_three_fields(tmp_path):
    src = write(tmp_path / "collection.tsv", "0\ta\n1\tb\n2\tc\textra\n3\td\n")
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert err.line == 3
    assert "expected 2 tab-separated fields" in str(err)
    assert "found 3" in str(err)
    assert str(err).startswith(f"{src}:3: ")


def test_msmarco_corpus_non_digit_pid(tmp_path):
    src = write(tmp_path / "collection.tsv", "0\ta\nD12\tb\n")
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert err.line == 2
    assert "bad docid 'D12': expected an id of digits" in str(err)


def test_msmarco_corpus_invalid_utf8(tmp_path):
    src = write(tmp_path / "collection.tsv", b"0\ta\n1\tb\n2\tc \xff d\n3\td\n")
    out = tmp_path / "c.parquet"
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", out)
    assert err.line == 3
    assert "not valid UTF-8" in str(err)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_msmarco_corpus_invalid_utf8_in_a_later_block(tmp_path, small_blocks):
    heights = small_blocks(16)
    body = [b"%d\tpassage number %d" % (i, i) for i in range(40)]
    body[33] = b"33\tbroken \xc3 byte"
    src = write(tmp_path / "collection.tsv", b"\n".join(body) + b"\n")
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert err.line == 34
    assert "not valid UTF-8" in str(err)
    assert len(heights) > 10  # the error is in a later block


def test_msmarco_corpus_member_errors_name_the_member(tmp_path):
    src = write_tar(tmp_path / "cq.tar.gz", {"collection.tsv": "0\ta\nx\tb\n"})
    err = fail(convert.convert_corpus, src, "collection.tsv", "msmarco-tsv", tmp_path / "c.parquet")
    assert err.path == f"{src}!collection.tsv"
    assert err.line == 2


def test_corpus_duplicate_with_different_text(tmp_path):
    src = write(tmp_path / "collection.tsv", "0\ta\n1\tb\n2\tc\n1\tB\n")
    out = tmp_path / "c.parquet"
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", out)
    assert err.line == 4
    assert "duplicate docid '1' with different content (first at line 2)" in str(err)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_duplicate_conflict_names_the_differing_line(tmp_path):
    src = write(tmp_path / "collection.tsv", "1\ta\n2\tb\n1\ta\n1\tX\n")
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert "duplicate docid '1' with different content (first at line 1)" in str(err)
    assert err.line == 4


def test_corpus_identical_duplicate_is_removed(tmp_path):
    src = write(tmp_path / "collection.tsv", "0\ta\n1\tb\n0\ta\n2\tc\n1\tb\n0\ta\n")
    out = tmp_path / "c.parquet"
    counts = convert.convert_corpus(src, None, "msmarco-tsv", out)
    assert counts.lines_in == 6
    assert counts.rows_out == 3
    assert counts.notes == ["3 identical duplicate docids removed (first kept)"]
    assert rows(out) == [("0", "", "a"), ("1", "", "b"), ("2", "", "c")]
    assert leftovers(tmp_path) == []


def test_corpus_many_blocks_keeps_order(tmp_path, small_blocks):
    heights = small_blocks(64)
    pids = [str((i * 7919) % 1000) for i in range(300)]  # distinct, not sorted
    assert len(set(pids)) == 300
    text = "".join(f"{pid}\tpassage {pid} with some words\n" for pid in pids)
    src = write(tmp_path / "collection.tsv", text)
    counts = convert.convert_corpus(src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert (counts.lines_in, counts.rows_out, counts.notes) == (300, 300, [])
    assert rows(tmp_path / "c.parquet") == [(pid, "", f"passage {pid} with some words") for pid in pids]
    assert len(heights) > 50 and sum(heights) == 300


def test_corpus_many_blocks_identical_duplicates_across_blocks(tmp_path, small_blocks):
    small_blocks(32)
    body = [f"{i}\tpassage {i}" for i in range(50)]
    body.insert(40, "3\tpassage 3")  # line 41 repeats line 4, several blocks later
    body.insert(45, "10\tpassage 10")
    src = write(tmp_path / "collection.tsv", "\n".join(body) + "\n")
    counts = convert.convert_corpus(src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert (counts.lines_in, counts.rows_out) == (52, 50)
    assert counts.notes == ["2 identical duplicate docids removed (first kept)"]
    assert rows(tmp_path / "c.parquet") == [(str(i), "", f"passage {i}") for i in range(50)]


def test_corpus_many_blocks_conflicting_duplicate(tmp_path, small_blocks):
    small_blocks(32)
    body = [f"{i}\tpassage {i}" for i in range(50)] + ["5\tsomething else"]
    src = write(tmp_path / "collection.tsv", "\n".join(body) + "\n")
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", tmp_path / "c.parquet")
    assert err.line == 51
    assert "first at line 6" in str(err)


def test_corpus_many_blocks_error_in_a_later_block(tmp_path, small_blocks):
    small_blocks(32)
    body = [f"{i}\tpassage {i}" for i in range(50)]
    body[44] = "44\tpassage\t44"
    src = write(tmp_path / "collection.tsv", "\n".join(body) + "\n")
    out = tmp_path / "c.parquet"
    err = fail(convert.convert_corpus, src, None, "msmarco-tsv", out)
    assert err.line == 45
    assert "found 3" in str(err)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_corpus_unknown_format(tmp_path):
    src = write(tmp_path / "collection.tsv", COLLECTION)
    with pytest.raises(ValueError, match="unknown corpus format 'csv'"):
        convert.convert_corpus(src, None, "csv", tmp_path / "c.parquet")


# ---------------------------------------------------------------------------------------------------------
# Corpus: BEIR corpus.jsonl

BEIR_CORPUS = jsonl(
    {
        "_id": "4983",
        "title": "Microstructural development",
        "text": "Alterations of the architecture.",
        "metadata": {},
    },
    {"_id": "doc-5", "title": "", "text": "No title here."},
    {"_id": "x7", "text": "Title missing entirely.", "metadata": {"url": "u"}},
    {"_id": "n1", "title": None, "text": "Null title."},
)
BEIR_CORPUS_ROWS = [
    ("4983", "Microstructural development", "Alterations of the architecture."),
    ("doc-5", "", "No title here."),
    ("x7", "", "Title missing entirely."),
    ("n1", "", "Null title."),
]


def test_beir_corpus_happy_path_in_zip(tmp_path):
    src = write_zip(
        tmp_path / "scifact.zip", {"scifact/corpus.jsonl": BEIR_CORPUS, "scifact/queries.jsonl": ""}
    )
    out = tmp_path / "corpus.parquet"
    counts = convert.convert_corpus(src, "scifact/corpus.jsonl", "beir-corpus", out)
    assert counts == Counts(lines_in=4, rows_out=4, notes=[])
    assert rows(out) == BEIR_CORPUS_ROWS


def test_beir_corpus_unicode_text(tmp_path):
    src = write(
        tmp_path / "corpus.jsonl", jsonl({"_id": "a", "title": "Zürich", "text": "東京 \u00e9t\u00e9"})
    )
    convert.convert_corpus(src, None, "beir-corpus", tmp_path / "c.parquet")
    assert rows(tmp_path / "c.parquet") == [("a", "Zürich", "東京 été")]


def test_beir_corpus_id_with_space(tmp_path):
    src = write(
        tmp_path / "corpus.jsonl",
        jsonl({"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}, {"_id": "c d", "text": "z"}),
    )
    err = fail(convert.convert_corpus, src, None, "beir-corpus", tmp_path / "c.parquet")
    assert err.line == 3
    assert "bad docid 'c d': expected an id without spaces" in str(err)


def test_beir_corpus_bad_json(tmp_path):
    src = write(
        tmp_path / "corpus.jsonl",
        jsonl({"_id": "a", "text": "x"}) + '{"_id": "b", "text": "y"\n' + jsonl({"_id": "c", "text": "z"}),
    )
    err = fail(convert.convert_corpus, src, None, "beir-corpus", tmp_path / "c.parquet")
    assert err.line == 2
    assert "invalid JSON" in str(err)


@pytest.mark.parametrize("value,kind", [("[1, 2]", "list"), ('"text"', "str"), ("3", "int")])
def test_beir_corpus_not_an_object(tmp_path, value, kind):
    src = write(tmp_path / "corpus.jsonl", jsonl({"_id": "a", "text": "x"}) + value + "\n")
    err = fail(convert.convert_corpus, src, None, "beir-corpus", tmp_path / "c.parquet")
    assert err.line == 2
    assert f"expected a JSON object, found {kind}" in str(err)


@pytest.mark.parametrize("missing", ["_id", "text"])
def test_beir_corpus_missing_field(tmp_path, missing):
    bad = {"_id": "b", "title": "t", "text": "y"}
    del bad[missing]
    src = write(tmp_path / "corpus.jsonl", jsonl({"_id": "a", "text": "x"}, {"_id": "c", "text": "x"}, bad))
    err = fail(convert.convert_corpus, src, None, "beir-corpus", tmp_path / "c.parquet")
    assert err.line == 3
    assert f"missing or non-string field {missing!r}" in str(err)


def test_beir_corpus_field_of_wrong_type(tmp_path):
    src = write(tmp_path / "corpus.jsonl", jsonl({"_id": "a", "text": "x"}, {"_id": "b", "text": ["y"]}))
    err = fail(convert.convert_corpus, src, None, "beir-corpus", tmp_path / "c.parquet")
    assert err.line == 2


def test_beir_corpus_empty_line(tmp_path):
    src = write(
        tmp_path / "corpus.jsonl", jsonl({"_id": "a", "text": "x"}) + "\n" + jsonl({"_id": "b", "text": "y"})
    )
    err = fail(convert.convert_corpus, src, None, "beir-corpus", tmp_path / "c.parquet")
    assert err.line == 2
    assert "empty line, expected a JSON object" in str(err)


def test_beir_corpus_crlf(tmp_path):
    src = write(tmp_path / "corpus.jsonl", BEIR_CORPUS.replace("\n", "\r\n"))
    convert.convert_corpus(src, None, "beir-corpus", tmp_path / "c.parquet")
    assert rows(tmp_path / "c.parquet") == BEIR_CORPUS_ROWS


def test_beir_corpus_duplicates(tmp_path):
    a = {"_id": "a", "title": "T", "text": "x"}
    same = write(tmp_path / "same.jsonl", jsonl(a, {"_id": "b", "text": "y"}, dict(a, metadata={"m": 1})))
    counts = convert.convert_corpus(same, None, "beir-corpus", tmp_path / "s.parquet")
    assert (counts.lines_in, counts.rows_out) == (3, 2)
    assert counts.notes == ["1 identical duplicate docids removed (first kept)"]
    assert rows(tmp_path / "s.parquet") == [("a", "T", "x"), ("b", "", "y")]
    # Same text, different title: a conflict.
    diff = write(tmp_path / "diff.jsonl", jsonl(a, {"_id": "b", "text": "y"}, dict(a, title="U")))
    err = fail(convert.convert_corpus, diff, None, "beir-corpus", tmp_path / "d.parquet")
    assert err.line == 3
    assert "duplicate docid 'a' with different content (first at line 1)" in str(err)


def test_beir_corpus_many_blocks(tmp_path, small_blocks):
    small_blocks(100)
    docs = [{"_id": f"d{(i * 37) % 120}", "title": f"t{i}", "text": f"text {i}"} for i in range(120)]
    src = write(tmp_path / "corpus.jsonl", jsonl(*docs))
    counts = convert.convert_corpus(src, None, "beir-corpus", tmp_path / "c.parquet")
    assert (counts.lines_in, counts.rows_out) == (120, 120)
    assert rows(tmp_path / "c.parquet") == [(d["_id"], d["title"], d["text"]) for d in docs]


# ---------------------------------------------------------------------------------------------------------
# Queries: MS MARCO queries.*.tsv and BEIR queries.jsonl

MSMARCO_QUERIES = (
    "1048585\twhat is paula deen's brother\n"
    "2\tAndorra   is where\n"
    "524332\ttreating tension headaches without medication\n"
)


def test_msmarco_queries_happy_path(tmp_path):
    src = write_tar(tmp_path / "queries.tar.gz", {"queries.dev.tsv": MSMARCO_QUERIES})
    out = tmp_path / "queries-dev.parquet"
    counts = convert.convert_queries(src, "queries.dev.tsv", "msmarco-tsv", out)
    assert counts == Counts(lines_in=3, rows_out=3, notes=[])
    table = pl.read_parquet(out)
    assert table.columns == ["qid", "text"]
    assert table.rows() == [
        ("1048585", "what is paula deen's brother"),
        ("2", "Andorra   is where"),
        ("524332", "treating tension headaches without medication"),
    ]


def test_trec_dl_queries_gz(tmp_path):
    src = write(tmp_path / "msmarco-test2019-queries.tsv.gz", gzip.compress(b"1037798\twho is robert gray\n"))
    convert.convert_queries(src, None, "msmarco-tsv", tmp_path / "q.parquet")
    assert rows(tmp_path / "q.parquet") == [("1037798", "who is robert gray")]


def test_msmarco_queries_errors(tmp_path):
    three = write(tmp_path / "a.tsv", "1\ta\n2\tb\tc\n")
    err = fail(convert.convert_queries, three, None, "msmarco-tsv", tmp_path / "q.parquet")
    assert (err.line, "expected 2 tab-separated fields (qid, text), found 3" in str(err)) == (2, True)
    space = write(tmp_path / "b.tsv", "1\ta\n2\tb\nq 3\tc\n")
    err = fail(convert.convert_queries, space, None, "msmarco-tsv", tmp_path / "q.parquet")
    assert err.line == 3
    assert "bad qid 'q 3': expected an id without spaces" in str(err)
    empty = write(tmp_path / "c.tsv", "")
    err = fail(convert.convert_queries, empty, None, "msmarco-tsv", tmp_path / "q.parquet")
    assert err.line is None
    assert "no queries" in str(err)
    utf = write(tmp_path / "d.tsv", b"1\ta\n2\t\xe9\n")
    assert fail(convert.convert_queries, utf, None, "msmarco-tsv", tmp_path / "q.parquet").line == 2
    assert not (tmp_path / "q.parquet").exists()


def test_queries_duplicates(tmp_path):
    same = write(tmp_path / "a.tsv", "1\ta\n2\tb\n1\ta\n")
    counts = convert.convert_queries(same, None, "msmarco-tsv", tmp_path / "q.parquet")
    assert (counts.lines_in, counts.rows_out) == (3, 2)
    assert counts.notes == ["1 identical duplicate qids removed (first kept)"]
    assert rows(tmp_path / "q.parquet") == [("1", "a"), ("2", "b")]
    diff = write(tmp_path / "b.tsv", "1\ta\n2\tb\n3\tc\n2\tB\n")
    err = fail(convert.convert_queries, diff, None, "msmarco-tsv", tmp_path / "r.parquet")
    assert err.line == 4
    assert "duplicate qid '2' with different content (first at line 2)" in str(err)


BEIR_QUERIES = jsonl(
    {"_id": "0", "text": "0-dimensional biomaterials lack inductive properties.", "metadata": {}},
    {"_id": "2", "text": "1 in 5 million in UK have abnormal PrP positivity."},
    {"_id": "13", "text": "5% of perinatal mortality is due to low birth weight.", "metadata": {"x": 1}},
    {"_id": "36", "text": "A deficiency of vitamin B12 increases blood levels."},
)


def test_beir_queries_happy_path(tmp_path):
    src = write_zip(tmp_path / "scifact.zip", {"scifact/queries.jsonl": BEIR_QUERIES})
    counts = convert.convert_queries(src, "scifact/queries.jsonl", "beir-queries", tmp_path / "q.parquet")
    assert counts == Counts(lines_in=4, rows_out=4, notes=[])
    assert [qid for qid, _ in rows(tmp_path / "q.parquet")] == ["0", "2", "13", "36"]
    assert rows(tmp_path / "q.parquet")[2] == ("13", "5% of perinatal mortality is due to low birth weight.")


def test_beir_queries_judged_only(tmp_path):
    src = write(tmp_path / "queries.jsonl", BEIR_QUERIES)
    qrels = write(tmp_path / "test.trec", "36 0 d1 1\n0 0 d2 1\n0 0 d3 0\n")
    counts = convert.convert_queries(src, None, "beir-queries", tmp_path / "q.parquet", restrict_qrels=qrels)
    assert (counts.lines_in, counts.rows_out) == (4, 2)
    assert counts.notes == ["2 queries without judgments in test.trec left out"]
    # The file's order is kept, not the qrels' order.
    assert [qid for qid, _ in rows(tmp_path / "q.parquet")] == ["0", "36"]


def test_queries_judged_query_missing(tmp_path):
    src = write(tmp_path / "queries.jsonl", BEIR_QUERIES)
    qrels = write(tmp_path / "test.trec", "0 0 d1 1\n99 0 d1 1\n77 0 d2 0\n")
    out = tmp_path / "q.parquet"
    err = fail(convert.convert_queries, src, None, "beir-queries", out, restrict_qrels=qrels)
    assert err.line is None
    assert err.path == str(src)
    assert f"2 queries judged in {qrels} are missing, e.g. '77'" in str(err)
    assert not out.exists()


def test_beir_queries_errors(tmp_path):
    space = write(tmp_path / "a.jsonl", jsonl({"_id": "1", "text": "a"}, {"_id": "2 b", "text": "b"}))
    err = fail(convert.convert_queries, space, None, "beir-queries", tmp_path / "q.parquet")
    assert (err.line, "bad qid '2 b'" in str(err)) == (2, True)
    notext = write(
        tmp_path / "b.jsonl", jsonl({"_id": "1", "text": "a"}, {"_id": "2", "text": "b"}, {"_id": "3"})
    )
    err = fail(convert.convert_queries, notext, None, "beir-queries", tmp_path / "q.parquet")
    assert (err.line, "missing or non-string field 'text'" in str(err)) == (3, True)
    badjson = write(tmp_path / "c.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", text: "b"}\n')
    err = fail(convert.convert_queries, badjson, None, "beir-queries", tmp_path / "q.parquet")
    assert (err.line, "invalid JSON" in str(err)) == (2, True)


def test_queries_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown queries format"):
        convert.convert_queries(write(tmp_path / "a.tsv", "1\ta\n"), None, "trec", tmp_path / "q.parquet")


# ---------------------------------------------------------------------------------------------------------
# Qrels: TREC (qid iter docid rel, whitespace) and BEIR (TSV with header)


def test_trec_qrels_whitespace_graded_sorted(tmp_path):
    src = write(
        tmp_path / "2019qrels-pass.txt",
        "19335 Q0 1017759 0\n"
        "19335\t0\t1082489  3\n"
        "  1037798  Q0\t7 -1 \n"
        "19335 Q0 1000 2\n"
        "104861 0 1017759 1\n",
    )
    out = tmp_path / "qrels-test.trec"
    counts = convert.convert_qrels(src, None, "trec-qrels", out)
    assert (counts.lines_in, counts.rows_out) == (5, 5)
    assert counts.notes == ["3 queries, 3 positive judgments"]
    # Sorted by (qid, docid) as strings; iteration column normalized to 0; single spaces.
    assert out.read_text() == (
        "1037798 0 7 -1\n104861 0 1017759 1\n19335 0 1000 2\n19335 0 1017759 0\n19335 0 1082489 3\n"
    )
    assert convert.read_qrels(out).rows() == [
        ("1037798", "7", -1),
        ("104861", "1017759", 1),
        ("19335", "1000", 2),
        ("19335", "1017759", 0),
        ("19335", "1082489", 3),
    ]
    assert convert.read_qrels(out).schema == pl.Schema(
        {"qid": pl.String, "docid": pl.String, "rel": pl.Int32}
    )


def test_trec_qrels_crlf_and_no_trailing_newline(tmp_path):
    src = write(tmp_path / "q.txt", "2 0 b 1\r\n1 0 a 0\r\n1 0 c 2")
    convert.convert_qrels(src, None, "trec-qrels", tmp_path / "q.trec")
    assert (tmp_path / "q.trec").read_text() == "1 0 a 0\n1 0 c 2\n2 0 b 1\n"


def test_msmarco_train_qrels_tab_separated(tmp_path):
    src = write(tmp_path / "qrels.train.tsv", "1185869\t0\t0\t1\n1185868\t0\t16\t1\n")
    counts = convert.convert_qrels(src, None, "trec-qrels", tmp_path / "q.trec")
    assert counts.notes == ["2 queries, 2 positive judgments"]
    assert (tmp_path / "q.trec").read_text() == "1185868 0 16 1\n1185869 0 0 1\n"


def test_trec_qrels_conflicting_duplicate(tmp_path):
    src = write(tmp_path / "q.txt", "1 0 a 1\n1 0 b 1\n2 0 a 0\n1 0 a 2\n")
    out = tmp_path / "q.trec"
    err = fail(convert.convert_qrels, src, None, "trec-qrels", out)
    assert err.line == 4
    assert "duplicate pair '1 a' with different content (first at line 1)" in str(err)
    assert not out.exists()


def test_trec_qrels_identical_duplicate(tmp_path):
    src = write(tmp_path / "q.txt", "1 0 a 1\n1 Q0 b 0\n1 0 a 1\n")
    counts = convert.convert_qrels(src, None, "trec-qrels", tmp_path / "q.trec")
    assert (counts.lines_in, counts.rows_out) == (3, 2)
    assert counts.notes == ["1 identical duplicate judgments removed", "1 queries, 1 positive judgments"]
    assert (tmp_path / "q.trec").read_text() == "1 0 a 1\n1 0 b 0\n"


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("3 0 c 1.5", "bad rel '1.5': expected an integer relevance grade"),
        ("3 0 c one", "bad rel 'one': expected an integer relevance grade"),
        ("3 0 c", "expected 4 whitespace-separated fields (qid, iter, docid, rel), found 3"),
        ("3 0 c 1 x", "found 5"),
        ("", "found 0"),
    ],
)
def test_trec_qrels_bad_line(tmp_path, bad, reason):
    src = write(tmp_path / "q.txt", f"1 0 a 1\n2 0 b 0\n{bad}\n4 0 d 1\n")
    err = fail(convert.convert_qrels, src, None, "trec-qrels", tmp_path / "q.trec")
    assert err.line == 3
    assert reason in str(err)


def test_trec_qrels_empty(tmp_path):
    err = fail(convert.convert_qrels, write(tmp_path / "q.txt", ""), None, "trec-qrels", tmp_path / "q.trec")
    assert err.line is None
    assert "no judgments" in str(err)


def test_trec_qrels_many_blocks(tmp_path, small_blocks):
    small_blocks(20)
    body = "".join(f"{i % 7} 0 d{i} {i % 3}\n" for i in range(60))
    src = write(tmp_path / "q.txt", body + "9 0 x 1 extra\n")
    err = fail(convert.convert_qrels, src, None, "trec-qrels", tmp_path / "q.trec")
    assert err.line == 61
    src = write(tmp_path / "q.txt", body)
    assert convert.convert_qrels(src, None, "trec-qrels", tmp_path / "q.trec").rows_out == 60
    assert (
        convert.read_qrels(tmp_path / "q.trec")
        .sort("qid", "docid")
        .equals(convert.read_qrels(tmp_path / "q.trec"))
    )


BEIR_QRELS = "query-id\tcorpus-id\tscore\n1\t31715818\t1\n13\t1606628\t1\n1\tdoc 9\t0\n"


def test_beir_qrels_happy_path(tmp_path):
    body = "query-id\tcorpus-id\tscore\n13\t1606628\t1\n1\t31715818\t1\n1\t42\t0\n13\t7\t2\n"
    src = write_zip(tmp_path / "scifact.zip", {"scifact/qrels/test.tsv": body})
    out = tmp_path / "qrels-test.trec"
    counts = convert.convert_qrels(src, "scifact/qrels/test.tsv", "beir-qrels", out)
    assert (counts.lines_in, counts.rows_out) == (5, 4)
    assert counts.notes == ["2 queries, 3 positive judgments"]
    assert out.read_text() == "1 0 31715818 1\n1 0 42 0\n13 0 1606628 1\n13 0 7 2\n"


def test_beir_qrels_id_with_space(tmp_path):
    err = fail(
        convert.convert_qrels, write(tmp_path / "t.tsv", BEIR_QRELS), None, "beir-qrels", tmp_path / "q.trec"
    )
    assert err.line == 4
    assert "bad docid 'doc 9': expected an id without spaces" in str(err)


@pytest.mark.parametrize(
    "header",
    [
        "query-id\tcorpus-id\trelevance",
        "query-id corpus-id score",
        "1\t31715818\t1",
        "",
        "qid\tdocid\tscore\textra",
    ],
)
def test_beir_qrels_bad_header(tmp_path, header):
    src = write(tmp_path / "t.tsv", f"{header}\n13\t1606628\t1\n")
    err = fail(convert.convert_qrels, src, None, "beir-qrels", tmp_path / "q.trec")
    assert err.line == 1
    assert "expected the header 'query-id<TAB>corpus-id<TAB>score'" in str(err)


def test_beir_qrels_header_crlf(tmp_path):
    src = write(tmp_path / "t.tsv", "query-id\tcorpus-id\tscore\r\n1\ta\t1\r\n2\tb\t0\n")
    convert.convert_qrels(src, None, "beir-qrels", tmp_path / "q.trec")
    assert (tmp_path / "q.trec").read_text() == "1 0 a 1\n2 0 b 0\n"


def test_beir_qrels_crlf(tmp_path):
    src = write(tmp_path / "t.tsv", "query-id\tcorpus-id\tscore\r\n1\ta\t1\r\n2\tb\t0\r\n")
    convert.convert_qrels(src, None, "beir-qrels", tmp_path / "q.trec")
    assert (tmp_path / "q.trec").read_text() == "1 0 a 1\n2 0 b 0\n"


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("2\tb", "expected 3 tab-separated fields (qid, docid, rel), found 2"),
        ("2 b 1", "found 1"),
        ("2\tb\t1\t0", "found 4"),
        ("2\tb\thigh", "bad rel 'high': expected an integer relevance grade"),
        ("2\tb\t", "bad rel ''"),
        ("", "found 0"),
    ],
)
def test_beir_qrels_bad_line(tmp_path, bad, reason):
    src = write(tmp_path / "t.tsv", f"query-id\tcorpus-id\tscore\n1\ta\t1\n{bad}\n3\tc\t1\n")
    err = fail(convert.convert_qrels, src, None, "beir-qrels", tmp_path / "q.trec")
    assert err.line == 3
    assert reason in str(err)


def test_beir_qrels_negative_and_conflict(tmp_path):
    src = write(tmp_path / "t.tsv", "query-id\tcorpus-id\tscore\n1\ta\t-1\n1\tb\t1\n")
    convert.convert_qrels(src, None, "beir-qrels", tmp_path / "q.trec")
    assert (tmp_path / "q.trec").read_text() == "1 0 a -1\n1 0 b 1\n"
    src = write(tmp_path / "u.tsv", "query-id\tcorpus-id\tscore\n1\ta\t1\n1\tb\t1\n1\ta\t0\n")
    err = fail(convert.convert_qrels, src, None, "beir-qrels", tmp_path / "r.trec")
    assert err.line == 4
    assert "first at line 2" in str(err)


def test_beir_qrels_header_only(tmp_path):
    src = write(tmp_path / "t.tsv", "query-id\tcorpus-id\tscore\n")
    err = fail(convert.convert_qrels, src, None, "beir-qrels", tmp_path / "q.trec")
    assert "no judgments" in str(err)


def test_beir_qrels_many_blocks_header_checked_once(tmp_path, small_blocks):
    small_blocks(16)
    body = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(30))
    counts = convert.convert_qrels(write(tmp_path / "t.tsv", body), None, "beir-qrels", tmp_path / "q.trec")
    assert (counts.lines_in, counts.rows_out) == (31, 30)


def test_qrels_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown qrels format"):
        convert.convert_qrels(write(tmp_path / "q.txt", "1 0 a 1\n"), None, "csv", tmp_path / "q.trec")


def test_read_qrels_empty_file(tmp_path):
    got = convert.read_qrels(write(tmp_path / "q.trec", ""))
    assert got.is_empty()
    assert got.columns == ["qid", "docid", "rel"]


# ---------------------------------------------------------------------------------------------------------
# Training pool: Tevatron msmarco-passage JSONL


def passage(docid: str) -> dict:
    return {"docid": docid, "title": "-", "text": f"text of {docid}"}


def tev(qid: str, query: str, pos: list[str], neg: list[str]) -> dict:
    return {
        "query_id": qid,
        "query": query,
        "positive_passages": [passage(d) for d in pos],
        "negative_passages": [passage(d) for d in neg],
    }


def test_pool_happy_path_keeps_order_of_negatives(tmp_path):
    src = write(
        tmp_path / "train.jsonl",
        jsonl(
            tev("3", ")what was the immediate impact", ["9", "1"], ["877", "12", "5", "300"]),
            tev("1", "where is z", ["4"], []),
            tev("2", "what is x", ["8"], ["99", "98", "100"]),
        ),
    )
    out = tmp_path / "train-pool.parquet"
    counts = train_pool.convert_pool(src, None, "tevatron", out)
    assert counts == Counts(lines_in=3, rows_out=3, notes=["4 positives, 7 negatives"])
    table = pl.read_parquet(out)
    assert table.columns == ["qid", "query", "positives", "negatives"]
    assert table.schema["positives"] == pl.List(pl.String)
    assert table.rows() == [
        ("3", ")what was the immediate impact", ["9", "1"], ["877", "12", "5", "300"]),
        ("1", "where is z", ["4"], []),
        ("2", "what is x", ["8"], ["99", "98", "100"]),
    ]


def test_pool_negative_that_is_a_positive_is_removed(tmp_path):
    src = write(
        tmp_path / "train.jsonl",
        jsonl(
            tev("1", "q one", ["d1"], ["d9", "d1", "d3", "d2", "d0"]),
            tev("2", "q two", ["d5", "d6"], ["d6", "d7", "d5", "d1"]),
        ),
    )
    counts = train_pool.convert_pool(src, None, "tevatron", tmp_path / "p.parquet")
    assert counts.rows_out == 2
    assert counts.notes == [
        "3 negatives that were also positives of their query removed",
        "3 positives, 6 negatives",
    ]
    assert rows(tmp_path / "p.parquet") == [
        ("1", "q one", ["d1"], ["d9", "d3", "d2", "d0"]),
        ("2", "q two", ["d5", "d6"], ["d7", "d1"]),
    ]


def test_pool_repeated_negatives_are_removed_and_counted(tmp_path):
    src = write(
        tmp_path / "train.jsonl",
        jsonl(tev("1", "q", ["a"], ["c", "b", "c", "a", "d", "b"]), tev("2", "r", ["x"], ["y"])),
    )
    counts = train_pool.convert_pool(src, None, "tevatron", tmp_path / "p.parquet")
    assert counts.notes == [
        "2 repeated negatives removed",
        "1 negatives that were also positives of their query removed",
        "2 positives, 4 negatives",
    ]
    assert rows(tmp_path / "p.parquet") == [("1", "q", ["a"], ["c", "b", "d"]), ("2", "r", ["x"], ["y"])]


def test_pool_repeated_positives_are_reported(tmp_path):
    src = write(tmp_path / "train.jsonl", jsonl(tev("1", "q", ["a", "b", "a"], ["c"])))
    counts = train_pool.convert_pool(src, None, "tevatron", tmp_path / "p.parquet")
    assert rows(tmp_path / "p.parquet") == [("1", "q", ["a", "b"], ["c"])]
    assert any("removed" in note for note in counts.notes), counts.notes


@pytest.mark.parametrize("field,value", [("positive_passages", "d1"), ("query", ["q"])])
def test_pool_field_of_wrong_type(tmp_path, field, value):
    src = write(
        tmp_path / "t.jsonl",
        jsonl(tev("1", "a", ["x"], []), dict(tev("2", "b", ["x"], []), **{field: value})),
    )
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert err.line == 2


def test_pool_in_gz(tmp_path):
    src = write(tmp_path / "train.jsonl.gz", gzip.compress(jsonl(tev("1", "q", ["a"], ["c", "b"])).encode()))
    train_pool.convert_pool(src, None, "tevatron", tmp_path / "p.parquet")
    assert rows(tmp_path / "p.parquet") == [("1", "q", ["a"], ["c", "b"])]


@pytest.mark.parametrize(
    "field,reason",
    [
        ("query_id", "missing or non-string field 'query_id'"),
        ("query", "missing or non-string field 'query'"),
        ("positive_passages", "missing list field 'positive_passages'"),
        ("negative_passages", "missing list field 'negative_passages'"),
    ],
)
def test_pool_missing_field(tmp_path, field, reason):
    bad = tev("3", "c", ["z"], ["y"])
    del bad[field]
    src = write(tmp_path / "t.jsonl", jsonl(tev("1", "a", ["x"], ["y"]), tev("2", "b", ["x"], []), bad))
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert err.line == 3
    assert reason in str(err)


def test_pool_no_positive(tmp_path):
    src = write(tmp_path / "t.jsonl", jsonl(tev("1", "a", ["x"], ["y"]), tev("2", "b", [], ["y"])))
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert err.line == 2
    assert "query has no positive passage" in str(err)


def test_pool_passage_without_docid(tmp_path):
    bad = tev("2", "b", ["x"], ["y"])
    bad["negative_passages"].append({"title": "t", "text": "no id"})
    src = write(tmp_path / "t.jsonl", jsonl(tev("1", "a", ["x"], ["y"]), bad))
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert err.line == 2
    assert "a passage in 'negative_passages' has no string 'docid'" in str(err)


def test_pool_bad_ids_and_json(tmp_path):
    src = write(tmp_path / "t.jsonl", jsonl(tev("1", "a", ["x"], ["y"]), tev("2", "b", ["x"], ["y z"])))
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert (err.line, "bad docid 'y z'" in str(err)) == (2, True)
    src = write(tmp_path / "u.jsonl", jsonl(tev("1", "a", ["x"], []), tev("2 2", "b", ["x"], [])))
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert (err.line, "bad qid '2 2'" in str(err)) == (2, True)
    src = write(tmp_path / "v.jsonl", jsonl(tev("1", "a", ["x"], [])) + "{not json}\n")
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert (err.line, "invalid JSON" in str(err)) == (2, True)


def test_pool_duplicates(tmp_path):
    a = tev("1", "a", ["x"], ["y", "z"])
    src = write(tmp_path / "t.jsonl", jsonl(a, tev("2", "b", ["x"], []), a))
    counts = train_pool.convert_pool(src, None, "tevatron", tmp_path / "p.parquet")
    assert (counts.lines_in, counts.rows_out) == (3, 2)
    assert counts.notes[0] == "1 identical duplicate queries removed"
    assert [r[0] for r in rows(tmp_path / "p.parquet")] == ["1", "2"]
    src = write(tmp_path / "u.jsonl", jsonl(a, tev("2", "b", ["x"], []), tev("1", "a", ["x"], ["z", "y"])))
    err = fail(train_pool.convert_pool, src, None, "tevatron", tmp_path / "p.parquet")
    assert err.line == 3
    assert "duplicate qid '1' with different content (first at line 1)" in str(err)


def test_pool_empty_and_unknown_format(tmp_path):
    err = fail(
        train_pool.convert_pool, write(tmp_path / "t.jsonl", ""), None, "tevatron", tmp_path / "p.parquet"
    )
    assert "no training queries" in str(err)
    with pytest.raises(ValueError, match="unknown pool format"):
        train_pool.convert_pool(tmp_path / "t.jsonl", None, "jsonl", tmp_path / "p.parquet")


# ---------------------------------------------------------------------------------------------------------
# Answers: MS MARCO QnA v2.1, NQ-open, HotpotQA


def queries_file(tmp_path: Path, qs: list[tuple[str, str]]) -> Path:
    path = tmp_path / "queries.parquet"
    pl.DataFrame(
        {"qid": [q for q, _ in qs], "text": [t for _, t in qs]}, schema={"qid": pl.String, "text": pl.String}
    ).write_parquet(path)
    return path


def qna(rows_: list[tuple[int, list[str]]]) -> dict:
    """MS MARCO QnA v2.1 layout: one object per column, keyed by row number as a string."""
    data = {
        "answers": {},
        "passages": {},
        "query": {},
        "query_id": {},
        "query_type": {},
        "wellFormedAnswers": {},
    }
    for row, (qid, answers) in enumerate(rows_):
        data["answers"][str(row)] = answers
        data["passages"][str(row)] = [{"is_selected": 0, "passage_text": "p", "url": "http://x"}]
        data["query"][str(row)] = f"query {qid}"
        data["query_id"][str(row)] = qid
        data["query_type"][str(row)] = "DESCRIPTION"
        data["wellFormedAnswers"][str(row)] = "[]"
    return data


def test_msmarco_qna_answers(tmp_path):
    src = write(
        tmp_path / "dev_v2.1.json.gz",
        gzip.compress(
            json.dumps(
                qna(
                    [
                        (1102432, ["Kalyan is a suburb."]),
                        (1102431, ["No Answer Present."]),
                        (1102430, [" Yes ", "No Answer Present.", "  "]),
                        (99, ["not in the queries file"]),
                    ]
                )
            ).encode()
        ),
    )
    qs = queries_file(tmp_path, [("1102430", "a"), ("1102431", "b"), ("5", "c"), ("1102432", "d")])
    out = tmp_path / "answers-dev.parquet"
    counts = gold_answers.convert_answers(src, None, "msmarco-qna", qs, out)
    assert counts.lines_in == 4
    assert counts.rows_out == 2
    assert counts.notes == ["2 of 4 queries have no answer and are left out"]
    table = pl.read_parquet(out)
    assert table.schema == pl.Schema({"qid": pl.String, "answers": pl.List(pl.String)})
    assert table.rows() == [("1102430", ["Yes"]), ("1102432", ["Kalyan is a suburb."])]


def test_msmarco_qna_errors(tmp_path):
    qs = queries_file(tmp_path, [("1", "a")])
    layout = write(tmp_path / "a.json", json.dumps([{"query_id": 1}]))
    err = fail(gold_answers.convert_answers, layout, None, "msmarco-qna", qs, tmp_path / "o.parquet")
    assert "expected the QnA v2.1 layout" in str(err)
    not_list = write(
        tmp_path / "b.json", json.dumps({"query_id": {"0": 1, "1": 2}, "answers": {"0": ["x"], "1": "y"}})
    )
    err = fail(gold_answers.convert_answers, not_list, None, "msmarco-qna", qs, tmp_path / "o.parquet")
    assert "row 1: 'answers' must be a list of strings" in str(err)
    bad_json = write(tmp_path / "c.json", '{\n  "query_id": {"0": 1},\n  "answers": {"0": ["x"],}\n}\n')
    err = fail(gold_answers.convert_answers, bad_json, None, "msmarco-qna", qs, tmp_path / "o.parquet")
    assert err.line == 3
    assert "invalid JSON" in str(err)
    bad_utf8 = write(tmp_path / "d.json", b'{\n"query_id": {"0": 1},\n"answers": {"0": ["\xff"]}}\n')
    err = fail(gold_answers.convert_answers, bad_utf8, None, "msmarco-qna", qs, tmp_path / "o.parquet")
    assert err.line == 3
    assert "not valid UTF-8" in str(err)
    assert not (tmp_path / "o.parquet").exists()


def test_normalize_question():
    assert gold_answers.normalize_question("Who  wrote 'The Hobbit'?") == "who wrote the hobbit"
    assert gold_answers.normalize_question("  WHEN did\tthe war end!! ") == "when did the war end"


def test_nq_open_answers_join_by_normalized_text(tmp_path):
    src = write(
        tmp_path / "NQ-open.dev.jsonl",
        jsonl(
            {
                "question": "when was the last time anyone was on the moon",
                "answer": ["14 December 1972 UTC", "December 1972"],
            },
            {
                "question": "who wrote he ain't heavy he's my brother lyrics",
                "answer": ["Bobby Scott", "Bob Russell"],
            },
            {
                "question": "When was the last time anyone was on the moon?",
                "answer": ["December 1972", "1972"],
            },
            {"question": "not among the queries", "answer": ["x"]},
        ),
    )
    qs = queries_file(
        tmp_path,
        [
            ("test0", "When was the last time anyone was on the Moon?"),
            ("test1", "unanswered question"),
            ("test2", "Who wrote He Ain't Heavy, He's My Brother lyrics"),
        ],
    )
    out = tmp_path / "answers.parquet"
    counts = gold_answers.convert_answers(src, None, "nq-open", qs, out)
    assert counts.lines_in == 4
    assert counts.rows_out == 2
    assert counts.notes == ["1 of 3 queries have no answer and are left out"]
    assert rows(out) == [
        ("test0", ["14 December 1972 UTC", "December 1972", "1972"]),
        ("test2", ["Bobby Scott", "Bob Russell"]),
    ]


def test_nq_open_errors(tmp_path):
    qs = queries_file(tmp_path, [("test0", "a")])
    empty = write(
        tmp_path / "a.jsonl", jsonl({"question": "a", "answer": ["x"]}, {"question": "b", "answer": []})
    )
    err = fail(gold_answers.convert_answers, empty, None, "nq-open", qs, tmp_path / "o.parquet")
    assert err.line == 2
    assert "'answer' must be a non-empty list of strings" in str(err)
    missing = write(tmp_path / "b.jsonl", jsonl({"question": "a", "answer": ["x"]}, {"answer": ["y"]}))
    err = fail(gold_answers.convert_answers, missing, None, "nq-open", qs, tmp_path / "o.parquet")
    assert (err.line, "missing or non-string field 'question'" in str(err)) == (2, True)
    noanswer = write(tmp_path / "c.jsonl", jsonl({"question": "a", "answer": ["x"]}, {"question": "b"}))
    assert fail(gold_answers.convert_answers, noanswer, None, "nq-open", qs, tmp_path / "o.parquet").line == 2
    badjson = write(
        tmp_path / "d.jsonl", '{"question": "a", "answer": ["x"]}\n{"question": "b", "answer": [x]}\n'
    )
    err = fail(gold_answers.convert_answers, badjson, None, "nq-open", qs, tmp_path / "o.parquet")
    assert (err.line, "invalid JSON" in str(err)) == (2, True)


def test_hotpotqa_answers_join_by_id(tmp_path):
    src = write(
        tmp_path / "hotpot_dev_distractor_v1.json",
        json.dumps(
            [
                {
                    "_id": "5a8b57f25542995d1e6f1371",
                    "answer": "yes",
                    "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
                },
                {"_id": "5a8c7595554299585d9e36b6", "answer": "Chief of Protocol", "question": "q2"},
                {"_id": "5a85ea095542994775f606a8", "answer": "  ", "question": "q3"},
                {"_id": "elsewhere", "answer": "z", "question": "q4"},
            ],
            indent=1,
        ),
    )
    qs = queries_file(
        tmp_path,
        [
            ("5a8c7595554299585d9e36b6", "q2"),
            ("5a85ea095542994775f606a8", "q3"),
            ("5a8b57f25542995d1e6f1371", "Were Scott Derrickson and Ed Wood of the same nationality?"),
            ("5aunknown", "q5"),
        ],
    )
    counts = gold_answers.convert_answers(src, None, "hotpotqa", qs, tmp_path / "a.parquet")
    assert counts.lines_in == 4
    assert counts.rows_out == 2
    assert counts.notes == ["2 of 4 queries have no answer and are left out"]
    assert rows(tmp_path / "a.parquet") == [
        ("5a8c7595554299585d9e36b6", ["Chief of Protocol"]),
        ("5a8b57f25542995d1e6f1371", ["yes"]),
    ]


def test_hotpotqa_errors(tmp_path):
    qs = queries_file(tmp_path, [("1", "a")])
    err = fail(
        gold_answers.convert_answers,
        write(tmp_path / "a.json", "{}"),
        None,
        "hotpotqa",
        qs,
        tmp_path / "o.parquet",
    )
    assert "expected a JSON list of HotpotQA examples" in str(err)
    bad = write(tmp_path / "b.json", json.dumps([{"_id": "1", "answer": "x"}, {"_id": "2"}]))
    err = fail(gold_answers.convert_answers, bad, None, "hotpotqa", qs, tmp_path / "o.parquet")
    assert "example 1: expected an object with string '_id' and 'answer'" in str(err)
    broken = write(tmp_path / "c.json", '[\n{"_id": "1", "answer": "x"},\n{"_id": "2" "answer": "y"}\n]')
    err = fail(gold_answers.convert_answers, broken, None, "hotpotqa", qs, tmp_path / "o.parquet")
    assert err.line == 3
    assert "invalid JSON" in str(err)


def test_answers_none_found(tmp_path):
    qs = queries_file(tmp_path, [("1", "a"), ("2", "b")])
    src = write(tmp_path / "h.json", json.dumps([{"_id": "9", "answer": "x"}]))
    counts = gold_answers.convert_answers(src, None, "hotpotqa", qs, tmp_path / "o.parquet")
    assert counts.rows_out == 0
    assert counts.notes == ["2 of 2 queries have no answer and are left out"]
    table = pl.read_parquet(tmp_path / "o.parquet")
    assert table.is_empty()
    assert table.schema == pl.Schema({"qid": pl.String, "answers": pl.List(pl.String)})


def test_answers_unknown_format(tmp_path):
    qs = queries_file(tmp_path, [("1", "a")])
    with pytest.raises(ValueError, match="unknown answers format"):
        gold_answers.convert_answers(
            write(tmp_path / "x.json", "[]"), None, "squad", qs, tmp_path / "o.parquet"
        )
