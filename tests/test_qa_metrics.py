"""QA metrics against hand-computed values and against independent reference implementations.

Oracles: hand counts (n-gram matches, LCS lengths, reference lengths) written out below; rouge-score and
sacrebleu for the "squad" scheme; and, when the package `pycocoevalcap` (the coco-caption scorers the
official MS MARCO QnA script downloads) is importable, its Bleu/Rouge on text tokenised as the script's
`normalize_batch` does. The expected spaCy tokens follow spaCy's English tokenizer rules (contractions
split off, "U.S." kept whole by its exception list, "%" split as a suffix, hyphens between letters as
infixes).
"""

from __future__ import annotations

import functools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utilanno.annotate import parsing
from utilanno.rag.qa_metrics import (
    COCO_SMALL,
    COCO_TINY,
    ROUGE_BETA,
    SCHEMES,
    corpus_bleu,
    exact_match,
    hit,
    lcs,
    normalize,
    rouge_l,
    token_f1,
    tokenize,
)

TIGHT = {"rel": 1e-13, "abs": 0.0}  # tighter than the coco epsilons, so dropping one of them is caught

# --- SQuAD normalisation, EM, F1 (hand-computed) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear & the fig.", "apple pear fig"),
        ("Theatre at the THEATER", "theatre at theater"),  # articles only as whole words
        ("  \t\n", ""),
        ("U.S.A.", "usa"),
        ("rock-'n'-roll", "rocknroll"),
        ("A", ""),  # upper-case article: lower-cased first, then dropped
        ("x\u00a0y", "x y"),  # any whitespace collapses
    ],
)
def test_normalize_is_squads(text, want):
    assert normalize(text) == want
    assert normalize(text, "squad") == want
    assert tokenize(text) == want.split()


def test_exact_match_takes_the_best_gold_answer():
    assert exact_match("The Eiffel tower.", ["eiffel tower", "Paris"]) == 1.0
    assert exact_match("Paris, France", ["eiffel tower", "Paris"]) == 0.0
    assert exact_match("Paris", ["eiffel tower", "Paris"]) == 1.0  # the match is not the first gold
    assert exact_match("Paris", ["Paris", "eiffel tower"]) == 1.0  # nor only the first
    assert exact_match("paris france", ["Paris"]) == 0.0  # equality, not containment
    assert exact_match("anything", []) == 0.0
    assert isinstance(exact_match("a", ["a"]), float)


def test_token_f1_hand_computed():
    # pred "cat sat on mat" vs gold "cat on mat": 3 common, P = 3/4, R = 3/3, F1 = 6/7
    assert token_f1("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(6 / 7)
    # and the other way round: P = 3/3, R = 3/4
    assert token_f1("a cat on a mat", ["the cat sat on the mat"]) == pytest.approx(6 / 7)
    # repeated tokens are clipped: one "yes" of three matches
    assert token_f1("yes yes yes", ["yes no"]) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert token_f1("blue", ["red", "light blue"]) == pytest.approx(2 * 1 * 0.5 / 1.5)  # best of the two
    assert token_f1("blue", ["light blue", "red"]) == pytest.approx(2 * 1 * 0.5 / 1.5)  # in either order
    assert token_f1("Blue!", ["blue"]) == 1.0  # SQuAD-normalised
    assert token_f1("", [""]) == 1.0  # both empty after normalisation
    assert token_f1("the", ["cat"]) == 0.0
    assert token_f1("cat", ["the"]) == 0.0
    assert token_f1("cat", ["dog"]) == 0.0
    assert token_f1("x", []) == 0.0


# --- the official MS MARCO tokenisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("I don't know.", "i do n't know ."),  # contraction split, punctuation kept as a token
        ("It rose 3.5% in the U.S.", "it rose 3.5 % in the u.s."),  # "U.S." one token, "%" split off
        ("state-of-the-art", "state - of - the - art"),  # hyphens between letters are tokens
        ("Hello,\nWorld!", "hello ,  world !"),  # the newline token is stripped to "", leaving two spaces
        ("paris\n\nfrance", "paris  france"),
        ("Mr. Smith's car", "mr. smith 's car"),
        ("", ""),
    ],
)
def test_msmarco_normalisation_is_spacy_tokens_stripped_and_lowercased(text, want):
    assert normalize(text, "msmarco") == want
    assert tokenize(text, "msmarco") == want.split()  # BLEU's tokens: no empty strings


