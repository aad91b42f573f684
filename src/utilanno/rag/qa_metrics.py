"""QA metrics of the RAG stage (PAPER-SPEC G): EM and token F1 (NQ, HotpotQA), ROUGE-L and corpus BLEU-n
(MS MARCO QA), and the retrieval "Recall" column.

Two scoring schemes say how a text becomes tokens (`tokenize`) and, for BLEU, which formula is used:

``"squad"`` (EM, F1; the default everywhere)
    SQuAD's normalisation: lower case, punctuation and the articles a/an/the removed, whitespace collapsed.
    BLEU is the textbook corpus BLEU of Papineni et al. without smoothing (equal to sacrebleu with
    ``tokenize="none", smooth_method="none"``).

``"msmarco"`` (the official MS MARCO QnA scoring, for BLEU and ROUGE-L)
    What `Evaluation/ms_marco_eval.py` of microsoft/MSMARCO-Question-Answering does: every answer is run
    through spaCy's blank English tokenizer (`NlpEnglish(parser=False)` there, `spacy.blank("en")` here), each
    token is stripped of whitespace and lower-cased, and the tokens are joined by single spaces. Punctuation
    and articles stay (they are tokens). That string is then scored by the coco-caption scorers the script
    downloads (tylin/coco-caption `pycocoevalcap/bleu/bleu_scorer.py`, `pycocoevalcap/rouge/rouge.py`):

    - BLEU: `Bleu(4)` with `option='closest'`, at corpus level. Tokens are `str.split()` of the joined string.
      Per answer, n-gram counts are clipped by the most any one reference has and the reference length is
      the one closest to the answer's (ties: the shorter). Clipped matches, n-gram totals and both lengths
      are summed over the corpus; BLEU-n = (prod_{k<=n} (matches_k + 1e-15) / (totals_k + 1e-9))^(1/n),
      times exp(1 - 1/ratio) when ratio = (answer_len + 1e-15) / (ref_len + 1e-9) < 1. So an order with no
      match gives a tiny positive precision instead of 0, and an answer corpus exactly as long as its
      references still gets a brevity factor of exp(-(1e-9 - 1e-15) / len), just below 1.
    - ROUGE-L: tokens are `str.split(" ")` of the joined string, so a whitespace token of spaCy (a double
      space, a newline, a tab) survives as an empty-string token and counts in the lengths, and an empty
      answer is one empty token. Per answer: LCS precision and recall against each reference, the best
      precision and the best recall (possibly from different references), F = (1 + b^2) P R / (R + b^2 P)
      with b = 1.2, 0 if either is 0; the script reports the mean over answers.

    The script drops queries whose reference is "No Answer Present." (the data stage already does) and
    needs exactly one candidate per query. Tokens come from the installed spaCy 3.x tokenizer; the 2016-2018
    spaCy releases the script was written against can split rare strings differently.

Multiple gold answers: EM and F1 take the best answer; ROUGE-L the best precision and the best recall
separately; BLEU clips counts by the per-n-gram maximum over the references.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
ROUGE_BETA = 1.2  # the MS MARCO / coco-caption ROUGE-L weighting of recall over precision
SCHEMES = ("squad", "msmarco")
# coco-caption bleu_scorer.py: added to numerators ("tiny") and denominators ("small") of the n-gram
# precisions and of the length ratio.
COCO_TINY = 1e-15
COCO_SMALL = 1e-9


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tokenisation scheme {scheme!r} (expected one of {SCHEMES})")


@functools.cache
def _spacy_tokenizer():
    """spaCy's rule-based English tokenizer, loaded once (no model download: `spacy.blank`)."""
    import spacy

    return spacy.blank("en").tokenizer


@functools.lru_cache(maxsize=1 << 16)
def _msmarco_normalize(text: str) -> str:
    return " ".join(tok.text.strip().lower() for tok in _spacy_tokenizer()(text))


