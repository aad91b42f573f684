"""QA metrics of the RAG stage (PAPER-SPEC G): SQuAD-normalised EM and token F1 (NQ, HotpotQA), ROUGE-L and
corpus BLEU-n (MS MARCO QA), and the retrieval "Recall" column.

Every text is compared after SQuAD's normalisation (lower case, punctuation and the articles a/an/the removed,
whitespace collapsed), so scores do not depend on case or punctuation the generator happens to use.
Multiple gold answers: EM and F1 take the best answer; ROUGE-L takes the best precision and the best recall
separately (the MS MARCO / coco-caption way); BLEU clips n-gram counts by the most any reference has and
measures brevity against the closest reference length (ties: the shorter), as Papineni et al. and sacrebleu.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
ROUGE_BETA = 1.2  # the MS MARCO / coco-caption ROUGE-L weighting of recall over precision


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower -> drop punctuation -> drop articles -> collapse whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold answer."""
    pred = normalize(prediction)
    return float(any(pred == normalize(g) for g in golds))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)  # both empty counts as a match, as SQuAD 2.0 scores no-answer
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 against the best gold answer."""
    pred = tokens(prediction)
    return max((_f1(pred, tokens(g)) for g in golds), default=0.0)


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


def rouge_l(prediction: str, golds: Sequence[str], beta: float = ROUGE_BETA) -> float:
    """ROUGE-L F of one answer: best LCS precision and best LCS recall over the references, combined with
    recall weighted beta^2 times precision. With one reference and beta 1 this is rouge-score's F1."""
    pred = tokens(prediction)
    refs = [r for r in (tokens(g) for g in golds) if r]
    if not pred or not refs:
        return 0.0
    hits = [lcs(pred, r) for r in refs]
    p = max(h / len(pred) for h in hits)
    r = max(h / len(ref) for h, ref in zip(hits, refs, strict=True))
    if p == 0 or r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def corpus_bleu(predictions: Sequence[str], golds: Sequence[Sequence[str]], n: int = 4) -> float:
    """Corpus BLEU-n (uniform weights, no smoothing) in [0, 1]: clipped n-gram counts and lengths are summed
    over all answers before the precisions and the brevity penalty are taken."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold answer lists")
    matches, totals = [0] * n, [0] * n
    pred_len = ref_len = 0
    for prediction, refs in zip(predictions, golds, strict=True):
        pred = tokens(prediction)
        ref_toks = [tokens(g) for g in refs] or [[]]
        pred_len += len(pred)
        ref_len += min((abs(len(r) - len(pred)), len(r)) for r in ref_toks)[1]
        for k in range(1, n + 1):
            counts = _ngrams(pred, k)
            most: Counter = Counter()
            for r in ref_toks:
                most |= _ngrams(r, k)
            matches[k - 1] += sum((counts & most).values())
            totals[k - 1] += max(0, len(pred) - k + 1)
    if pred_len == 0 or 0 in matches:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / n
    brevity = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return brevity * math.exp(log_precision)


def hit(retrieved: Sequence[str], positives: set[str]) -> float:
    """The paper's RAG "Recall": 1.0 when a qrels-positive passage is among those given to the generator."""
    return float(any(d in positives for d in retrieved))
