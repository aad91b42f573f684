"""Parsing LLM outputs into passage ids (PAPER-SPEC B.1, B.4): never fails, whatever the model wrote."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from utilanno.annotate import parsing
from utilanno.annotate.parsing import parse_answer, parse_ranking, parse_selection, strip_reasoning, topk_cut

STATUSES = {"parsed", "empty", "unparseable"}

FRAGMENTS = [
    "[3]",
    "[0]",
    "[17]",
    "[1]",
    "[2]",
    "[20]",
    "[00]",
    "[01]",
    "[]",
    "[ ]",
    "[[1]]",
    "<think>",
    "</think>",
    "My selection:",
    "My selection:[].",
    " > ",
    ",",
    ".",
    " ",
    "\n",
    "\t",
    "abc",
    "[",
    "]",
    "think",
    "1",
    "[999999]",
    "[1234567]",
]
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=25).map("".join)
any_text = st.one_of(st.text(), fragment_text)
sizes = st.integers(min_value=0, max_value=40)
no_tags = fragment_text.filter(lambda s: "<think>" not in s and "</think>" not in s)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_REF_ID = re.compile(r"\[(\d+)\]")


def reference_ids(answer: str, n: int) -> list[int]:
    """The spec's reading: every `[k]` in order, 1-based -> 0-based, in range, first occurrence kept."""
    out: list[int] = []
    for m in _REF_ID.findall(answer):
        k = int(m) - 1
        if len(m) <= 6 and 0 <= k < n and k not in out:
            out.append(k)
    return out


# ---------------------------------------------------------------------------------------------------------
# Properties


@SETTINGS
@given(raw=any_text, n=sizes)
@example(raw="[0]", n=5)
@example(raw="<think>[1]", n=5)
@example(raw="", n=0)
def test_selection_properties(raw, n):
    p = parse_selection(raw, n)
    assert p.status in STATUSES
    assert all(isinstance(i, int) and 0 <= i < n for i in p.ids)
    assert len(set(p.ids)) == len(p.ids)
    assert p.ids == sorted(p.ids)
    assert p.ids == sorted(reference_ids(strip_reasoning(raw), n))
    assert (p.status == "empty") == (not strip_reasoning(raw).strip())
    if p.ids:
        assert p.status == "parsed"


@SETTINGS
@given(raw=any_text, n=sizes)
@example(raw="[3] > [1] > [3] > [20] > [2]", n=5)
def test_ranking_properties(raw, n):
    p = parse_ranking(raw, n)
    assert p.status in STATUSES
    assert all(0 <= i < n for i in p.ids)
    assert len(set(p.ids)) == len(p.ids)
    # first-occurrence order of the in-range ids of the answer part
    assert p.ids == reference_ids(strip_reasoning(raw), n)
    assert (p.status == "empty") == (not strip_reasoning(raw).strip())
    # selection and ranking see the same ids
    assert sorted(p.ids) == parse_selection(raw, n).ids


@SETTINGS
@given(raw=any_text)
def test_answer_and_strip_never_raise(raw):
    a = parse_answer(raw)
    assert a.status in {"parsed", "empty"}
    assert a.ids == []
    assert (a.status == "empty") == (not strip_reasoning(raw).strip())
    assert parsing.answer_text(raw) == strip_reasoning(raw).strip()
    stripped = strip_reasoning(raw)
    assert isinstance(stripped, str)
    assert "</think>" not in stripped
    assert stripped in raw


@SETTINGS
@given(prefix=no_tags, n=sizes)
def test_zero_never_maps_to_a_passage(prefix, n):
    only_zero = prefix.replace("[", "(").replace("]", ")") + "[0] [00] [000]"
    assert parse_selection(only_zero, n).ids == []
    assert parse_ranking(only_zero, n).ids == []


@SETTINGS
@given(before=no_tags, inner=no_tags, after=no_tags, n=st.integers(1, 30))
def test_ids_inside_closed_think_are_ignored(before, inner, after, n):
    raw = before + "<think>" + inner + "</think>" + after
    visible = reference_ids(after, n)
    assert parse_ranking(raw, n).ids == visible
    assert parse_selection(raw, n).ids == sorted(visible)
    # nothing from the reasoning leaks in
    assert strip_reasoning(raw) == after


@SETTINGS
@given(before=no_tags, inner=no_tags, n=st.integers(1, 30))
def test_unclosed_think_is_cut_off(before, inner, n):
    """Reasoning cut short (no </think>) is dropped; text before it is the answer."""
    raw = before + "<think>" + inner
    assert strip_reasoning(raw) == before
    assert parse_ranking(raw, n).ids == reference_ids(before, n)
    if not before.strip():
        assert parse_selection(raw, n) == parsing.Parsed("empty", [])
        assert parse_answer(raw).status == "empty"


