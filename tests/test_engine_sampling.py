"""Where the sampling settings are applied: the transformers engine's `generate` arguments, its batching,
end-of-sequence cut and guides, on a fake tokenizer and model (no weights; only torch is needed), so every
setting is checked in milliseconds, without a model build (tests/test_engines.py runs a tiny real model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from utilanno.annotate.engines import Generation, Sampling

EOS, PAD, OTHER_EOS = 2, 0, 7


class FakeTokenizer:
    """Chat template = contents joined by '|' plus '>'; one token per character (ord % 40 + 3, so never PAD
    or EOS); left padding with PAD; decode writes the ids joined by spaces, EOS as <eos> unless special tokens
    are skipped."""

    pad_token_id = PAD

    def __init__(self):
        self.calls: list[dict] = []

    def apply_chat_template(self, conversation, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "|".join(m["content"] for m in conversation) + ">"

    def __call__(self, texts, return_tensors, padding, add_special_tokens):
        import torch

        self.calls.append({"texts": texts, "add_special_tokens": add_special_tokens, "padding": padding})
        rows = [[ord(c) % 40 + 3 for c in t] for t in texts]
        width = max(len(r) for r in rows)

        class Enc(dict):
            def to(self, device):
                assert device == "cpu"
                return self

        return Enc(
            input_ids=torch.tensor([[PAD] * (width - len(r)) + r for r in rows]),
            attention_mask=torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
        )

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(
            "<eos>" if i == EOS else str(i) for i in ids if not (skip_special_tokens and i == EOS)
        )

    def __len__(self):
        return 50


class FakeModel:
    """`generate` appends the next scripted continuation to every row and records its keyword arguments."""

    def __init__(self, continuations):
        self.continuations = list(continuations)
        self.kwargs: list[dict] = []

    def generate(self, input_ids, attention_mask, **kwargs):
        import torch

        self.kwargs.append(kwargs)
        new = [self.continuations.pop(0) for _ in range(input_ids.shape[0])]
        width = max(len(c) for c in new)
        new = [c + [PAD] * (width - len(c)) for c in new]
        return torch.cat([input_ids, torch.tensor(new, dtype=input_ids.dtype)], dim=1)


def fake_engine(continuations, batch_size=8):
    torch = pytest.importorskip("torch")
    from utilanno.annotate.engines import transformers_engine

    engine = object.__new__(transformers_engine.TransformersEngine)
    seeds: list[int] = []
    engine.torch = SimpleNamespace(manual_seed=seeds.append, inference_mode=torch.inference_mode)
    engine.device, engine.batch_size, engine._pieces = "cpu", batch_size, None
    engine.chat_template_kwargs = {}
    engine.tokenizer, engine.model, engine.eos = FakeTokenizer(), FakeModel(continuations), {EOS, OTHER_EOS}
    return engine, seeds


def user(text):
    return [{"role": "user", "content": text}]


def test_greedy_generate_arguments():
    engine, seeds = fake_engine([[5, 6]])
    engine.chat([user("hi")], Sampling(temperature=0.0, top_p=0.5, top_k=3, max_tokens=9))
    assert engine.model.kwargs == [
        {
            "max_new_tokens": 9,
            "pad_token_id": PAD,
            "eos_token_id": [EOS, OTHER_EOS],
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
    ]
    assert seeds == []  # greedy decoding draws nothing: no seed is set
    assert engine.tokenizer.calls == [{"texts": ["hi>"], "add_special_tokens": False, "padding": True}]


@pytest.mark.parametrize(
    ("temperature", "top_k", "expected_top_k"),
    [(0.7, 20, 20), (1e-3, 1, 1), (2.0, 0, None), (1.0, -1, None)],
)
def test_sampled_generate_arguments(temperature, top_k, expected_top_k):
    """Any temperature above 0 samples, seeded by `seed`; top_k <= 0 means no top-k cut (vLLM's -1)."""
    engine, seeds = fake_engine([[5]])
    sampling = Sampling(temperature=temperature, top_p=0.9, top_k=top_k, max_tokens=4, seed=11)
    engine.chat([user("hi")], sampling)
    assert engine.model.kwargs == [
        {
            "max_new_tokens": 4,
            "pad_token_id": PAD,
            "eos_token_id": [EOS, OTHER_EOS],
            "do_sample": True,
            "temperature": temperature,
            "top_p": 0.9,
            "top_k": expected_top_k,
        }
    ]
    assert seeds == [11]


def test_generations_are_cut_after_the_first_end_token_and_counted():
    # prompts "ab>" (3 tokens) and "abcd>" (5), one batch: the first answer stops at EOS (counted, not in the
    # text), the second at the other end token; the third, alone in the next batch, never stops
    engine, _ = fake_engine([[5, EOS, 6, 8], [9, OTHER_EOS, EOS], [4, 4, 4]], batch_size=2)
    convs = [user("ab"), user("abcd"), [{"role": "system", "content": "s"}, *user("x")]]  # "s|x>": 4 tokens
    out = engine.chat(convs, Sampling(max_tokens=4))
    assert out == [Generation("5", 3, 2), Generation(f"9 {OTHER_EOS}", 5, 2), Generation("4 4 4", 4, 3)]
    assert [c["texts"] for c in engine.tokenizer.calls] == [["ab>", "abcd>"], ["s|x>"]]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 8])
