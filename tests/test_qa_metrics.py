"""QA metrics against hand-computed values and against rouge-score / sacrebleu on the same inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utilanno.annotate import parsing
from utilanno.rag.qa_metrics import corpus_bleu, exact_match, hit, lcs, normalize, rouge_l, token_f1

# --- normalisation, EM, F1 (hand-computed) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear & the fig.", "apple pear fig"),
        ("Theatre at the THEATER", "theatre at theater"),  # articles only as whole words
        ("  \t\n", ""),
        ("U.S.A.", "usa"),
        ("rock-'n'-roll", "rocknroll"),
    ],
)
def test_normalize_is_squads(text, want):
    assert normalize(text) == want


def test_exact_match_takes_the_best_gold_answer():
    assert exact_match("The Eiffel tower.", ["eiffel tower", "Paris"]) == 1.0
    assert exact_match("Paris, France", ["eiffel tower", "Paris"]) == 0.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_hand_computed():
    # pred "cat sat on mat" vs gold "cat on mat": 3 common, P = 3/4, R = 3/3, F1 = 6/7
    assert token_f1("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(6 / 7)
    # repeated tokens are clipped: one "yes" of three matches
    assert token_f1("yes yes yes", ["yes no"]) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert token_f1("blue", ["red", "light blue"]) == pytest.approx(2 * 1 * 0.5 / 1.5)  # best of the two
    assert token_f1("", [""]) == 1.0  # both empty after normalisation
    assert token_f1("the", ["cat"]) == 0.0
    assert token_f1("x", []) == 0.0


# --- ROUGE-L ------------------------------------------------------------------------------------------------


def test_lcs_hand_computed():
    assert lcs("a b c d e".split(), "a c e f".split()) == 3
    assert lcs([], ["x"]) == 0
    assert lcs("x y".split(), "y x".split()) == 1


def test_rouge_l_hand_computed_with_two_references():
    # pred "police killed gunman" (3 tokens); refs "police kill gunman" and "gunman police killed": LCS 2 each
    # -> P = max(2/3, 2/3), R = max(2/3, 2/3); with beta 1.2 F = 2/3 as P = R
    got = rouge_l("police killed the gunman", ["police kill the gunman", "the gunman police killed"])
    assert got == pytest.approx(2 / 3)
    # best precision and best recall may come from different references
    p, r = 2 / 2, 2 / 4  # pred "b c": ref1 "b c d e" LCS 2 -> P 1, R 0.5; ref2 "b" LCS 1 -> P 0.5, R 1
    p, r = max(p, 1 / 2), max(r, 1 / 1)
    assert rouge_l("b c", ["b c d e", "b"]) == pytest.approx((1 + 1.44) * p * r / (r + 1.44 * p))
    assert rouge_l("", ["x"]) == 0.0
    assert rouge_l("x", []) == 0.0


rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

SENTENCES = st.lists(
    st.sampled_from("cat dog sat on mat red blue fish 42 ran".split()), min_size=1, max_size=25
)


@settings(max_examples=200, deadline=None)
@given(SENTENCES, SENTENCES)
def test_rouge_l_equals_rouge_score_with_one_reference_and_beta_1(pred, ref):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    want = scorer.score(" ".join(ref), " ".join(pred))["rougeL"].fmeasure
    assert rouge_l(" ".join(pred), [" ".join(ref)], beta=1.0) == pytest.approx(want, abs=1e-12)


# --- BLEU ---------------------------------------------------------------------------------------------------


def test_corpus_bleu_hand_computed():
    # one answer "a b c d" (articles: use letters that are not articles) -> "w x y z" vs ref "w x y q"
    # 1-grams 3/4, 2-grams 2/3, 3-grams 1/2; lengths equal -> no brevity penalty
    got = corpus_bleu(["w x y z"], [["w x y q"]], n=3)
    assert got == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3))
    # a short answer is penalised against the closest reference length (3, not 6)
    short = corpus_bleu(["w x"], [["w x y", "w x y z u v"]], n=2)
    assert short == pytest.approx(math.exp(1 - 3 / 2) * 1.0)
    # counts are summed over the corpus before the precision is taken
    two = corpus_bleu(["w x y z", "w x y z"], [["w x y z"], ["q r s t"]], n=1)
    assert two == pytest.approx(4 / 8)
    assert corpus_bleu(["q"], [["w x"]], n=1) == 0.0
    assert corpus_bleu([], [], n=4) == 0.0
    with pytest.raises(ValueError, match="2 predictions but 1"):
        corpus_bleu(["a", "b"], [["a"]])


sacrebleu = pytest.importorskip("sacrebleu")

CORPUS = st.lists(st.tuples(SENTENCES, st.lists(SENTENCES, min_size=1, max_size=3)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(CORPUS, st.sampled_from([3, 4]))
def test_corpus_bleu_equals_sacrebleu(corpus, n):
    preds = [" ".join(p) for p, _ in corpus]
    refs = [[" ".join(r) for r in rs] for _, rs in corpus]
    width = max(map(len, refs))
    # sacrebleu takes reference streams; a missing reference is None
    streams = [[rs[i] if i < len(rs) else None for rs in refs] for i in range(width)]
    bleu = sacrebleu.metrics.BLEU(
        tokenize="none", smooth_method="none", max_ngram_order=n, effective_order=False
    )
    want = bleu.corpus_score(preds, streams).score / 100
    assert corpus_bleu(preds, refs, n=n) == pytest.approx(want, abs=1e-9)


# --- recall and answer extraction ---------------------------------------------------------------------------


def test_hit_is_any_positive_in_the_passages_given():
    assert hit(["d1", "d2"], {"d2"}) == 1.0
    assert hit(["d1", "d2"], {"d3"}) == 0.0
    assert hit([], {"d1"}) == 0.0


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Paris", "Paris"),
        ("  Answer: Paris\n", "Paris"),
        ("Question: where?\n\n Answer: Paris", "Paris"),
        ("<think>answer: Rome</think> The answer: Paris", "Paris"),
        ("<think>still thinking", ""),
        ("ANSWER:", ""),
        ("", ""),
    ],
)
def test_rag_answer_text(raw, want):
    assert parsing.rag_answer_text(raw) == want
    assert parsing.rag_answer(raw).status == ("parsed" if want else "empty")


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_answer_extraction_never_fails(raw):
    text = parsing.rag_answer_text(raw)
    assert isinstance(text, str)
    assert text == text.strip()
    assert text in raw  # always a piece of what the model wrote
    assert parsing.rag_answer(raw).status in ("parsed", "empty")
    for metric in (exact_match, token_f1, rouge_l):
        assert 0.0 <= metric(text, ["gold answer", raw]) <= 1.0
    assert 0.0 <= corpus_bleu([text], [[raw]]) <= 1.0