@SETTINGS
@given(
    ranked=st.lists(st.integers(0, 100), unique=True, max_size=40),
    n=st.integers(0, 60),
    k=st.integers(1, 100),
)
def test_topk_cut_properties(ranked, n, k):
    cut = topk_cut(ranked, n, k)
    if not ranked:
        assert cut == []
        return
    assert cut == ranked[: max(1, (k * n) // 100)]
    assert 1 <= len(cut) <= len(ranked)


# ---------------------------------------------------------------------------------------------------------
# Examples


def test_selection_examples():
    assert parse_selection("My selection:[[1],[3]].", 16) == parsing.Parsed("parsed", [0, 2])
    assert parse_selection("My selection:[[3],[1],[3]].", 16).ids == [0, 2]
    assert parse_selection("My selection:[[1],[17]].", 16).ids == [0]
    assert parse_selection("My selection:[[16]].", 16).ids == [15]
    assert parse_selection("I think none of them.", 16) == parsing.Parsed("unparseable", [])
    assert parse_selection("   \n ", 16) == parsing.Parsed("empty", [])
    assert parse_selection("", 16) == parsing.Parsed("empty", [])
    # [0] is dropped (the released notebook's quirk marked the last passage) and nothing else is selected
    assert parse_selection("My selection:[[0]].", 5).ids == []
    assert parse_selection("My selection:[[0]].", 5).status == "unparseable"


def test_explicit_empty_selection_is_parsed():
    assert parse_selection("My selection:[].", 16) == parsing.Parsed("parsed", [])
    assert parse_selection("My selection:[ ].", 3) == parsing.Parsed("parsed", [])
    assert parse_selection("<think>maybe [2]</think>My selection:[].", 3) == parsing.Parsed("parsed", [])


def test_ranking_examples():
    assert parse_ranking("[3] > [1] > [3] > [20] > [2]", 5) == parsing.Parsed("parsed", [2, 0, 1])
    assert parse_ranking("[2] > [1]", 2).ids == [1, 0]
    # unmentioned passages are not appended (unlike RankGPT)
    assert parse_ranking("[4]", 10).ids == [3]
    assert parse_ranking("[0] > [6]", 5) == parsing.Parsed("unparseable", [])


def test_reasoning_examples():
    assert parse_selection("<think>[1] [2] [3]</think>My selection:[[4]].", 5).ids == [3]
    assert parse_ranking("<think>\n[5] > [1]\n</think>\n\n[2] > [1]", 5).ids == [1, 0]
    # a template that puts <think> into the prompt: the output only has the closing tag
    assert parse_selection("reasoning [1] ...</think>My selection:[[2]].", 5).ids == [1]
    assert parse_selection("<think>[1] [2] still thinking", 5) == parsing.Parsed("empty", [])
    assert parse_answer("<think>hmm</think>  Paris. ") == parsing.Parsed("parsed", [])
    assert parsing.answer_text("<think>hmm</think>  Paris. ") == "Paris."
    assert parse_answer("<think>hmm</think>  \n") == parsing.Parsed("empty", [])
    assert parse_answer("<think>never closed") == parsing.Parsed("empty", [])


def test_reopened_unclosed_think_after_close_is_cut_off():
    raw = "<think>a</think>My selection:[[1]].<think>no wait, [2]"
    assert "<think>" not in strip_reasoning(raw)
    assert 1 not in parse_selection(raw, 5).ids


@pytest.mark.parametrize(
    ("n_input", "k", "expected"),
    [(6, 10, 1), (30, 10, 3), (20, 50, 10), (9, 10, 1), (31, 10, 3), (10, 20, 2), (1, 10, 1)],
)
def test_topk_cut_examples(n_input, k, expected):
    ranked = list(range(100, 100 + n_input))
    assert topk_cut(ranked, n_input, k) == ranked[:expected]


def test_topk_cut_empty_and_short_rankings():
    assert topk_cut([], 30, 10) == []
    # the count is over the *input* passages; a shorter ranking gives what it has
    assert topk_cut(["a"], 30, 10) == ["a"]
    assert topk_cut(["a", "b", "c", "d"], 30, 10) == ["a", "b", "c"]


def test_reasoning_with_several_think_tags():
    # the answer follows the *last* closing tag, not the first or a middle one
    assert strip_reasoning("<think>a</think>[1]<think>b</think>[2]") == "[2]"
    assert strip_reasoning("x</think>y</think>z") == "z"
    assert parse_ranking("<think>[1]</think>[2]<think>[3]</think>[4] > [5]", 5).ids == [3, 4]
    # and stops at the *first* opening tag that is never closed, however many follow
    assert strip_reasoning("[1] <think> a <think> b") == "[1] "
    assert strip_reasoning("<think>r</think>[3]<think>x<think>y") == "[3]"
    assert parse_selection("[1]<think>[2]<think>[3]", 5).ids == [0]


def test_rag_answer_text_takes_the_text_after_the_last_answer_cue():
    assert parsing.rag_answer_text("Answer: Paris") == "Paris"
    assert parsing.rag_answer_text("  Paris is the capital.\n") == "Paris is the capital."  # no cue
    assert parsing.rag_answer_text("Answer: Lyon\nAnswer: Paris ") == "Paris"  # two cues: the last
    assert parsing.rag_answer_text("answer: a ANSWER : b Answer:c") == "c"  # three cues, any case and spacing
    assert parsing.rag_answer_text("<think>Answer: no</think>The answer is Paris") == "The answer is Paris"
    assert parsing.rag_answer_text("<think>x</think> Answer:  Rome <think>Answer: no") == "Rome"
    assert parsing.rag_answer_text("Answer:") == "" and parsing.rag_answer_text("") == ""


def test_rag_answer_status():
    assert parsing.rag_answer("Answer: Paris") == parsing.Parsed("parsed", [])
    assert parsing.rag_answer("Answer:   ") == parsing.Parsed("empty", [])
    assert parsing.rag_answer("<think>Paris</think>") == parsing.Parsed("empty", [])
    assert parsing.rag_answer("") == parsing.Parsed("empty", [])