def test_conversations_are_batched_in_order(batch_size):
    convs = [user("x" * (i + 1)) for i in range(5)]
    engine, _ = fake_engine([[10 + i] for i in range(5)], batch_size=batch_size)
    out = engine.chat(convs, Sampling(max_tokens=1))
    assert [g.text for g in out] == [str(10 + i) for i in range(5)]
    assert [g.prompt_tokens for g in out] == [i + 2 for i in range(5)]
    assert [g.completion_tokens for g in out] == [1] * 5
    expected = {1: [1, 1, 1, 1, 1], 2: [2, 2, 1], 3: [3, 2], 5: [5], 8: [5]}[batch_size]
    assert [len(c["texts"]) for c in engine.tokenizer.calls] == expected


def test_guides_go_to_their_own_conversations(monkeypatch):
    from utilanno.annotate.engines import transformers_engine

    made = []

    class Guide:
        def __init__(self, tokenizer, patterns, width, eos, pieces):
            made.append((list(patterns), width, set(eos), list(pieces)))

    monkeypatch.setattr(transformers_engine, "RegexGuide", Guide)
    engine, _ = fake_engine([[5]] * 6, batch_size=2)
    engine.chat(
        [user("a"), user("bb"), user("c"), user("d")], Sampling(max_tokens=1), [None, "P1", None, None]
    )
    # the first batch has a guide: one logits processor, over every token's text; the second batch has none
    pieces = [str(i) if i != EOS else "<eos>" for i in range(50)]
    assert made == [([None, "P1"], 3, {EOS, OTHER_EOS}, pieces)]
    assert [list(k) for k in engine.model.kwargs][1] == [
        "max_new_tokens",
        "pad_token_id",
        "eos_token_id",
        "do_sample",
        "temperature",
        "top_p",
        "top_k",
    ]
    assert len(engine.model.kwargs[0]["logits_processor"]) == 1
    assert isinstance(engine.model.kwargs[0]["logits_processor"][0], Guide)
    engine.chat([user("abcd"), user("e")], Sampling(max_tokens=1), ["P2", "P3"])
    assert made[1][:3] == (["P2", "P3"], 5, {EOS, OTHER_EOS})


# ---------------------------------------------------------------------------------------------------------
# The prompt and answer token ids of answer scoring (base.answer_token_ids), on a character tokenizer


class CharTokenizer:
    """Template: '<u>' + contents + '<a>' (the generation prompt); one id per character (its code point)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def apply_chat_template(self, conversation, tokenize, add_generation_prompt):
        self.calls.append(("template", tokenize, add_generation_prompt))
        return "".join(m["content"] for m in conversation) + ("<a>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens):
        self.calls.append(("tokenize", text, add_special_tokens))
        return {"input_ids": [ord(c) for c in text] + ([0] if add_special_tokens else [])}


def test_answer_token_ids_are_the_templated_prompt_then_the_answer_apart():
    from utilanno.annotate.engines import answer_token_ids

    tok = CharTokenizer()
    prompt, ids = answer_token_ids(tok, user("q?"), " Paris")
    assert prompt == [ord(c) for c in "q?<a>"] and ids == [ord(c) for c in " Paris"]
    assert tok.calls == [
        ("template", False, True),
        ("tokenize", "q?<a>", False),
        ("tokenize", " Paris", False),
    ]


@pytest.mark.parametrize("answer", ["", "   ", "\n", None, 3])
def test_answer_token_ids_need_a_non_empty_answer(answer):
    from utilanno.annotate.engines import answer_token_ids

    with pytest.raises(ValueError, match="non-empty string"):
        answer_token_ids(CharTokenizer(), user("q"), answer)


def test_answer_token_ids_need_tokens_on_both_sides():
    from utilanno.annotate.engines import answer_token_ids

    class Empty(CharTokenizer):
        def __init__(self, side):
            super().__init__()
            self.side = side

        def __call__(self, text, add_special_tokens):
            ids = super().__call__(text, add_special_tokens)["input_ids"]
            empty = (text.endswith("<a>")) == (self.side == "prompt")
            return {"input_ids": [] if empty else ids}

    with pytest.raises(ValueError, match="renders to no tokens"):
        answer_token_ids(Empty("prompt"), user("q"), "a")
    with pytest.raises(ValueError, match="tokenizes to no tokens"):
        answer_token_ids(Empty("answer"), user("q"), "a")
    # one token on each side is enough
    assert answer_token_ids(CharTokenizer(), [{"role": "user", "content": ""}], "a") == ([60, 97, 62], [97])


def test_check_pairs_needs_one_answer_per_conversation():
    from utilanno.annotate.engines.base import check_pairs

    check_pairs([user("a"), user("b")], ["x", "y"])
    check_pairs([], [])
    with pytest.raises(ValueError, match="2 conversations but 1 answers"):
        check_pairs([user("a"), user("b")], ["x"])
    with pytest.raises(ValueError, match="1 conversations but 2 answers"):
        check_pairs([user("a")], ["x", "y"])


def test_engine_context_manager_closes_and_the_base_cannot_score():
    from utilanno.annotate.engines import Engine

    closed = []

    class Closing(Engine):
        name = "closing"

        def close(self):
            closed.append(self)

    engine = Closing()
    with engine as entered:
        assert entered is engine and closed == []
    assert closed == [engine]
    with pytest.raises(RuntimeError, match="boom"), Closing() as other:
        raise RuntimeError("boom")
    assert closed == [engine, other]  # closed on errors too
    assert Engine().close() is None  # the base holds nothing
    with pytest.raises(NotImplementedError, match="^the closing engine cannot score answers$"):
        engine.answer_logprobs([user("q")], ["a"])
    with pytest.raises(NotImplementedError):
        Engine().chat([user("q")], Sampling())
