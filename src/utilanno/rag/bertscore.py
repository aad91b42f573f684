"""BERTScore F1 (Zhang et al. 2020) for the MS MARCO QA answers: greedy matching of contextual token vectors.

Each token of the answer is matched to its most similar reference token (cosine) and vice versa; precision
and recall are the mean best similarities, F1 their harmonic mean, and the best reference counts. Special
tokens are left out, no idf weighting, no baseline rescaling (bert-score's defaults). The paper's model is
NOT FOUND (PAPER-SPEC G), so the model and layer come from config and the figures are comparable only
between runs with the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def greedy_f1(cand: np.ndarray, ref: np.ndarray) -> float:
    """F1 of two sets of L2-normalised token vectors [n, d] and [m, d]; 0.0 if either is empty."""
    if not len(cand) or not len(ref):
        return 0.0
    sim = cand @ ref.T
    p, r = float(sim.max(axis=1).mean()), float(sim.max(axis=0).mean())
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


class BertScorer:
    def __init__(self, model: str, layer: int | None = None, batch_size: int = 64, max_len: int = 510):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(self.device).eval()
        n_layers = self.model.config.num_hidden_layers
        self.layer = n_layers if layer is None else layer
        if not 0 <= self.layer <= n_layers:
            raise ValueError(f"BERTScore layer {layer} is not in 0..{n_layers} for {model}")
        self.batch_size, self.max_len = batch_size, max_len

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, the normalised vectors [tokens, dim] of its non-special tokens at the chosen layer."""
        torch, out = self.torch, []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                max_length=self.max_len,
                truncation=True,
                padding="longest",
                return_tensors="pt",
                return_special_tokens_mask=True,
            )
            attention, special = batch.pop("attention_mask"), batch.pop("special_tokens_mask")
            keep = (attention.bool() & ~special.bool()).numpy()
            with torch.no_grad():
                states = self.model(
                    **{k: v.to(self.device) for k, v in batch.items()},
                    attention_mask=attention.to(self.device),
                    output_hidden_states=True,
                ).hidden_states[self.layer]
            vecs = torch.nn.functional.normalize(states.float(), dim=-1).cpu().numpy()
            out += [v[k] for v, k in zip(vecs, keep, strict=True)]
        return out

    def __call__(self, predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> list[float]:
        """F1 per answer against its best gold answer (0.0 for an empty answer)."""
        texts = sorted({*predictions, *(g for refs in golds for g in refs)})
        vectors = dict(zip(texts, self.embed(texts), strict=True))
        return [
            max((greedy_f1(vectors[p], vectors[g]) for g in refs), default=0.0) if p.strip() else 0.0
            for p, refs in zip(predictions, golds, strict=True)
        ]
