"""REPLUG utility labels (PAPER-SPEC C.3): log P(answer | query, passage) from the transformers engine on a
tiny random Qwen2 (checked against a direct forward pass), and the resumable shard job and merge around it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import polars as pl
import pytest

from utilanno.annotate import engines, prompts, replug
from utilanno.annotate.engines import AnswerScore, Engine
from utilanno.annotate.pools import POOL_PASSAGE
from utilanno.errors import InputFormatError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
PROMPT_FILE = PROMPTS / "replug.yaml"


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    from utilanno.testing import tinymodels

    return str(tinymodels.build_tiny_qwen2(tmp_path_factory.mktemp("models") / "qwen2"))


@pytest.fixture(scope="module")
def tiny_engine(tiny_qwen2):
    return engines.TransformersEngine(tiny_qwen2, dtype="float32", batch_size=1, device="cpu", threads=1)


CONVERSATIONS = [
    [{"role": "user", "content": "the retriever ranks passages"}],
    [{"role": "user", "content": "a"}],
    [
        {"role": "user", "content": "You are the relevance judger, select the passages about the query."},
        {"role": "assistant", "content": "Yes, I am the relevance judger."},
        {"role": "user", "content": "[1] a passage\nSearch Query: q?."},
    ],
    [{"role": "user", "content": "the annotator selects 3 passages"}],
    [{"role": "user", "content": "the teacher model encodes hard negatives before fine tuning"}],
]
ANSWERS = [
    "the top documents for open domain question answering",
    "x",
    "The reranker selects useful evidence.",
    " a judge",  # a leading space is part of the answer's own tokens
    "noisy labels in 2025, quickly and cheaply!",
]


def manual_logprob(engine, conversation, answer) -> tuple[float, int]:
    """log P(answer | conversation) from one unpadded forward pass: log_softmax, then gather."""
    import torch

    prompt, ids = engines.answer_token_ids(engine.tokenizer, conversation, answer)
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([prompt + ids])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(ids) - 1)
    return float(logprobs[positions, torch.tensor(ids)].sum()), len(ids)


# ---------------------------------------------------------------------------------------------------------
# Engines


def test_answer_token_ids_are_the_chat_prompt_then_the_answer(tiny_engine):
    tok = tiny_engine.tokenizer
    conv = CONVERSATIONS[0]
    prompt, ids = engines.answer_token_ids(tok, conv, "the top documents")
    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert prompt == tok(text, add_special_tokens=False)["input_ids"]  # exactly what `chat` sends
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    assert ids == tok("the top documents", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "the top documents"
    # the prompt count matches the chat engine's own prompt token count
    assert tiny_engine.chat([conv], engines.Sampling(max_tokens=1))[0].prompt_tokens == len(prompt)


def test_transformers_logprobs_equal_a_direct_forward_pass(tiny_engine):
    expected = [manual_logprob(tiny_engine, c, a) for c, a in zip(CONVERSATIONS, ANSWERS, strict=True)]
    assert len({n for _, n in expected}) > 2  # answers of different lengths
    tiny_engine.batch_size = 1
    one = tiny_engine.answer_logprobs(CONVERSATIONS, ANSWERS)
    try:
        for size in (2, 5):  # padded batches: mixed prompt and answer lengths in one forward pass
            tiny_engine.batch_size = size
            batched = tiny_engine.answer_logprobs(CONVERSATIONS, ANSWERS)
            for got, alone in zip(batched, one, strict=True):
                assert got.n_tokens == alone.n_tokens and got.prompt_tokens == alone.prompt_tokens
                assert got.logprob == pytest.approx(alone.logprob, abs=1e-4)
    finally:
        tiny_engine.batch_size = 1
    for got, (logprob, n) in zip(one, expected, strict=True):
        assert isinstance(got, AnswerScore)
        assert got.n_tokens == n
        assert got.logprob == pytest.approx(logprob, abs=1e-4)
        assert got.logprob < 0
    logprob, n_tokens, prompt_tokens = one[0]  # a plain tuple too
    assert prompt_tokens == len(engines.answer_token_ids(tiny_engine.tokenizer, CONVERSATIONS[0], "x")[0])


def test_transformers_logprobs_depend_on_the_context(tiny_engine):
    a = tiny_engine.answer_logprobs([CONVERSATIONS[0], CONVERSATIONS[3]], [ANSWERS[0]] * 2)
    assert a[0].n_tokens == a[1].n_tokens
    assert a[0].logprob != pytest.approx(a[1].logprob)
    assert tiny_engine.answer_logprobs([], []) == []


def test_answer_logprobs_errors(tiny_engine):
    with pytest.raises(ValueError, match="2 conversations but 1 answers"):
        tiny_engine.answer_logprobs(CONVERSATIONS[:2], ["x"])
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match="non-empty string"):
            tiny_engine.answer_logprobs(CONVERSATIONS[:1], [bad])
    with pytest.raises(NotImplementedError, match="fake engine cannot score answers"):
        type("Fake", (Engine,), {"name": "fake"})().answer_logprobs([], [])
    with pytest.raises(NotImplementedError, match="openai engine cannot score answers.*vllm or transformers"):
        engines.OpenAIEngine("m", "http://127.0.0.1:1/v1").answer_logprobs(CONVERSATIONS[:1], ["x"])


def test_answer_logprobs_longer_than_the_model(tiny_engine):
    with pytest.raises(ValueError, match="exceed the model's 4096 positions"):
        tiny_engine.answer_logprobs(CONVERSATIONS[:1], ["the corpus " * 3000])


# ---------------------------------------------------------------------------------------------------------
# Prompt, answers, utility


def test_replug_prompt_file():
    prompt = prompts.load(PROMPT_FILE)
    replug.check_prompt(prompt)
    msgs = prompt.render("what is x?", ["Title the passage text"], passage_words=300)
    pseudo = prompts.load(PROMPTS / "pseudo_answer.yaml").render("what is x?", ["Title the passage text"])
    assert msgs == pseudo  # the faithful-assistant wording of B.2, with one passage
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert "Given the information: \nTitle the passage text\n Answer the following" in msgs[2]["content"]
    assert msgs[2]["content"].endswith("Question: what is x?\n\n Answer:")
    long = prompt.render("q", [" ".join(["zzz"] * 400)], passage_words=300)
    assert long[2]["content"].count("zzz") == 300


def test_pick_answer():
    assert replug.pick_answer(["  first one ", "b", "a much longer answer"]) == "first one"
    assert replug.pick_answer(["ab", "b", "cd"], "shortest") == "b"
    assert replug.pick_answer(["ab", "abc", "cde"], "longest") == "abc"
    assert replug.pick_answer(["", "No Answer Present.", "  ", "real"]) == "real"
    assert replug.pick_answer([]) is None
    assert replug.pick_answer(None) is None
    assert replug.pick_answer(["No Answer Present."]) is None
    with pytest.raises(ValueError, match="unknown answer choice 'random'"):
        replug.pick_answer(["a"], "random")


def test_utility_sum_and_mean():
    assert replug.utility(-6.0, 3, "sum") == -6.0
    assert replug.utility(-6.0, 3, "mean") == -2.0
    with pytest.raises(ValueError, match="unknown length normalisation 'max'"):
        replug.utility(-6.0, 3, "max")
    with pytest.raises(ValueError, match="at least one answer token"):
        replug.utility(0.0, 0, "mean")


# ---------------------------------------------------------------------------------------------------------
# Shard job and merge


def make_pools(n_queries=4, n_passages=3) -> pl.DataFrame:
    rows = []
    for i in range(n_queries):
        qid = f"q{i}"
        docs = [f"{qid}_d{j}" for j in range(n_passages)]
        rows.append(
            {
                "qid": qid,
                "query": f"who ranks the passages {i}?",
                "positive": docs[0],
                "positives": [docs[0]],
                "windows": [list(range(n_passages))],
                "passages": [
                    {"docid": d, "title": "Title" if j % 2 else "", "text": f"the retriever ranks {d} {{x}}"}
                    for j, d in enumerate(docs)
                ],
            }
        )
    schema = {
        "qid": pl.String,
        "query": pl.String,
        "positive": pl.String,
        "positives": pl.List(pl.String),
        "windows": pl.List(pl.List(pl.Int32)),
        "passages": pl.List(POOL_PASSAGE),
    }
    return pl.DataFrame(rows, schema=schema)


ANSWER_ROWS = {
    "q0": ["the retriever ranks passages", "another answer"],
    "q1": ["No Answer Present."],  # no usable answer
    "q3": ["a judge", "the longest answer of them all"],
    "q9": ["not in the pool"],
}  # q2 has no row


@pytest.fixture
def files(tmp_path):
    make_pools().write_parquet(tmp_path / "pool.parquet")
    answers = pl.DataFrame(
        {"qid": list(ANSWER_ROWS), "answers": list(ANSWER_ROWS.values())},
        schema={"qid": pl.String, "answers": pl.List(pl.String)},
    )
    answers.write_parquet(tmp_path / "answers.parquet")
    return tmp_path


class FakeScorer(Engine):
    """A deterministic stand-in: log-prob from the texts; records calls; can fail on a call (a kill)."""

    name = "fake"

    def __init__(self, fail_on_call: int | None = None):
        self.fail_on_call = fail_on_call
        self.calls: list[list[str]] = []

    def answer_logprobs(self, conversations, answers):
        if self.fail_on_call is not None and len(self.calls) + 1 >= self.fail_on_call:
            raise RuntimeError("simulated kill")
        self.calls.append(answers)
        return [
            AnswerScore(-float(len(json.dumps(c)) % 17) - len(a), len(a.split()), len(c))
            for c, a in zip(conversations, answers, strict=True)
        ]


LLM = {"engine": "transformers", "model": "fake", "dtype": "float32"}


def _score(files, engine, out, **kw):
    return replug.score_shard(
        files / "pool.parquet",
        files / "answers.parquet",
        PROMPT_FILE,
        LLM,
        out,
        engine=engine,
        **kw,
    )


def test_score_shard_with_the_tiny_model(files, tiny_engine, caplog):
    out = files / "replug" / "shard-0.jsonl"
    with caplog.at_level(logging.WARNING, logger="utilanno.replug"):
        summary = _score(files, tiny_engine, out, batch_queries=2)
    assert "2 of 4 queries have no gold answer" in caplog.text
    assert summary["queries"] == 4 and summary["no_answer"] == 2
    assert out.exists() and not out.with_name(out.name + ".partial").exists()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["qid"] for r in records] == ["q0", "q1", "q2", "q3"]
    assert [r["status"] for r in records] == ["scored", "no_answer", "no_answer", "scored"]
    assert all(r["step"] == "replug" for r in records)
    assert records[1]["docids"] == records[1]["logprobs"] == [] and records[1]["answer"] is None
    assert records[1]["prompt_tokens"] == records[1]["completion_tokens"] == 0

    prompt = prompts.load(PROMPT_FILE)
    pools = make_pools()
    for rec, gold in ((records[0], "the retriever ranks passages"), (records[3], "a judge")):
        assert rec["answer"] == gold
        row = pools.filter(pl.col("qid") == rec["qid"]).row(0, named=True)
        assert rec["docids"] == [p["docid"] for p in row["passages"]]
        convs = [
            prompt.render(row["query"], [prompts.format_passage(p["title"], p["text"])], passage_words=300)
            for p in row["passages"]
        ]
        assert rec["prompt_hashes"] == [prompts.messages_hash(c) for c in convs]
        expected = tiny_engine.answer_logprobs(convs, [gold] * len(convs))
        assert rec["logprobs"] == pytest.approx([e.logprob for e in expected], abs=1e-4)
        assert rec["n_tokens"] == [e.n_tokens for e in expected]
        assert rec["prompt_tokens"] == sum(e.prompt_tokens for e in expected)
        assert rec["completion_tokens"] == sum(e.n_tokens for e in expected)
        assert rec["logprobs"][0] != pytest.approx(rec["logprobs"][1])  # the passage matters

    # sum and mean tables from the same shard, without rescoring
    stats_sum = replug.merge([out], files / "replug-sum.parquet", "sum", [files / "pool.parquet"])
    stats_mean = replug.merge([out], files / "replug-mean.parquet", "mean")
    by_sum = pl.read_parquet(files / "replug-sum.parquet")
    by_mean = pl.read_parquet(files / "replug-mean.parquet")
    assert by_sum.schema == pl.Schema(replug.TABLE_SCHEMA)
    assert by_sum["qid"].to_list() == ["q0"] * 3 + ["q3"] * 3
    assert by_sum["docid"].to_list() == records[0]["docids"] + records[3]["docids"]
    assert by_sum["utility"].to_list() == by_sum["logprob"].to_list()
    assert by_mean["utility"].to_list() == pytest.approx((by_mean["logprob"] / by_mean["n_tokens"]).to_list())
    assert by_mean.drop("utility").equals(by_sum.drop("utility"))
    assert by_sum["prompt_hash"].to_list() == records[0]["prompt_hashes"] + records[3]["prompt_hashes"]
    assert stats_sum["scored"] == 2 and stats_sum["no_answer"] == 2 and stats_sum["pairs"] == 6
    assert stats_sum["length"] == "sum" and stats_mean["length"] == "mean"
    assert stats_sum["prompt_tokens"] == sum(r["prompt_tokens"] for r in records)


def test_answer_choice(files):
    engine = FakeScorer()
    _score(files, engine, files / "longest.jsonl", answer="longest")
    assert engine.calls == [["the retriever ranks passages"] * 3 + ["the longest answer of them all"] * 3]


def _killed(files, out, batch_queries=1, fail_on_call=2):
    with pytest.raises(RuntimeError, match="simulated kill"):
        _score(files, FakeScorer(fail_on_call), out, batch_queries=batch_queries)
    assert not out.exists()
    partial = out.with_name(out.name + ".partial")
    assert partial.exists()
    return partial


def test_resume_after_a_kill(files):
    reference = files / "reference.jsonl"
    _score(files, FakeScorer(), reference, batch_queries=1)
    out = files / "killed.jsonl"
    partial = _killed(files, out)  # q0 scored, q1 and q2 (no answer) recorded, then the call for q3 dies
    assert [json.loads(line).get("qid") for line in partial.read_text().splitlines()[1:]] == [
        "q0",
        "q1",
        "q2",
    ]
    engine = FakeScorer()
    summary = _score(files, engine, out, batch_queries=1)
    assert summary["resumed_batches"] == 3 and summary["queries_run"] == 1
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 3  # only q3's passages
    assert out.read_text() == reference.read_text()
    assert not partial.exists()


def test_resume_starts_over_when_the_answers_change(files):
    out = files / "killed.jsonl"
    _killed(files, out)
    answers = pl.read_parquet(files / "answers.parquet").with_columns(
        pl.when(pl.col("qid") == "q0")
        .then(pl.lit(["a new gold answer"]))
        .otherwise("answers")
        .alias("answers")
    )
    answers.write_parquet(files / "answers.parquet")
    engine = FakeScorer()
    summary = _score(files, engine, out, batch_queries=1)
    assert summary["resumed_batches"] == 0
    assert [a[0] for a in engine.calls] == ["a new gold answer", "a judge"]


def test_score_shard_bad_inputs(files, tmp_path):
    engine = FakeScorer()
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"qid": ["q0"], "answer": ["x"]}).write_parquet(bad)
    with pytest.raises(InputFormatError, match=r"bad.parquet: missing columns \['answers'\]"):
        replug.score_shard(files / "pool.parquet", bad, PROMPT_FILE, LLM, tmp_path / "o.jsonl", engine=engine)
    pl.DataFrame({"qid": ["q0"], "answers": ["x"]}).write_parquet(bad)
    with pytest.raises(InputFormatError, match="'answers' must be a list of strings"):
        replug.score_shard(files / "pool.parquet", bad, PROMPT_FILE, LLM, tmp_path / "o.jsonl", engine=engine)
    pl.DataFrame({"qid": ["q0", "q0"], "answers": [["x"], ["y"]]}).write_parquet(bad)
    with pytest.raises(InputFormatError, match="query 'q0' repeats"):
        replug.score_shard(files / "pool.parquet", bad, PROMPT_FILE, LLM, tmp_path / "o.jsonl", engine=engine)

    with pytest.raises(InputFormatError, match="output is 'selection', REPLUG scoring needs 'answer'"):
        replug.score_shard(
            files / "pool.parquet",
            files / "answers.parquet",
            PROMPTS / "relsel.yaml",
            LLM,
            tmp_path / "o.jsonl",
        )
    shows = tmp_path / "shows.yaml"
    shows.write_text(
        "output: answer\nopening:\n  - role: user\n    content: 'Q: {query} P: {passages} A: {answer}'\n"
    )
    with pytest.raises(InputFormatError, match=r"shows \{answer\}"):
        replug.score_shard(
            files / "pool.parquet", files / "answers.parquet", shows, LLM, tmp_path / "o.jsonl"
        )
    with pytest.raises(ValueError, match="unknown answer choice 'all'"):
        _score(files, engine, tmp_path / "o.jsonl", answer="all")
    with pytest.raises(NotImplementedError, match="openai engine cannot score answers"):
        replug.score_shard(
            files / "pool.parquet",
            files / "answers.parquet",
            PROMPT_FILE,
            {"engine": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"},
            tmp_path / "o.jsonl",
        )
    with pytest.raises(ValueError, match="must end with the assistant's answer"):
        replug.AnswerScorer(engine).chat([[{"role": "user", "content": "q"}]])
    assert engine.calls == []
    assert not (tmp_path / "o.jsonl").exists()


def test_merge_errors(files, tmp_path):
    out = files / "shard.jsonl"
    _score(files, FakeScorer(), out)
    with pytest.raises(ValueError, match="unknown length normalisation 'median'"):
        replug.merge([out], tmp_path / "t.parquet", "median")
    with pytest.raises(InputFormatError, match="query 'q0' is in more than one shard"):
        replug.merge([out, out], tmp_path / "t.parquet")
    bigger = tmp_path / "pool6.parquet"
    make_pools(6).write_parquet(bigger)
    with pytest.raises(ValueError, match=r"2 pool queries have no record, e.g. \['q4', 'q5'\]"):
        replug.merge([out], tmp_path / "t.parquet", pool_files=[bigger])
    other = tmp_path / "relsel.jsonl"
    other.write_text(json.dumps({"qid": "q0", "step": "relsel"}) + "\n")
    with pytest.raises(InputFormatError, match="a 'relsel' record, not replug"):
        replug.merge([other], tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    stats = replug.merge([empty], tmp_path / "t.parquet")
    assert stats["queries"] == 0 and pl.read_parquet(tmp_path / "t.parquet").schema == pl.Schema(
        replug.TABLE_SCHEMA
    )