@pytest.mark.parametrize(
    ("text", "squad", "msmarco"),
    [
        ("don't", ["dont"], ["do", "n't"]),
        ("U.S.", ["us"], ["u.s."]),
        ("3.5%", ["35"], ["3.5", "%"]),
        ("well-known", ["wellknown"], ["well", "-", "known"]),
        ("The cat.", ["cat"], ["the", "cat", "."]),  # articles and punctuation stay in msmarco
    ],
)
def test_schemes_tokenise_differently(text, squad, msmarco):
    assert tokenize(text, "squad") == squad
    assert tokenize(text, "msmarco") == msmarco


def test_unknown_scheme_is_an_error():
    assert SCHEMES == ("squad", "msmarco")
    for call in (
        lambda: normalize("x", "SQuAD"),
        lambda: tokenize("x", "spacy"),
        lambda: rouge_l("x", ["x"], scheme="coco"),
        lambda: corpus_bleu(["x"], [["x"]], scheme="coco"),
    ):
        with pytest.raises(ValueError, match="unknown tokenisation scheme"):
            call()


# --- ROUGE-L ------------------------------------------------------------------------------------------------


def _f(p, r, beta=ROUGE_BETA):
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def test_lcs_hand_computed():
    assert lcs("a b c d e".split(), "a c e f".split()) == 3
    assert lcs("a c e f".split(), "a b c d e".split()) == 3
    assert lcs([], ["x"]) == 0
    assert lcs(["x"], []) == 0
    assert lcs("x y".split(), "y x".split()) == 1
    assert lcs("a a b".split(), "a b b".split()) == 2
    assert lcs("q a b c".split(), "a b c".split()) == 3


def test_rouge_l_hand_computed_with_two_references():
    assert ROUGE_BETA == 1.2
    # pred "police killed gunman" (3 tokens); refs "police kill gunman" and "gunman police killed": LCS 2 each
    # -> P = max(2/3, 2/3), R = max(2/3, 2/3); with beta 1.2 F = 2/3 as P = R
    got = rouge_l("police killed the gunman", ["police kill the gunman", "the gunman police killed"])
    assert got == pytest.approx(2 / 3)
    # best precision and best recall may come from different references:
    # pred "b c": ref1 "b c d e" LCS 2 -> P 1, R 1/2; ref2 "b" LCS 1 -> P 1/2, R 1; so P = 1, R = 1
    assert rouge_l("b c", ["b c d e", "b"]) == pytest.approx(1.0)
    assert rouge_l("b c", ["b", "b c d e"]) == pytest.approx(1.0)
    # P = 1 (ref "b c d e"), R = 1/2: recall weighs beta^2 = 1.44 times precision
    assert rouge_l("b c", ["b c d e"]) == pytest.approx(2.44 * 0.5 / (0.5 + 1.44))
    assert rouge_l("b c d e", ["b c"]) == pytest.approx(2.44 * 0.5 / (1 + 1.44 * 0.5))
    assert rouge_l("b c", ["b c d e"], beta=1.0) == pytest.approx(2 / 3)
    assert rouge_l("", ["x"]) == 0.0
    assert rouge_l("x", []) == 0.0
    assert rouge_l("x", ["the"]) == 0.0  # the only reference normalises to nothing
    assert rouge_l("x", ["y"]) == 0.0


