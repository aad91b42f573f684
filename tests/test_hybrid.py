"""The Hybrid Test (PAPER-SPEC B.9): query sample, pool union, judge tasks, gold qrels, restricted runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from utilanno.annotate import pools, prompts, steps
from utilanno.evaluate import hybrid, runfiles

REPO = Path(__file__).resolve().parents[1]


def cli():
    spec = importlib.util.spec_from_file_location("hybrid_cli", REPO / "scripts" / "hybrid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cli


@pytest.fixture
def world(tmp_path):
    """Six dev queries; q3 has no answer and q4 only a blank one; two runs that agree on some passages."""
    qids = [f"q{i}" for i in range(6)]
    pl.DataFrame({"qid": qids, "text": [f"question {q}" for q in qids]}).write_parquet(tmp_path / "q.parquet")
    answers = [["a0"], ["a1", "other"], ["a2"], [], ["  "], ["a5"]]
    pl.DataFrame({"qid": qids, "answers": answers}).write_parquet(tmp_path / "a.parquet")
    (tmp_path / "qrels.trec").write_text("q0 0 d0 1\nq1 0 d9 1\nq1 0 d1 0\nq2 0 d2 2\n")
    docs = [f"d{i}" for i in range(12)]
    pl.DataFrame(
        {"docid": docs, "title": [f"T{d}" for d in docs], "text": [f"text {d}" for d in docs]}
    ).write_parquet(tmp_path / "corpus.parquet")
    lines_a = [f"{q} Q0 d{(i + j) % 12} {j + 1} {10 - j} a\n" for i, q in enumerate(qids) for j in range(4)]
    lines_b = [
        f"{q} Q0 d{(i + 2 * j) % 12} {j + 1} {10 - j} b\n" for i, q in enumerate(qids) for j in range(4)
    ]
    (tmp_path / "a.trec").write_text("".join(lines_a))
    (tmp_path / "b.trec").write_text("".join(lines_b))
    return tmp_path


def test_sample_skips_queries_without_an_answer_and_is_seeded(world):
    sample, counts = hybrid.sample_queries(world / "q.parquet", world / "a.parquet", 3, seed=1)
    assert counts == {"dev_queries": 6, "with_answer": 4, "skipped_without_answer": 2, "sampled": 3}
    assert set(sample["qid"]) <= {"q0", "q1", "q2", "q5"} and sample["qid"].to_list() == sorted(sample["qid"])
    again, _ = hybrid.sample_queries(world / "q.parquet", world / "a.parquet", 3, seed=1)
    assert again.equals(sample)
    every, counts = hybrid.sample_queries(world / "q.parquet", world / "a.parquet", 99, seed=1)
    assert every["qid"].to_list() == ["q0", "q1", "q2", "q5"] and counts["sampled"] == 4
    assert dict(zip(every["qid"], every["answer"], strict=True))["q1"] == "a1"  # the first answer


def test_union_pools_take_each_runs_top_depth(world):
    pools = hybrid.union_pools([world / "a.trec", world / "b.trec"], ["q0", "q1"], depth=2)
    # q0: a -> d0, d1; b -> d0, d2. q1: a -> d1, d2; b -> d1, d3
    assert pools == {"q0": ["d0", "d1", "d2"], "q1": ["d1", "d2", "d3"]}


def test_pool_shards_hold_the_union_in_a_seeded_order_with_windows(world):
    outs = [world / "out" / f"shard-{k}.parquet" for k in range(2)]
    args = (
        [world / "a.trec", world / "b.trec"],
        world / "q.parquet",
        world / "a.parquet",
        world / "qrels.trec",
    )
    stats = hybrid.build(*args, world / "corpus.parquet", outs, 4, 3, 3, 1, 7, world / "pool.json")
    table = pl.concat([pl.read_parquet(o) for o in outs])
    assert table.height == 4 == stats["sampled"] and sum(stats["shard_sizes"]) == 4
    union = hybrid.union_pools([world / "a.trec", world / "b.trec"], table["qid"].to_list(), 3)
    for row in table.iter_rows(named=True):
        shown = [p["docid"] for p in row["passages"]]
        assert sorted(shown) == union[row["qid"]]
        assert all(p["title"] == f"T{p['docid']}" for p in row["passages"])
        assert row["windows"] == pools.windows(len(shown), 3, 1)  # windows of 3 sharing one passage
    human = dict(zip(table["qid"], table["positives"].to_list(), strict=True))
    assert human["q0"] == ["d0"] and human["q1"] == ["d9"] and human["q5"] == []  # rel 0 is not a positive
    assert json.loads((world / "pool.json").read_text())["queries_without_human_positive"] == 1
    again = [world / "again" / f"shard-{k}.parquet" for k in range(2)]
    hybrid.build(*args, world / "corpus.parquet", again, 4, 3, 3, 1, 7)
    assert all(pl.read_parquet(a).equals(pl.read_parquet(o)) for a, o in zip(again, outs, strict=True))


def test_pool_needs_every_passage_in_the_corpus(world):
    (world / "c.trec").write_text("q0 Q0 ghost 1 5.0 c\n")
    with pytest.raises(Exception, match="not in the corpus"):
        hybrid.build(
            [world / "c.trec"],
            world / "q.parquet",
            world / "a.parquet",
            world / "qrels.trec",
            world / "corpus.parquet",
            [world / "s.parquet"],
            6,
            3,
            16,
            1,
            0,
        )
    assert not (world / "s.parquet").exists()


def test_judge_tasks_give_the_reference_answer_per_window():
    prompt = prompts.load(REPO / "prompts" / "utilsel.yaml")
    passages = [{"docid": f"d{i}", "title": "", "text": f"passage {i}"} for i in range(5)]
    table = pl.DataFrame(
        [{"qid": "q", "query": "why?", "passages": passages, "windows": [[0, 1, 2], [2, 3, 4]]}]
    )
    (task,) = steps.selection_tasks(table, prompt, 300, {"q": "because"})
    assert len(task.conversations) == 2 and task.docids == [["d0", "d1", "d2"], ["d2", "d3", "d4"]]
    assert "Reference answer: because." in task.conversations[0][-1]["content"]
    gens = [type("G", (), {"text": "My selection:[[3],[1]]."})(), type("G", (), {"text": "[1] [2]"})()]
    rec = task.finish(gens)
    # d2 is shown in both windows and keeps window 1's label (selected); d3 from window 2
    assert rec["selected"] == ["d0", "d2", "d3"]


def _judged(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_gold_is_human_union_judged_with_statistics(world, tmp_path):
    passages = [{"docid": "d1", "title": "", "text": "x"}]
    table = pl.DataFrame(
        [
            {"qid": "q0", "query": "a", "positives": ["d0"], "passages": passages},
            {"qid": "q1", "query": "b", "positives": [], "passages": passages},
        ]
    )
    table.write_parquet(tmp_path / "pool.parquet")
    recs = [
        {
            "qid": "q0",
            "windows": [{"status": "ok"}],
            "selected": ["d0", "d1"],
            "prompt_tokens": 100,
            "completion_tokens": 5,
        },
        {
            "qid": "q1",
            "windows": [{"status": "unparsed"}, {"status": "ok"}],
            "selected": [],
            "prompt_tokens": 300,
            "completion_tokens": 15,
        },
    ]
    judged = _judged(tmp_path / "j.jsonl", recs)
    stats = hybrid.gold(
        [tmp_path / "pool.parquet"],
        [judged],
        tmp_path / "qrels.trec",
        tmp_path / "q.parquet",
        tmp_path / "stats.json",
        {"input": 0.15, "output": 0.6},
    )
    assert (tmp_path / "qrels.trec").read_text() == "q0 0 d0 1\nq0 0 d1 1\n"
    assert pl.read_parquet(tmp_path / "q.parquet").rows() == [("q0", "a"), ("q1", "b")]
    assert stats["window_status"] == {"ok": 2, "unparsed": 1}
    assert stats["judged_positives_per_query"] == 1.0 and stats["gold_positives_per_query"] == 1.0
    assert stats["human_positives_judged_positive"] == 1.0
    assert stats["cost"] == pytest.approx(400 / 1e6 * 0.15 + 20 / 1e6 * 0.6, abs=1e-4)
    with pytest.raises(ValueError, match="1 hybrid queries have no judgment"):
        hybrid.gold(
            [tmp_path / "pool.parquet"],
            [_judged(tmp_path / "k.jsonl", recs[:1])],
            tmp_path / "x.trec",
            tmp_path / "x.parquet",
            tmp_path / "x.json",
        )


def test_restricted_run_is_the_dev_run_of_the_sampled_queries(world):
    pl.DataFrame({"qid": ["q1", "q4"], "text": ["", ""]}).write_parquet(world / "h.parquet")
    n = hybrid.restrict_run(world / "a.trec", world / "h.parquet", world / "h.trec")
    got = runfiles.read_run(world / "h.trec")
    want = runfiles.read_run(world / "a.trec").filter(pl.col("qid").is_in(["q1", "q4"]))
    assert n == 8 and got.equals(want)


def test_judge_command_refuses_a_prompt_without_the_answer(world):
    result = CliRunner().invoke(
        cli(),
        [
            "judge",
            "--pool",
            str(world / "q.parquet"),
            "--prompt",
            str(REPO / "prompts" / "relsel.yaml"),
            "--llm",
            "{}",
            "--out",
            str(world / "o.jsonl"),
        ],
    )
    assert result.exit_code != 0 and "needs a selection prompt with an {answer} placeholder" in result.output
