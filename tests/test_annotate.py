"""Annotation steps (PAPER-SPEC B): tasks per step, resumable shard runs that publish atomically, merging with
the statistics of the paper's Table 1. The LLM is a deterministic fake engine."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from utilanno.annotate import STEPS, prompts
from utilanno.annotate import steps as annotate
from utilanno.annotate.engines import Engine, Generation, Sampling, guide_pattern
from utilanno.annotate.model_identity import engine_id
from utilanno.annotate.pools import POOL_PASSAGE

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
WORDS = 300


@pytest.fixture(scope="module")
def prompt():
    return {name: prompts.load(PROMPTS / f"{name}.yaml") for name in STEPS}


def _last_user(conv: list[dict]) -> str:
    return [m for m in conv if m["role"] == "user"][-1]["content"]


def default_reply(conv: list[dict]) -> str:
    last = _last_user(conv)
    if "My selection" in last:
        return "My selection:[[1],[2]]."
    if "Rank the" in last:
        return "[2] > [1]"
    return "the answer"


class FakeEngine(Engine):
    """Answers by the kind of prompt; records every call; can fail on a given call (a simulated kill)."""

    name = "fake"

    def __init__(self, reply=default_reply, fail_on_call: int | None = None, check=None):
        self.reply, self.fail_on_call, self.check = reply, fail_on_call, check
        self.calls: list[list[list[dict]]] = []
        self.guides: list = []

    def chat(self, conversations, sampling, guides=None):
        if self.check:
            self.check()
        if self.fail_on_call is not None and len(self.calls) + 1 >= self.fail_on_call:
            raise RuntimeError("simulated kill")
        self.calls.append(conversations)
        self.guides.append(guides)
        out = []
        for conv in conversations:
            text = self.reply(conv)
            out.append(Generation(text, len(conv), len(text)))
        return out

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.calls]


def make_pools(n_queries=5, n_passages=5, windows=((0, 1, 2), (2, 3, 4))) -> pl.DataFrame:
    rows = []
    for i in range(n_queries):
        qid = f"q{i}"
        docs = [f"{qid}_d{j}" for j in range(n_passages)]
        rows.append(
            {
                "qid": qid,
                "query": f"query {i}?",
                "positive": docs[0],
                "positives": [docs[0], f"{qid}_extra"],
                "windows": [list(w) for w in windows],
                "passages": [
                    {"docid": d, "title": f"Title {d}" if j % 2 else "", "text": f"text of {d} {{x}}"}
                    for j, d in enumerate(docs)
                ],
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "qid": pl.String,
            "query": pl.String,
            "positive": pl.String,
            "positives": pl.List(pl.String),
            "windows": pl.List(pl.List(pl.Int32)),
            "passages": pl.List(POOL_PASSAGE),
        },
    )


def text_of(docid: str) -> str:
    j = int(docid.rsplit("_d", 1)[1])
    return prompts.format_passage(f"Title {docid}" if j % 2 else "", f"text of {docid} {{x}}")


def _run(
    tasks, engine, out, sampling=None, batch=2, step="relsel", guide_kind="selection", engine_id="fake-llm"
):
    return annotate.run_shard(
        step, tasks, engine, engine_id, sampling or Sampling(), guide_kind, out, batch_queries=batch
    )


# ---------------------------------------------------------------------------------------------------------
# Tasks


def test_relsel_tasks(prompt):
    pools = make_pools()
    tasks = annotate.relsel_tasks(pools, prompt["relsel"], WORDS)
    assert [t.qid for t in tasks] == [f"q{i}" for i in range(5)]
    t = tasks[0]
    assert t.docids == [["q0_d0", "q0_d1", "q0_d2"], ["q0_d2", "q0_d3", "q0_d4"]]
    assert t.conversations[0] == prompt["relsel"].render(
        "query 0?", [text_of(d) for d in t.docids[0]], passage_words=WORDS
    )
    assert t.conversations[1] == prompt["relsel"].render(
        "query 0?", [text_of(d) for d in t.docids[1]], passage_words=WORDS
    )
    assert "[1] text of q0_d0 {x}" in [m["content"] for m in t.conversations[0]]
    assert "[2] Title q0_d1 text of q0_d1 {x}" in [m["content"] for m in t.conversations[0]]
    assert t.guides("selection") == [guide_pattern("selection", 3)] * 2
    assert t.guides("answer") == [None, None]


def test_relsel_finish_shared_passage_keeps_first_window_label(prompt):
    tasks = annotate.relsel_tasks(make_pools(1), prompt["relsel"], WORDS)
    gens = FakeEngine().chat(tasks[0].conversations, Sampling())
    rec = tasks[0].finish(gens)
    # window 1 selects d0, d1 (not the shared d2); window 2 selects d2, d3: d2 keeps window 1's "no"
    assert rec["selected"] == ["q0_d0", "q0_d1", "q0_d3"]
    assert [w["ids"] for w in rec["windows"]] == [[0, 1], [0, 1]]
    assert [w["status"] for w in rec["windows"]] == ["parsed", "parsed"]
    assert [w["raw"] for w in rec["windows"]] == ["My selection:[[1],[2]]."] * 2
    assert rec["windows"][0]["docids"] == ["q0_d0", "q0_d1", "q0_d2"]
    assert rec["windows"][0]["prompt_hash"] == prompts.messages_hash(tasks[0].conversations[0])

    # the other way round: window 1 says yes to the shared passage, window 2 says no
    replies = iter(["My selection:[[3]].", "<think>[1]</think>My selection:[]."])
    rec = tasks[0].finish([Generation(next(replies), 1, 1) for _ in range(2)])
    assert rec["selected"] == ["q0_d2"]
    assert [w["status"] for w in rec["windows"]] == ["parsed", "parsed"]


def test_relsel_selected_follows_pool_order(prompt):
    pools = make_pools(1, n_passages=6, windows=((3, 4, 5), (0, 1, 2, 3)))
    task = annotate.relsel_tasks(pools, prompt["relsel"], WORDS)[0]
    rec = task.finish([Generation("[1] [3]", 1, 1), Generation("My selection:[[3],[1],[4]].", 1, 1)])
    # window 1 keeps d3 (its [1]) and d5; window 2 adds d0, d2; d3 already labelled by window 1
    assert rec["selected"] == ["q0_d0", "q0_d2", "q0_d3", "q0_d5"]
    rec = task.finish([Generation("nothing", 1, 1), Generation("", 1, 1)])
    assert rec["selected"] == []
    assert [w["status"] for w in rec["windows"]] == ["unparseable", "empty"]


def test_pseudo_answer_tasks(prompt):
    pools = make_pools(3)
    relsel = {"q0": {"selected": ["q0_d1", "q0_d3"]}, "q1": {"selected": []}, "q2": {"selected": ["q2_d4"]}}
    tasks = annotate.pseudo_answer_tasks(pools, prompt["pseudo_answer"], WORDS, relsel)
    assert [t.qid for t in tasks] == ["q0", "q1", "q2"]
    texts = [text_of("q0_d1"), text_of("q0_d3")]
    assert tasks[0].conversations == [prompt["pseudo_answer"].render("query 0?", texts)]
    assert tasks[0].docids == [["q0_d1", "q0_d3"]]
    assert tasks[0].guides("answer") == [None]
    # RelSel selected nothing: no conversation, a no_passages record
    assert tasks[1].conversations == []
    assert tasks[1].finish([]) == {"docids": [], "status": "no_passages", "raw": None, "answer": None}
    rec = tasks[0].finish([Generation("<think>x</think> the answer ", 5, 3)])
    assert rec == {
        "docids": ["q0_d1", "q0_d3"],
        "prompt_hash": prompts.messages_hash(tasks[0].conversations[0]),
        "raw": "<think>x</think> the answer ",
        "status": "parsed",
        "answer": "the answer",
    }
    assert tasks[2].finish([Generation("<think>never closed", 5, 3)])["status"] == "empty"


def test_pseudo_answer_does_not_truncate(prompt):
    pools = make_pools(1)
    tasks = annotate.pseudo_answer_tasks(pools, prompt["pseudo_answer"], 2, {"q0": {"selected": ["q0_d1"]}})
    assert text_of("q0_d1") in tasks[0].conversations[0][-1]["content"]


def test_tasks_need_a_relsel_record(prompt):
    with pytest.raises(KeyError, match="q1"):
        annotate.pseudo_answer_tasks(make_pools(2), prompt["pseudo_answer"], WORDS, {"q0": {"selected": []}})


@pytest.mark.parametrize("kind", ["utilsel", "utilrank"])
def test_utility_tasks(prompt, kind):
    pools = make_pools(3)
    relsel = {
        "q0": {"selected": ["q0_d0", "q0_d2", "q0_d4"]},
        "q1": {"selected": []},
        "q2": {"selected": ["q2_d3"]},
    }
    answers = {"q0": {"answer": "ans zero"}, "q1": {"answer": None}, "q2": {"answer": None}}
    tasks = annotate.utility_tasks(pools, prompt[kind], 2, relsel, answers)
    texts = [" ".join(text_of(d).split()[:2]) for d in relsel["q0"]["selected"]]
    assert tasks[0].conversations == [prompt[kind].render("query 0?", texts, answer="ans zero")]
    assert "ans zero" in tasks[0].conversations[0][-1]["content"]
    assert tasks[0].docids == [relsel["q0"]["selected"]]
    output = "ranking" if kind == "utilrank" else "selection"
    assert tasks[0].guides(output) == [guide_pattern(output, 3)]
    field = "ranking" if kind == "utilrank" else "selected"

    rec = tasks[0].finish(FakeEngine().chat(tasks[0].conversations, Sampling()))
    assert rec["status"] == "parsed"
    assert rec["docids"] == relsel["q0"]["selected"]
    assert rec["prompt_hash"] == prompts.messages_hash(tasks[0].conversations[0])
    if kind == "utilrank":
        assert rec["raw"] == "[2] > [1]" and rec["ids"] == [1, 0]
        assert rec["ranking"] == ["q0_d2", "q0_d0"]
    else:
        assert rec["raw"] == "My selection:[[1],[2]]." and rec["ids"] == [0, 1]
        assert rec["selected"] == ["q0_d0", "q0_d2"]

    assert tasks[1].conversations == []
    assert tasks[1].finish([]) == {"docids": [], "status": "no_passages", "raw": None, "ids": [], field: []}
    # a missing pseudo answer (None) is shown as an empty answer
    assert "Reference answer: ." in tasks[2].conversations[0][-1]["content"] or kind == "utilrank"
    rec = tasks[2].finish([Generation("[0] > [2]", 1, 1)])
    assert rec["ids"] == [] and rec[field] == [] and rec["status"] == "unparseable"


# ---------------------------------------------------------------------------------------------------------
# run_shard


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_run_shard_writes_records_in_task_order_and_publishes_atomically(prompt, tmp_path):
    tasks = annotate.relsel_tasks(make_pools(5), prompt["relsel"], WORDS)
    out = tmp_path / "shards" / "relsel-0.jsonl"
    partial = out.with_name(out.name + ".partial")
    seen = []

    def check():
        assert not out.exists()
        assert partial.exists()
        seen.append(len(partial.read_bytes().splitlines()))

    engine = FakeEngine(check=check)
    summary = _run(tasks, engine, out)
    assert engine.sizes == [4, 4, 2]  # batches of 2 queries, 2 windows each
    assert seen == [1, 3, 5]  # header, then each complete batch appended before the next call
    assert engine.guides[0] == [guide_pattern("selection", 3)] * 4
    assert out.exists() and not partial.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]
    recs = _lines(out)
    assert [r["qid"] for r in recs] == [t.qid for t in tasks]
    for r, t in zip(recs, tasks, strict=True):
        assert r["step"] == "relsel"
        assert r["selected"] == [f"{t.qid}_d0", f"{t.qid}_d1", f"{t.qid}_d3"]
        assert r["prompt_tokens"] == sum(len(c) for c in t.conversations)
        assert r["completion_tokens"] == 2 * len("My selection:[[1],[2]].")
    assert summary["queries"] == 5 and summary["queries_run"] == 5 and summary["resumed_batches"] == 0
    assert summary["prompt_tokens"] == sum(r["prompt_tokens"] for r in recs)
    assert annotate.read_records(out).keys() == {t.qid for t in tasks}


def test_run_shard_without_guides_and_empty_tasks(prompt, tmp_path):
    pools = make_pools(3)
    relsel = {"q0": {"selected": []}, "q1": {"selected": []}, "q2": {"selected": ["q2_d1"]}}
    tasks = annotate.pseudo_answer_tasks(pools, prompt["pseudo_answer"], WORDS, relsel)
    engine = FakeEngine()
    out = tmp_path / "pa.jsonl"
    _run(tasks, engine, out, step="pseudo_answer", guide_kind=None)
    assert engine.sizes == [1]  # the first batch has no conversation: no engine call
    assert engine.guides == [None]
    recs = _lines(out)
    assert [r["status"] for r in recs] == ["no_passages", "no_passages", "parsed"]
    assert recs[0]["prompt_tokens"] == 0 and recs[2]["answer"] == "the answer"

    empty = tmp_path / "empty.jsonl"
    summary = _run([], FakeEngine(), empty)
    assert empty.read_bytes() == b"" and summary["queries"] == 0


@pytest.fixture
def relsel_tasks(prompt):
    return annotate.relsel_tasks(make_pools(5), prompt["relsel"], WORDS)


@pytest.fixture
def reference(relsel_tasks, tmp_path):
    out = tmp_path / "ref" / "relsel.jsonl"
    _run(relsel_tasks, FakeEngine(), out)
    return out.read_bytes()


def _killed_run(tasks, out, fail_on_call, sampling=None):
    engine = FakeEngine(fail_on_call=fail_on_call)
    with pytest.raises(RuntimeError, match="simulated kill"):
        _run(tasks, engine, out, sampling=sampling)
    assert not out.exists()
    return out.with_name(out.name + ".partial")


def test_resume_after_kill(relsel_tasks, reference, tmp_path):
    out = tmp_path / "run" / "relsel.jsonl"
    partial = _killed_run(relsel_tasks, out, fail_on_call=3)
    lines = partial.read_bytes().splitlines()
    assert len(lines) == 1 + 4  # the header and the two complete batches
    assert set(json.loads(lines[0])) == {"fingerprint"}
    assert [json.loads(x)["qid"] for x in lines[1:]] == ["q0", "q1", "q2", "q3"]

    engine = FakeEngine()
    summary = _run(relsel_tasks, engine, out)
    assert engine.sizes == [2]  # only the last batch (one query, two windows)
    assert [c[0] for c in engine.calls] == [relsel_tasks[4].conversations[0]]
    assert summary["resumed_batches"] == 2 and summary["queries_run"] == 1
    assert summary["prompt_tokens"] == sum(r["prompt_tokens"] for r in _lines(out))
    assert out.read_bytes() == reference
    assert not partial.exists()


def test_weights_swapped_under_the_same_path_start_the_shard_over(
    relsel_tasks, reference, tmp_path, monkeypatch
):
    monkeypatch.setenv("UTILANNO_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights A")
    llm = {"engine": "vllm", "model": str(model), "dtype": "auto"}
    out = tmp_path / "run" / "relsel.jsonl"
    with pytest.raises(RuntimeError, match="simulated kill"):
        _run(relsel_tasks, FakeEngine(fail_on_call=3), out, engine_id=engine_id(llm))
    (model / "model.safetensors").write_bytes(b"weights B")  # same path, same size, other weights
    engine = FakeEngine()
    summary = _run(relsel_tasks, engine, out, engine_id=engine_id(llm))
    assert summary["resumed_batches"] == 0 and summary["queries_run"] == 5  # nothing of model A kept
    assert out.read_bytes() == reference


def test_resume_ignores_a_truncated_last_line(relsel_tasks, reference, tmp_path):
    out = tmp_path / "run" / "relsel.jsonl"
    partial = _killed_run(relsel_tasks, out, fail_on_call=3)
    data = partial.read_bytes()
    partial.write_bytes(data[:-15])  # a kill in the middle of writing q3's line
    engine = FakeEngine()
    summary = _run(relsel_tasks, engine, out)
    assert engine.sizes == [4, 2]  # batch 2 is incomplete: it runs again
    assert summary["resumed_batches"] == 1
    assert out.read_bytes() == reference


def test_resume_with_only_the_header(relsel_tasks, reference, tmp_path):
    out = tmp_path / "relsel.jsonl"
    _killed_run(relsel_tasks, out, fail_on_call=1)
    engine = FakeEngine()
    assert _run(relsel_tasks, engine, out)["resumed_batches"] == 0
    assert engine.sizes == [4, 4, 2]
    assert out.read_bytes() == reference


def test_resume_after_a_kill_before_publishing(relsel_tasks, reference, tmp_path, monkeypatch):
    out = tmp_path / "relsel.jsonl"

    def killed(*args, **kwargs):
        raise RuntimeError("simulated kill")

    with monkeypatch.context() as m:
        m.setattr(annotate, "atomic_text", killed)
        with pytest.raises(RuntimeError):
            _run(relsel_tasks, FakeEngine(), out)
    assert not out.exists()
    engine = FakeEngine()
    summary = _run(relsel_tasks, engine, out)
    assert engine.calls == [] and summary["resumed_batches"] == 3 and summary["queries_run"] == 0
    assert out.read_bytes() == reference


@pytest.mark.parametrize("change", ["sampling", "batch", "engine", "guide", "tasks", "header"])
def test_partial_from_other_settings_is_discarded(prompt, relsel_tasks, reference, tmp_path, change):
    out = tmp_path / "relsel.jsonl"
    partial = _killed_run(relsel_tasks, out, fail_on_call=3)
    kwargs = {
        "step": "relsel",
        "tasks": relsel_tasks,
        "engine_id": "fake-llm",
        "sampling": Sampling(),
        "guide_kind": "selection",
        "out": out,
        "batch_queries": 2,
    }
    if change == "sampling":
        kwargs["sampling"] = Sampling(temperature=0.6, top_p=0.95, top_k=20, seed=1)
    elif change == "batch":
        kwargs["batch_queries"] = 1
    elif change == "engine":
        kwargs["engine_id"] = "other-llm"
    elif change == "guide":
        kwargs["guide_kind"] = None
    elif change == "tasks":
        kwargs["tasks"] = annotate.relsel_tasks(make_pools(5), prompt["relsel"], 1)
    else:
        partial.write_bytes(b"not json\n" + partial.read_bytes().split(b"\n", 1)[1])
    engine = FakeEngine()
    summary = annotate.run_shard(engine=engine, **kwargs)
    assert summary["resumed_batches"] == 0 and summary["queries_run"] == 5
    assert sum(engine.sizes) == 10  # everything ran again
    if change in ("sampling", "engine", "header", "batch"):
        assert out.read_bytes() == reference  # the fake engine ignores these settings


# ---------------------------------------------------------------------------------------------------------
# merge


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _pool_file(path: Path, positives: dict[str, str | None]) -> Path:
    pl.DataFrame(
        {"qid": list(positives), "positive": list(positives.values())},
        schema={"qid": pl.String, "positive": pl.String},
    ).write_parquet(path)
    return path


def _sel(qid, selected, status="parsed", docids=None, pt=10, ct=3):
    return {
        "qid": qid,
        "step": "utilsel",
        "docids": docids if docids is not None else selected,
        "prompt_hash": "h",
        "raw": "r" if status != "no_passages" else None,
        "status": status,
        "ids": list(range(len(selected))),
        "selected": selected,
        "prompt_tokens": pt,
        "completion_tokens": ct,
    }


def test_merge_utilsel_statistics(tmp_path):
    s0 = _write_jsonl(tmp_path / "s0.jsonl", [_sel("q1", ["p1", "n1"]), _sel("q2", ["n2"], pt=7)])
    s1 = _write_jsonl(
        tmp_path / "s1.jsonl",
        [_sel("q3", [], status="no_passages", pt=0, ct=0), _sel("q4", ["p4", "n4", "m4"], status="parsed")],
    )
    pools = [
        _pool_file(tmp_path / "p0.parquet", {"q1": "p1", "q2": "p2"}),
        _pool_file(tmp_path / "p1.parquet", {"q3": "p3", "q4": "p4"}),
    ]
    out = tmp_path / "merged" / "utilsel.parquet"
    stats = annotate.merge("utilsel", [s0, s1], pools, out, topk=[10])
    # 6 selected, 2 hits (q1, q4), 4 queries
    assert stats["precision"] == round(2 / 6, 4)
    assert stats["recall"] == 0.5
    assert stats["avg_positives"] == 1.5
    assert stats["queries_without_positive"] == 1
    assert stats["queries"] == 4
    assert stats["statuses"] == {"parsed": 3, "no_passages": 1}
    assert stats["prompt_tokens"] == 27 and stats["completion_tokens"] == 9
    assert "wall_seconds" not in stats
    table = pl.read_parquet(out)
    assert table["qid"].to_list() == ["q1", "q2", "q3", "q4"]
    assert table.filter(pl.col("qid") == "q4")["selected"].to_list() == [["p4", "n4", "m4"]]


def test_merge_relsel_counts_window_statuses(tmp_path):
    def rec(qid, selected, statuses):
        return {
            "qid": qid,
            "step": "relsel",
            "selected": selected,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "windows": [
                {"docids": ["a"], "prompt_hash": "h", "raw": f"raw {s}", "status": s, "ids": []}
                for s in statuses
            ],
        }

    shard = _write_jsonl(
        tmp_path / "r.jsonl",
        [rec("q2", ["n2", "p2"], ["parsed", "parsed"]), rec("q1", [], ["empty", "unparseable"])],
    )
    pools = [_pool_file(tmp_path / "p.parquet", {"q1": "p1", "q2": "p2"})]
    out = tmp_path / "relsel.parquet"
    stats = annotate.merge("relsel", [shard], pools, out, topk=[])
    assert stats["statuses"] == {"parsed": 2, "empty": 1, "unparseable": 1}
    assert stats["precision"] == 0.5 and stats["recall"] == 0.5 and stats["avg_positives"] == 1.0
    table = pl.read_parquet(out)
    assert table["qid"].to_list() == ["q1", "q2"]
    assert table["window_status"].to_list() == [["empty", "unparseable"], ["parsed", "parsed"]]
    assert table["raw"].to_list() == [["raw empty", "raw unparseable"], ["raw parsed", "raw parsed"]]
    assert "windows" not in table.columns


def test_merge_utilrank_topk(tmp_path):
    def rec(qid, ranking, n_docs, status="parsed"):
        docids = list(dict.fromkeys([*ranking, *[f"{qid}_x{i}" for i in range(n_docs)]]))[:n_docs]
        return {
            "qid": qid,
            "step": "utilrank",
            "docids": docids,
            "prompt_hash": "h",
            "raw": "r",
            "status": status,
            "ids": [],
            "ranking": ranking,
            "prompt_tokens": 1,
            "completion_tokens": 1,
        }

    records = [
        rec("q1", ["p1", "a", "b"], 10),  # 10%: 1 -> [p1] hit; 30%: 3 -> hit
        rec("q2", ["a", "p2", "b", "c"], 20),  # 10%: 2 -> [a, p2] hit; 30%: 6 -> 4 given, hit
        rec("q3", ["a", "b", "c", "p3"], 6),  # 10%: 0 -> 1: [a]; 30%: 1 -> [a]; 50%: 3 -> miss
        rec("q4", [], 4, status="unparseable"),  # nothing ranked
    ]
    shard = _write_jsonl(tmp_path / "u.jsonl", records)
    pools = [_pool_file(tmp_path / "p.parquet", {q: f"p{q[1:]}" for q in ("q1", "q2", "q3", "q4")})]
    stats = annotate.merge("utilrank", [shard], pools, tmp_path / "u.parquet", topk=[10, 30, 50])
    assert stats["statuses"] == {"parsed": 3, "unparseable": 1}
    t10, t30, t50 = stats["topk"]["10"], stats["topk"]["30"], stats["topk"]["50"]
    assert t10 == {
        "precision": 0.5,
        "recall": 0.5,
        "avg_positives": 1.0,
        "queries_without_positive": 1,
        "queries_with_human_positive": 4,
    }
    # 30%: q1 3, q2 4, q3 1 -> 8 selected, 2 hits
    assert t30 == {
        "precision": 0.25,
        "recall": 0.5,
        "avg_positives": 2.0,
        "queries_without_positive": 1,
        "queries_with_human_positive": 4,
    }
    # 50%: q1 3 (of 5), q2 4 (of 10), q3 3 -> 10 selected, 2 hits
    assert t50 == {
        "precision": 0.2,
        "recall": 0.5,
        "avg_positives": 2.5,
        "queries_without_positive": 1,
        "queries_with_human_positive": 4,
    }


def test_merge_pseudo_answer(tmp_path):
    records = [
        {
            "qid": "q1",
            "step": "pseudo_answer",
            "docids": ["a"],
            "prompt_hash": "h",
            "raw": "x",
            "status": "parsed",
            "answer": "one two three",
            "prompt_tokens": 4,
            "completion_tokens": 2,
        },
        {
            "qid": "q2",
            "step": "pseudo_answer",
            "docids": [],
            "status": "no_passages",
            "raw": None,
            "answer": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        },
        {
            "qid": "q3",
            "step": "pseudo_answer",
            "docids": ["b"],
            "prompt_hash": "h",
            "raw": "y",
            "status": "parsed",
            "answer": "four",
            "prompt_tokens": 4,
            "completion_tokens": 2,
        },
    ]
    shard = _write_jsonl(tmp_path / "a.jsonl", records)
    pools = [_pool_file(tmp_path / "p.parquet", {"q1": "a", "q2": "b", "q3": "c"})]
    stats = annotate.merge("pseudo_answer", [shard], pools, tmp_path / "a.parquet", topk=[10])
    assert stats["answered"] == 2 and stats["no_passages"] == 1 and stats["mean_answer_words"] == 2.0
    assert stats["statuses"] == {"parsed": 2, "no_passages": 1}
    assert pl.read_parquet(tmp_path / "a.parquet")["answer"].to_list() == ["one two three", None, "four"]


def test_merge_missing_query(tmp_path):
    shard = _write_jsonl(tmp_path / "s.jsonl", [_sel("q1", ["p1"])])
    pools = [_pool_file(tmp_path / "p.parquet", {"q1": "p1", "q2": "p2"})]
    out = tmp_path / "m.parquet"
    with pytest.raises(ValueError, match="q2"):
        annotate.merge("utilsel", [shard], pools, out, topk=[10])
    assert not out.exists()


BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_merge_benchmarks(tmp_path):
    shard = _write_jsonl(tmp_path / "s.jsonl", [_sel("q1", ["p1"])])
    pools = [_pool_file(tmp_path / "p.parquet", {"q1": "p1"})]
    b0 = tmp_path / "b0.tsv"
    b0.write_text(BENCH_HEADER + "10.5000\t0:00:10\t512.3\t900.1\t500.0\t501.0\t1.0\t2.0\t95.0\t10.2\n")
    b1 = tmp_path / "b1.tsv"
    b1.write_text(BENCH_HEADER + "20.2500\t0:00:20\t-\t-\t-\t-\t-\t-\t-\t-\n")
    stats = annotate.merge(
        "utilsel", [shard], pools, tmp_path / "m.parquet", topk=[10], benchmarks=[b0, b1], gpus=2
    )
    assert stats["wall_seconds"] == 30.75
    assert stats["gpu_seconds"] == 61.5
    stats = annotate.merge("utilsel", [shard], pools, tmp_path / "m.parquet", topk=[10], benchmarks=[b0])
    assert stats["wall_seconds"] == 10.5 and stats["gpu_seconds"] == 0


# ---------------------------------------------------------------------------------------------------------
# All four steps end to end with the fake engine


def test_steps_end_to_end(prompt, tmp_path):
    pools = make_pools(4)
    pool_file = tmp_path / "pool-0.parquet"
    pools.write_parquet(pool_file)
    pools = pl.read_parquet(pool_file)

    def reply(conv):  # q2 gets no RelSel passage at all
        if "query 2?" in conv[2]["content"] and "relevant" in _last_user(conv):
            return "My selection:[]."
        return default_reply(conv)

    engine = FakeEngine(reply)
    out = {s: tmp_path / f"{s}.jsonl" for s in STEPS}
    _run(annotate.relsel_tasks(pools, prompt["relsel"], WORDS), engine, out["relsel"])
    relsel = annotate.read_records(out["relsel"])
    assert relsel["q2"]["selected"] == []
    _run(
        annotate.pseudo_answer_tasks(pools, prompt["pseudo_answer"], WORDS, relsel),
        engine,
        out["pseudo_answer"],
        step="pseudo_answer",
        guide_kind=None,
    )
    answers = annotate.read_records(out["pseudo_answer"])
    assert answers["q2"]["status"] == "no_passages" and answers["q0"]["answer"] == "the answer"
    _run(
        annotate.utility_tasks(pools, prompt["utilsel"], WORDS, relsel, answers),
        engine,
        out["utilsel"],
        step="utilsel",
    )
    _run(
        annotate.utility_tasks(pools, prompt["utilrank"], WORDS, relsel, answers),
        engine,
        out["utilrank"],
        step="utilrank",
        guide_kind="ranking",
    )
    # the last batch holds q2 (nothing to rank, no conversation) and q3
    assert engine.guides[-2:] == [[guide_pattern("ranking", 3)] * 2, [guide_pattern("ranking", 3)]]

    stats = {
        s: annotate.merge(s, [out[s]], [pool_file], tmp_path / f"{s}.parquet", topk=[10, 50]) for s in STEPS
    }
    # RelSel picks d0, d1, d3 (d0 is the human positive) for 3 of 4 queries
    assert stats["relsel"]["recall"] == 0.75 and stats["relsel"]["precision"] == round(3 / 9, 4)
    # UtilSel picks [1],[2] of (d0, d1, d3) -> d0, d1
    assert stats["utilsel"]["recall"] == 0.75 and stats["utilsel"]["avg_positives"] == 1.5
    # UtilRank ranks d1 > d0: 10% of 3 inputs -> 1 positive (d1), a miss; 50% -> 1 as well
    assert stats["utilrank"]["topk"]["10"]["recall"] == 0.0
    assert stats["utilrank"]["topk"]["10"]["avg_positives"] == 0.75
    assert stats["utilrank"]["topk"]["50"] == stats["utilrank"]["topk"]["10"]
    assert stats["pseudo_answer"]["no_passages"] == 1
    assert stats["utilsel"]["statuses"] == {"parsed": 3, "no_passages": 1}


def test_merge_schema_does_not_depend_on_the_data(tmp_path):
    records = [_sel("q1", [], status="unparseable"), _sel("q2", [], status="empty")]
    shard = _write_jsonl(tmp_path / "s.jsonl", records)
    pools = [_pool_file(tmp_path / "p.parquet", {"q1": "p1", "q2": "p2"})]
    annotate.merge("utilsel", [shard], pools, tmp_path / "m.parquet", topk=[10])
    schema = pl.read_parquet_schema(tmp_path / "m.parquet")
    assert schema["selected"] == pl.List(pl.String)
    assert schema["docids"] == pl.List(pl.String)


def test_statistics_without_a_human_positive_leave_precision_and_recall_out(tmp_path):
    """A mined pool has no human positive: precision and recall are null, positives per query still counted;
    with some queries judged, precision and recall are over those alone."""
    records = [
        {
            "qid": q,
            "step": "utilsel",
            "docids": ["a", "b", "c"],
            "prompt_hash": "h",
            "raw": "r",
            "status": "parsed",
            "ids": [],
            "selected": sel,
            "prompt_tokens": 1,
            "completion_tokens": 1,
        }
        for q, sel in (("q1", ["a", "b"]), ("q2", []), ("q3", ["c"]))
    ]
    shard = _write_jsonl(tmp_path / "u.jsonl", records)
    mined = _pool_file(tmp_path / "p.parquet", {"q1": None, "q2": None, "q3": None})
    stats = annotate.merge("utilsel", [shard], [mined], tmp_path / "u.parquet", topk=[10])
    assert (stats["precision"], stats["recall"]) == (None, None)
    assert stats["avg_positives"] == 1.0 and stats["queries_without_positive"] == 1
    assert stats["queries_with_human_positive"] == 0
    partly = _pool_file(tmp_path / "p2.parquet", {"q1": "a", "q2": None, "q3": "b"})
    stats = annotate.merge("utilsel", [shard], [partly], tmp_path / "u2.parquet", topk=[10])
    # judged: q1 (a selected: hit, 2 selected) and q3 (b not selected, 1 selected) -> 1 hit of 3, 1 of 2
    assert (stats["precision"], stats["recall"]) == (round(1 / 3, 4), 0.5)
    assert stats["avg_positives"] == 1.0  # over every query