def test_rouge_l_msmarco_hand_computed():
    # contraction: [i do n't know] vs [i do not know], LCS 3 -> P = R = 3/4; SQuAD: [i dont know] vs
    # [i do not know], LCS 2 -> P 2/3, R 1/2
    assert rouge_l("I don't know", ["I do not know"], scheme="msmarco") == pytest.approx(3 / 4)
    assert rouge_l("I don't know", ["I do not know"]) == pytest.approx(_f(2 / 3, 1 / 2))
    # [u.s. dollars] vs [us dollars]: LCS 1; SQuAD makes both "us dollars"
    assert rouge_l("U.S. dollars", ["US dollars"], scheme="msmarco") == pytest.approx(1 / 2)
    assert rouge_l("U.S. dollars", ["US dollars"]) == pytest.approx(1.0)
    # [3.5 %] vs [3.5 percent]: P = R = 1/2; SQuAD: [35] vs [35 percent]: P 1, R 1/2
    assert rouge_l("3.5%", ["3.5 percent"], scheme="msmarco") == pytest.approx(1 / 2)
    assert rouge_l("3.5%", ["3.5 percent"]) == pytest.approx(_f(1, 1 / 2))
    # [well - known] vs [well known]: LCS 2, P 2/3, R 1; SQuAD: [wellknown] vs [well known]: 0
    assert rouge_l("well-known", ["well known"], scheme="msmarco") == pytest.approx(_f(2 / 3, 1))
    assert rouge_l("well-known", ["well known"]) == 0.0
    # the article and the full stop are tokens: [the cat .] vs [cat]: P 1/3, R 1
    assert rouge_l("The cat.", ["cat"], scheme="msmarco") == pytest.approx(_f(1 / 3, 1))


def test_rouge_l_msmarco_keeps_coco_empty_tokens():
    # coco's rouge.py splits the normalised string on " ": the stripped newline token is an empty token
    # [paris, "", france] vs [paris , france] -> LCS 2 of 3 each way
    assert rouge_l("paris\n\nfrance", ["Paris, France"], scheme="msmarco") == pytest.approx(2 / 3)
    # an empty reference is [""], which the empty token of the answer matches: P 1/3, R 1/1
    assert rouge_l("a  b", [""], scheme="msmarco") == pytest.approx(_f(1 / 3, 1))
    # an empty answer is [""]: nothing in common with a real reference
    assert rouge_l("", ["x"], scheme="msmarco") == 0.0
    assert rouge_l("x", [], scheme="msmarco") == 0.0


def test_rouge_l_msmarco_best_precision_and_recall_in_any_reference_order():
    refs = ["The answer is 42.", "42", "It is forty-two"]
    # pred [it is 42 .] (4): ref1 [the answer is 42 .] LCS 3 -> P 3/4, R 3/5; ref2 [42] LCS 1 -> P 1/4,
    # R 1; ref3 [it is forty - two] LCS 2 -> P 2/4, R 2/5. Best P 3/4 (ref1), best R 1 (ref2).
    want = _f(3 / 4, 1)
    for order in (refs, refs[::-1], [refs[1], refs[2], refs[0]]):
        assert rouge_l("It is 42.", order, scheme="msmarco") == pytest.approx(want)