def normalize(text: str, scheme: str = "squad") -> str:
    """The normalised text as one string.

    squad: lower -> drop punctuation -> drop articles -> collapse whitespace.
    msmarco: spaCy tokens, each stripped and lower-cased, joined by single spaces (ms_marco_eval's
    `normalize_batch`); a whitespace token becomes an empty string, so two spaces can follow each other.
    """
    _check_scheme(scheme)
    if scheme == "msmarco":
        return _msmarco_normalize(text)
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def tokenize(text: str, scheme: str = "squad") -> list[str]:
    """The tokens EM, F1 and BLEU compare: `normalize(text, scheme).split()` (never an empty token)."""
    return normalize(text, scheme).split()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the SQuAD-normalised prediction equals some SQuAD-normalised gold answer."""
    pred = normalize(prediction)
    return float(any(pred == normalize(g) for g in golds))


def _f1(pred: list[str], gold: list[str]) -> float:
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return float(pred == gold)  # both empty counts as a match, as SQuAD 2.0 scores no-answer
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 against the best gold answer (SQuAD tokens)."""
    pred = tokenize(prediction)
    return max((_f1(pred, tokenize(g)) for g in golds), default=0.0)


def lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (two rows of the DP table)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _rouge_tokens(text: str, scheme: str) -> list[str]:
    if scheme == "msmarco":
        return normalize(text, scheme).split(" ")  # coco rouge.py splits on single spaces
    return tokenize(text)


def rouge_l(prediction: str, golds: Sequence[str], beta: float = ROUGE_BETA, scheme: str = "squad") -> float:
    """ROUGE-L F of one answer: best LCS precision and best LCS recall over the references, combined with
    recall weighted beta^2 times precision. With one reference and beta 1 this is rouge-score's F1.

    squad drops references that normalise to nothing; msmarco keeps every reference as coco's rouge.py sees
    it. No references at all (or none left) scores 0.
    """
    _check_scheme(scheme)
    pred = _rouge_tokens(prediction, scheme)
    refs = [r for r in (_rouge_tokens(g, scheme) for g in golds) if r]
    if not pred or not refs:
        return 0.0
    hits = [(lcs(pred, ref), len(ref)) for ref in refs]
    p = max(h for h, _ in hits) / len(pred)
    r = max(h / length for h, length in hits)
    if p == 0:  # no token in common with any reference, so r is 0 as well
        return 0.0
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def corpus_bleu(
    predictions: Sequence[str], golds: Sequence[Sequence[str]], n: int = 4, scheme: str = "squad"
) -> float:
    """Corpus BLEU-n (uniform weights) in [0, 1]: clipped n-gram counts and lengths are summed over all
    answers before the precisions and the brevity penalty are taken; the reference length of an answer is
    the closest one (ties: the shorter). An answer without references counts as having one empty reference.

    squad: no smoothing, 0 when some order has no match (sacrebleu's value). msmarco: coco-caption's formula
    (module docstring), the official MS MARCO QnA BLEU-n.
    """
    _check_scheme(scheme)
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold answer lists")
    if n < 1:
        raise ValueError(f"BLEU order must be at least 1, got {n}")
    matches, totals = [0] * n, [0] * n
    pred_len = ref_len = 0
    for i, prediction in enumerate(predictions):
        pred = tokenize(prediction, scheme)
        ref_toks = [tokenize(g, scheme) for g in golds[i]] or [[]]
        pred_len += len(pred)
        ref_len += min((abs(len(r) - len(pred)), len(r)) for r in ref_toks)[1]
        for k in range(n):  # n-grams of order k + 1
            counts = _ngrams(pred, k + 1)
            most: Counter = Counter()
            for r in ref_toks:
                most |= _ngrams(r, k + 1)
            matches[k] += sum((counts & most).values())
            totals[k] += max(0, len(pred) - k)
    if scheme == "msmarco":
        product = 1.0
        for k in range(n):
            product *= (matches[k] + COCO_TINY) / (totals[k] + COCO_SMALL)
        ratio = (pred_len + COCO_TINY) / (ref_len + COCO_SMALL)
        return product ** (1 / n) * math.exp(min(0.0, 1 - 1 / ratio))  # a penalty only when ratio < 1
    if pred_len == 0 or 0 in matches:
        return 0.0
    log_precision = sum(math.log(matches[k] / totals[k]) for k in range(n)) / n
    brevity = math.exp(min(0.0, 1 - ref_len / pred_len))  # a penalty only when shorter than the references
    return brevity * math.exp(log_precision)


def hit(retrieved: Sequence[str], positives: set[str]) -> float:
    """The paper's RAG "Recall": 1.0 when a qrels-positive passage is among those given to the generator."""
    return float(any(d in positives for d in retrieved))