rouge_words = st.sampled_from("cat dog sat on mat red blue fish 42 ran".split())
SENTENCES = st.lists(rouge_words, min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(SENTENCES, SENTENCES)
def test_rouge_l_equals_rouge_score_with_one_reference_and_beta_1(pred, ref):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    want = scorer.score(" ".join(ref), " ".join(pred))["rougeL"].fmeasure
    assert rouge_l(" ".join(pred), [" ".join(ref)], beta=1.0) == pytest.approx(want, abs=1e-12)
    assert rouge_l(" ".join(pred), [" ".join(ref)], beta=1.0, scheme="msmarco") == pytest.approx(
        want, abs=1e-12
    )


# --- BLEU: the SQuAD scheme (textbook BLEU) ----------------------------------------------------------------


def test_corpus_bleu_hand_computed():
    # "w x y z" vs ref "w x y q": 1-grams 3/4, 2-grams 2/3, 3-grams 1/2; lengths equal -> no brevity penalty
    got = corpus_bleu(["w x y z"], [["w x y q"]], n=3)
    assert got == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3))
    assert corpus_bleu(["w x y z"], [["w x y q"]], n=1) == pytest.approx(3 / 4)
    assert corpus_bleu(["w x y z"], [["w x y z"]]) == 1.0  # BLEU-4 by default (no 5-gram needed)
    # a short answer is penalised against the closest reference length (3, not 6)
    short = corpus_bleu(["w x"], [["w x y", "w x y z u v"]], n=2)
    assert short == pytest.approx(math.exp(1 - 3 / 2) * 1.0)
    # closest-length ties go to the shorter reference (2, not 4): no penalty, in either order
    assert corpus_bleu(["w x y"], [["w x", "w x y z"]], n=3) == pytest.approx(1.0)
    assert corpus_bleu(["w x y"], [["w x y z", "w x"]], n=3) == pytest.approx(1.0)
    # counts are summed over the corpus before the precision is taken
    two = corpus_bleu(["w x y z", "w x y z"], [["w x y z"], ["q r s t"]], n=1)
    assert two == pytest.approx(4 / 8)
    assert corpus_bleu(["q"], [["w x"]], n=1) == 0.0
    assert corpus_bleu(["w x"], [["w y"]], n=2) == 0.0  # an order without a match, unsmoothed
    assert corpus_bleu(["w"], [["w"]], n=2) == 0.0  # no 2-gram at all
    assert corpus_bleu(["w"], [["w"]], n=1) == 1.0  # a one-token corpus is fine at n = 1
    # an answer shorter than n adds no n-grams (not a negative or a minimum count): 2-grams 3/3
    assert corpus_bleu(["w x y z", "w"], [["w x y z"], ["w"]], n=2) == 1.0
    assert corpus_bleu([""], [["w"]], n=1) == 0.0
    assert corpus_bleu(["w"], [[]], n=1) == 0.0  # no references: one empty reference, nothing matches
    assert corpus_bleu([], [], n=4) == 0.0
    with pytest.raises(ValueError, match="2 predictions but 1"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least 1"):
        corpus_bleu(["a"], [["a"]], n=0)


CORPUS = st.lists(st.tuples(SENTENCES, st.lists(SENTENCES, min_size=1, max_size=3)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(CORPUS, st.sampled_from([1, 2, 3, 4]))
def test_corpus_bleu_equals_sacrebleu(corpus, n):
    sacrebleu = pytest.importorskip("sacrebleu")
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


# --- BLEU: the official MS MARCO scheme (coco-caption BLEU on spaCy tokens) --------------------------------


def coco(matches, totals, hyp_len, ref_len):
    """coco-caption's BLEU-n from hand-counted corpus totals (n = len(matches)), as bleu_scorer.py has it."""
    p = 1.0
    for m, t in zip(matches, totals, strict=True):
        p *= (m + 1e-15) / (t + 1e-9)
    ratio = (hyp_len + 1e-15) / (ref_len + 1e-9)
    return p ** (1 / len(matches)) * (math.exp(1 - 1 / ratio) if ratio < 1 else 1.0)


def test_coco_constants():
    assert (COCO_TINY, COCO_SMALL) == (1e-15, 1e-9)


def test_msmarco_bleu_contraction_and_smoothed_zero_orders():
    # [i do n't know .] vs [i do not know .]: matches 4/5, 2/4, 0/3, 0/2; lengths 5 and 5
    pred, refs = ["I don't know."], [["I do not know."]]
    counts = ([4, 2, 0, 0], [5, 4, 3, 2])
    for n in (1, 2, 3, 4):
        want = coco(counts[0][:n], counts[1][:n], 5, 5)
        assert corpus_bleu(pred, refs, n=n, scheme="msmarco") == pytest.approx(want, **TIGHT)
    # the orders without a match give tiny, not zero, values
    assert 0 < corpus_bleu(pred, refs, n=3, scheme="msmarco") < 1e-4
    assert 0 < corpus_bleu(pred, refs, n=4, scheme="msmarco") < 1e-4
    # SQuAD tokens [i dont know] vs [i do not know]: 2/3 and no 2-gram match -> textbook BLEU-2 is 0
    assert corpus_bleu(pred, refs, n=2) == 0.0
    assert corpus_bleu(pred, refs, n=1) == pytest.approx(2 / 3 * math.exp(1 - 4 / 3))


def test_msmarco_bleu_equal_lengths_still_get_coco_brevity_factor():
    # [w x] vs [w x]: all matches, but ratio (2 + 1e-15) / (2 + 1e-9) < 1
    got = corpus_bleu(["w x"], [["w x"]], n=2, scheme="msmarco")
    assert got == pytest.approx(coco([2, 1], [2, 1], 2, 2), **TIGHT)
    assert got < 1.0
    assert corpus_bleu(["w x"], [["w x"]], n=2) == 1.0  # the textbook formula


def test_msmarco_bleu_clips_by_the_best_reference_and_picks_the_closest_length():
    # [the the the cat] vs [the cat] and [the the dog]: 1-grams "the" clipped to 2 (ref2) + "cat" = 3/4;
    # 2-grams (the the) x2 clipped to 1 + (the cat) 1 = 2/3; 3-grams 0/2; 4-grams 0/1.
    # Closest reference length to 4: 3 -> no brevity penalty.
    refs = ["the cat", "the the dog"]
    for order in (refs, refs[::-1]):
        for n in (1, 2, 3, 4):
            want = coco([3, 2, 0, 0][:n], [4, 3, 2, 1][:n], 4, 3)
            assert corpus_bleu(["the the the cat"], [order], n=n, scheme="msmarco") == pytest.approx(
                want, **TIGHT
            )


def test_msmarco_bleu_closest_length_ties_go_to_the_shorter_reference():
    # [w x y] vs [w x] (2) and [w x y z] (4): both 1 away -> 2; precisions 3/3, 2/2, 1/1, ratio 3/2
    for refs in (["w x", "w x y z"], ["w x y z", "w x"]):
        want = coco([3, 2, 1], [3, 2, 1], 3, 2)
        assert corpus_bleu(["w x y"], [refs], n=3, scheme="msmarco") == pytest.approx(want, **TIGHT)
    # the shorter one wins only on ties: [w x y] vs [w] (1) and [w x y z] (4) -> 4, so penalised
    want = coco([3, 2, 1], [3, 2, 1], 3, 4)
    assert corpus_bleu(["w x y"], [["w", "w x y z"]], n=3, scheme="msmarco") == pytest.approx(want, **TIGHT)
    assert want < 0.8


def test_msmarco_bleu_sums_over_the_corpus_before_dividing():
    # answer 1 [w x] vs [w x y z]: 2/2 1-grams, lengths 2 vs 4; answer 2 [w x y z u v] vs [w x y z]:
    # 4/6, lengths 6 vs 4. Corpus: 6/8, lengths 8 vs 8 (so only coco's epsilon brevity factor).
    preds, refs = ["w x", "w x y z u v"], [["w x y z"], ["w x y z"]]
    assert corpus_bleu(preds, refs, n=1, scheme="msmarco") == pytest.approx(coco([6], [8], 8, 8), **TIGHT)
    # 2-grams: 1/1 + 3/5 = 4/6
    assert corpus_bleu(preds, refs, n=2, scheme="msmarco") == pytest.approx(
        coco([6, 4], [8, 6], 8, 8), **TIGHT
    )
    # an answer shorter than n adds no n-grams: [w x y z] + [w] -> 1-grams 5/5, 2-grams 3/3
    got = corpus_bleu(["w x y z", "w"], [["w x y z"], ["w"]], n=2, scheme="msmarco")
    assert got == pytest.approx(coco([5, 3], [5, 3], 5, 5), **TIGHT)


def test_msmarco_bleu_brevity_penalty():
    # [w x] vs [w x y z u]: ratio 2/5 -> exp(1 - 5/2)
    got = corpus_bleu(["w x"], [["w x y z u"]], n=1, scheme="msmarco")
    assert got == pytest.approx(coco([2], [2], 2, 5), **TIGHT)
    assert got == pytest.approx(math.exp(1 - 5 / 2), rel=1e-8)
    # one token longer than the reference: no penalty at all
    assert corpus_bleu(["w x y"], [["w x"]], n=1, scheme="msmarco") == pytest.approx(
        coco([2], [3], 3, 2), **TIGHT
    )
    assert corpus_bleu(["w x y"], [["w x"]], n=1, scheme="msmarco") == pytest.approx(2 / 3, rel=1e-8)


def test_msmarco_bleu_spacy_tokens():
    # [it rose 3.5 % in the u.s.] (7) vs [the rate rose 3.5 % .] (6): 1-grams rose, 3.5, %, the -> 4/7;
    # 2-grams (rose 3.5) (3.5 %) -> 2/6; 3-grams (rose 3.5 %) -> 1/5; 4-grams 0/4; closest length 6 < 7.
    pred, refs = ["It rose 3.5% in the U.S."], [["The rate rose 3.5%."]]
    want = coco([4, 2, 1, 0], [7, 6, 5, 4], 7, 6)
    assert corpus_bleu(pred, refs, n=4, scheme="msmarco") == pytest.approx(want, **TIGHT)
    assert corpus_bleu(pred, refs, n=3, scheme="msmarco") == pytest.approx(
        coco([4, 2, 1], [7, 6, 5], 7, 6), **TIGHT
    )
    # whitespace tokens do not count in BLEU: [paris france] vs [paris france] (BLEU drops empty tokens)
    assert corpus_bleu(["paris\n\nfrance"], [["Paris France"]], n=2, scheme="msmarco") == pytest.approx(
        coco([2, 1], [2, 1], 2, 2), **TIGHT
    )


def test_msmarco_bleu_degenerate_inputs():
    assert corpus_bleu([""], [["w x"]], n=4, scheme="msmarco") == 0.0  # brevity factor underflows to 0
    assert corpus_bleu([], [], n=4, scheme="msmarco") == 0.0
    assert corpus_bleu(["w"], [[]], n=1, scheme="msmarco") == pytest.approx(coco([0], [1], 1, 0), **TIGHT)
    with pytest.raises(ValueError, match="1 predictions but 2"):
        corpus_bleu(["a"], [["a"], ["b"]], scheme="msmarco")


# --- against pycocoevalcap (the scorers ms_marco_eval.py runs), when installed -----------------------------

MSMARCO_WORDS = st.sampled_from(
    [*"The cat don't U.S. 3.5% well-known it's New York , . is a 42".split(), "\n"]
)
MSMARCO_TEXTS = st.lists(MSMARCO_WORDS, min_size=0, max_size=15).map(" ".join)
MSMARCO_CORPUS = st.lists(
    st.tuples(MSMARCO_TEXTS, st.lists(MSMARCO_TEXTS.filter(lambda s: s.strip()), min_size=1, max_size=3)),
    min_size=1,
    max_size=8,
)


@functools.cache
def _script_nlp():
    import spacy

    return spacy.blank("en")


def _script_normalize(text: str) -> str:
    """ms_marco_eval.normalize_batch on one text, written from the script (not the module under test)."""
    return " ".join(str(w).strip().lower() for w in _script_nlp()(text))


@settings(max_examples=100, deadline=None)
@given(MSMARCO_CORPUS)
def test_msmarco_scores_equal_pycocoevalcap(corpus):
    bleu = pytest.importorskip("pycocoevalcap.bleu.bleu")
    rouge = pytest.importorskip("pycocoevalcap.rouge.rouge")
    preds = [p for p, _ in corpus]
    refs = [rs for _, rs in corpus]
    gts = {i: [_script_normalize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [_script_normalize(p)] for i, p in enumerate(preds)}
    want_bleu, _ = bleu.Bleu(4).compute_score(gts, res, verbose=0)
    for n in (1, 2, 3, 4):
        assert corpus_bleu(preds, refs, n=n, scheme="msmarco") == pytest.approx(want_bleu[n - 1], rel=1e-12)
    _, want_rouge = rouge.Rouge().compute_score(gts, res)
    got = [rouge_l(p, rs, scheme="msmarco") for p, rs in corpus]
    assert got == pytest.approx(list(want_rouge), abs=1e-12)


# --- recall and answer extraction ---------------------------------------------------------------------------


def test_hit_is_any_positive_in_the_passages_given():
    assert hit(["d1", "d2"], {"d2"}) == 1.0
    assert hit(["d2", "d1"], {"d2"}) == 1.0
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


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_answer_extraction_never_fails(raw):
    text = parsing.rag_answer_text(raw)
    assert isinstance(text, str)
    assert text == text.strip()
    assert text in raw  # always a piece of what the model wrote
    assert parsing.rag_answer(raw).status in ("parsed", "empty")
    for metric in (exact_match, token_f1, rouge_l):
        assert 0.0 <= metric(text, ["gold answer", raw]) <= 1.0
    assert 0.0 <= rouge_l(text, ["gold answer", raw], scheme="msmarco") <= 1.0
    for scheme in SCHEMES:
        assert 0.0 <= corpus_bleu([text], [[raw]], scheme=scheme) <= 1.0
