"""BERTScore F1 (Zhang et al. 2020) of the MS MARCO QA answers, computed as the `bert-score` package does.

The paper's BERTScore model is NOT FOUND (PAPER-SPEC G), so the model, its layer and the options come from
config, and the figures are comparable only between runs with the same ones. Given the same model, layer and
options, `BertScorer(...)(answers, golds)` equals `bert_score.score(answers, golds, ...)[2]` (bert-score
0.3.13, tested to 1e-5 in tests/test_bertscore.py). Each step names the function of bert-score it follows
(bert_score/utils.py unless said otherwise):

- Tokens (`sent_encode`, `get_tokenizer`): the text is stripped; an empty text is just the special tokens
  ([CLS] [SEP]); otherwise `tokenizer.encode(text, add_special_tokens=True, max_length=model_max_length,
  truncation=True)`, with `add_prefix_space=True` for GPT-2/RoBERTa tokenizers (which transformers 5
  ignores, in bert-score as here). The tokenizer is loaded with `use_fast=False`, as bert-score does.
- Layer (`get_model`, `model2layers`): the model keeps only its first `layer` transformer layers and the
  vectors are its last hidden state (layer 0: the embeddings). With no explicit layer, bert-score's
  `model2layers[model_type]` (the layer tuned on WMT16) is used; a local folder needs `model_type`, its name.
- Vectors (`bert_cos_score_idf`, `get_bert_embedding`, `collate_idf`, `padding`, `bert_encode`): distinct
  texts, most space-separated words first, in batches padded with the pad token, `model(input_ids,
  attention_mask=mask)`; every token is kept, [CLS] and [SEP] included, and vectors are L2-normalised.
- Matching (`greedy_cos_idf`): the similarity matrix holds every token, special ones too, so [CLS] or [SEP]
  can be a token's best match; precision and recall are weighted means of the best similarities, with [CLS]
  and [SEP] weighing 0. Without idf every other token weighs 1; with `idf=True` a token weighs
  log((M+1)/(df+1)) over the M references of the call (flattened, duplicates counted; `get_idf_dict`),
  also 0 for [CLS]/[SEP] since every reference holds them. F1 = 2PR/(P+R); NaN (weights summing to 0, as
  for an empty text) becomes 0.
- bert-score matches the pairs in batches of `batch_size` and zeroes the similarities to padding instead of
  excluding them, so a token's best similarity is floored at 0 when the other text of its pair is shorter
  than the longest one of that side in the batch. This matters only for negative similarities (rare with
  trained models) and is reproduced (`greedy_f1`'s `floor_*` arguments), so the numbers match.
- Several references (bert_score/score.py `score`): F1 against each, and the best one counts.
- `rescale_with_baseline` (`score`): F -> (F - b) / (1 - b), b the F column at row `layer` of
  `rescale_baseline/<lang>/<model_type>.tsv` shipped in the bert_score package, or of `baseline_path`.
  bert-score only warns when the file is missing; here that is an error, so a run never silently reports
  unrescaled numbers as rescaled.

Only F1 is returned. bert-score itself is not a runtime dependency: it is needed only to look a layer up by
model name or to find a shipped baseline file (give `layer` and `baseline_path` to do without it).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# transformers' "no limit" model_max_length (VERY_LARGE_INTEGER is 1e30): such a tokenizer never truncates.
_NO_LIMIT = 10**18


def greedy_f1(
    cand: np.ndarray,
    ref: np.ndarray,
    cand_weights: Sequence[float] | np.ndarray | None = None,
    ref_weights: Sequence[float] | np.ndarray | None = None,
    *,
    floor_cand: bool = False,
    floor_ref: bool = False,
) -> float:
    """BERTScore F1 of a candidate's and a reference's L2-normalised token vectors, [n, d] and [m, d].

    Precision is the weighted mean over candidate tokens of their best cosine with a reference token, recall
    the same the other way; weights default to 1 and are normalised by their sum (a sum of 0 gives NaN, and so
    F1 0). `floor_cand` (`floor_ref`) makes each best similarity at least 0, as bert-score's padding of the
    candidate (reference) within its batch does. F1 = 2PR/(P+R), 0 when that is NaN; 0.0 for an empty input.
    """
    if not len(cand) or not len(ref):
        return 0.0
    sim = np.asarray(cand, dtype=np.float64) @ np.asarray(ref, dtype=np.float64).T
    best_for_cand, best_for_ref = sim.max(axis=1), sim.max(axis=0)
    if floor_ref:
        best_for_cand = np.maximum(best_for_cand, 0.0)
    if floor_cand:
        best_for_ref = np.maximum(best_for_ref, 0.0)
    wc = np.ones(len(cand)) if cand_weights is None else np.asarray(cand_weights, dtype=np.float64)
    wr = np.ones(len(ref)) if ref_weights is None else np.asarray(ref_weights, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.float64((best_for_cand * wc).sum()) / wc.sum()
        r = np.float64((best_for_ref * wr).sum()) / wr.sum()
        f = 2 * p * r / (p + r)
    return 0.0 if math.isnan(f) else float(f)


def idf_weights(references: Sequence[Sequence[int]]) -> tuple[dict[int, float], float]:
    """Per token id, log((M+1)/(df+1)) over M tokenised references; and log(M+1), the weight of unseen ids."""
    m = len(references)
    df = Counter(t for ids in references for t in set(ids))
    return {t: math.log((m + 1) / (c + 1)) for t, c in df.items()}, math.log(m + 1)


def rescale(value: float, baseline: float) -> float:
    """bert-score's baseline rescaling: (value - b) / (1 - b)."""
    return (value - baseline) / (1 - baseline)


def _bert_score_dir() -> Path | None:
    spec = importlib.util.find_spec("bert_score")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_layer(model_type: str) -> int:
    """bert-score's default layer for a model name (`bert_score.utils.model2layers`)."""
    if _bert_score_dir() is None:
        raise ValueError(
            f"BERTScore: looking up the layer of {model_type!r} needs the bert-score package; "
            "install it or give the layer (rag.bertscore_layer)"
        )
    from bert_score.utils import model2layers

    if model_type not in model2layers:
        raise ValueError(
            f"BERTScore: bert-score has no default layer for model type {model_type!r}; give the layer "
            "(rag.bertscore_layer) or a model type that bert-score knows (e.g. roberta-large, "
            "bert-base-uncased, microsoft/deberta-xlarge-mnli)"
        )
    return model2layers[model_type]


def baseline_file(lang: str, model_type: str) -> Path:
    """The baseline bert-score ships for (lang, model type): bert_score/rescale_baseline/<lang>/<type>.tsv."""
    root = _bert_score_dir()
    if root is None:
        raise ValueError(
            "BERTScore: rescaling with bert-score's baselines needs the bert-score package; "
            "install it or give a baseline file (rag.bertscore_baseline_path)"
        )
    return root / "rescale_baseline" / lang / f"{model_type}.tsv"


def read_baseline(path: str | Path, layer: int) -> float:
    """The F baseline at `layer` of a bert-score baseline file: CSV `LAYER,P,R,F`, data row number `layer`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BERTScore baseline file {path} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    if not 0 <= layer < len(rows):
        raise ValueError(f"BERTScore baseline file {path} has no row for layer {layer} ({len(rows)} rows)")
    return float(rows[layer][3])


def _keep_layers(model, layer: int, name: str):
    """The encoder cut to its first `layer` layers (bert-score's `get_model`): its output is that layer's."""
    import torch

    if hasattr(model, "decoder") and hasattr(model, "encoder"):
        model = model.encoder

    def check(n: int) -> None:
        if not 0 <= layer <= n:
            raise ValueError(f"BERTScore layer {layer} is not in 0..{n} for {name}")

    if hasattr(model, "n_layers"):  # XLM
        check(model.n_layers)
        model.n_layers = layer
    elif hasattr(model, "layer"):  # XLNet
        check(len(model.layer))
        model.layer = torch.nn.ModuleList(model.layer[:layer])
    elif hasattr(model, "encoder"):
        enc = model.encoder
        if hasattr(enc, "albert_layer_groups"):  # ALBERT
            check(enc.config.num_hidden_layers)
            enc.config.num_hidden_layers = layer
        elif hasattr(enc, "block"):  # T5
            check(len(enc.block))
            enc.block = torch.nn.ModuleList(enc.block[:layer])
        else:  # BERT, RoBERTa, ELECTRA, DeBERTa, ...
            check(len(enc.layer))
            enc.layer = torch.nn.ModuleList(enc.layer[:layer])
    elif hasattr(model, "transformer"):  # DistilBERT
        check(len(model.transformer.layer))
        model.transformer.layer = torch.nn.ModuleList(model.transformer.layer[:layer])
    elif hasattr(model, "layers"):  # BART encoder
        check(len(model.layers))
        model.layers = torch.nn.ModuleList(model.layers[:layer])
    else:
        raise ValueError(f"BERTScore: cannot select a layer of {name} ({type(model).__name__})")
    return model


class BertScorer:
    """`scorer(answers, golds)`: BERTScore F1 of each answer against the best of its gold answers.

    model: folder or hub id of the encoder. layer: hidden layer to compare (0 = embeddings); None looks up
    bert-score's default for `model_type` (a bert-score model name such as "roberta-large"), an error if
    neither is given. batch_size: texts per forward pass and pairs per matching batch (as bert-score's,
    which this also affects through the padding floor). max_len: token limit, special tokens included
    (None: the tokenizer's model_max_length, as bert-score). idf: weight tokens by idf over each call's
    references. rescale_with_baseline: rescale with the baseline of (lang, model_type), or `baseline_path`.
    """

    chunk_batches = 32  # matching batches whose vectors are held in memory at once

    def __init__(
        self,
        model: str,
        layer: int | None = None,
        batch_size: int = 64,
        max_len: int | None = None,
        *,
        model_type: str | None = None,
        idf: bool = False,
        rescale_with_baseline: bool = False,
        lang: str = "en",
        baseline_path: str | None = None,
        use_fast_tokenizer: bool = False,
        device: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"BERTScore batch_size must be at least 1, not {batch_size}")
        if layer is None:
            if model_type is None:
                raise ValueError(
                    f"BERTScore needs a layer for {model}: give it (rag.bertscore_layer) or the model's "
                    "bert-score name (rag.bertscore_model_type) to use bert-score's default layer"
                )
            layer = default_layer(model_type)
        self.baseline = None
        if rescale_with_baseline:
            if baseline_path is None:
                if model_type is None:
                    raise ValueError(
                        "BERTScore rescaling needs the model's bert-score name (rag.bertscore_model_type) "
                        "or a baseline file (rag.bertscore_baseline_path)"
                    )
                baseline_path = baseline_file(lang, model_type)
            self.baseline = read_baseline(baseline_path, layer)

        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model, use_fast=use_fast_tokenizer)
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"BERTScore: the tokenizer of {model} has no pad token")
        self.max_len = self.tokenizer.model_max_length if max_len is None else max_len
        if self.max_len >= _NO_LIMIT:
            raise ValueError(
                f"BERTScore: the tokenizer of {model} sets no model_max_length; give max_len "
                "(rag.bertscore_max_len)"
            )
        config = AutoConfig.from_pretrained(model)
        if "t5" in config.model_type:  # bert-score loads T5 models as encoders only
            from transformers import T5EncoderModel

            loaded = T5EncoderModel.from_pretrained(model)
        else:
            loaded = AutoModel.from_pretrained(model)
        self.model = _keep_layers(loaded.eval(), layer, model).to(self.device).eval()
        self.layer, self.batch_size, self.idf = layer, batch_size, idf
        self.special_ids = {self.tokenizer.cls_token_id, self.tokenizer.sep_token_id} - {None}

    def encode(self, text: str) -> list[int]:
        """Token ids of a text, special tokens included (bert-score's `sent_encode`)."""
        from transformers import GPT2Tokenizer, RobertaTokenizer

        tok, text = self.tokenizer, text.strip()
        if not text:
            build = getattr(tok, "build_inputs_with_special_tokens", None)
            return list(build([]) if build is not None else tok.encode("", add_special_tokens=True))
        extra = {"add_prefix_space": True} if isinstance(tok, GPT2Tokenizer | RobertaTokenizer) else {}
        return tok.encode(text, add_special_tokens=True, max_length=self.max_len, truncation=True, **extra)

    def embed(self, texts: Sequence[str], ids: dict[str, list[int]]) -> dict[str, np.ndarray]:
        """Per distinct text, the L2-normalised vectors [tokens, dim] of all its tokens at the layer."""
        torch, out = self.torch, {}
        # bert-score's order: distinct texts, most space-separated words first (ties: here by text).
        order = sorted(sorted(set(texts)), key=lambda t: len(t.split(" ")), reverse=True)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            lens = [len(ids[t]) for t in batch]
            input_ids = torch.full((len(batch), max(lens)), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), max(lens)), dtype=torch.long)
            for i, t in enumerate(batch):
                input_ids[i, : lens[i]] = torch.tensor(ids[t], dtype=torch.long)
                mask[i, : lens[i]] = 1
            with torch.no_grad():
                states = self.model(input_ids.to(self.device), attention_mask=mask.to(self.device))[0]
            states = states / torch.norm(states, dim=-1).unsqueeze(-1)
            vecs = states.float().cpu().numpy()
            out.update((t, vecs[i, : lens[i]]) for i, t in enumerate(batch))
        return out

    def __call__(self, predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> list[float]:
        """F1 of each answer against the best of its gold answers (rescaled when configured)."""
        predictions, golds = list(predictions), [list(g) for g in golds]
        if len(predictions) != len(golds):
            raise ValueError(f"BERTScore: {len(predictions)} answers but {len(golds)} gold answer lists")
        if any(not g for g in golds):
            raise ValueError("BERTScore: every answer needs at least one gold answer")
        # bert-score's flattening: one (candidate, reference) pair per gold answer, in order.
        cands = [p for p, g in zip(predictions, golds, strict=True) for _ in g]
        refs = [r for g in golds for r in g]
        ids = {t: self.encode(t) for t in {*refs, *cands}}
        weights = self._weights(refs, ids)
        empty = sum(not p.strip() for p in predictions), sum(not r.strip() for r in refs)
        if any(empty):
            log.warning("BERTScore: %d empty answers and %d empty gold answers score F1 0 (raw)", *empty)

        # Vectors are kept for one chunk of pairs at a time (bert-score keeps all: memory grows with the
        # data); a chunk is whole matching batches, so the batches, and the padding floor, stay bert-score's.
        f1, chunk = [], self.batch_size * self.chunk_batches
        for lo in range(0, len(refs), chunk):
            chunk_c, chunk_r = cands[lo : lo + chunk], refs[lo : lo + chunk]
            vectors = self.embed([*chunk_r, *chunk_c], ids)
            for start in range(0, len(chunk_r), self.batch_size):
                batch_c = chunk_c[start : start + self.batch_size]
                batch_r = chunk_r[start : start + self.batch_size]
                longest_c = max(len(ids[c]) for c in batch_c)
                longest_r = max(len(ids[r]) for r in batch_r)
                for c, r in zip(batch_c, batch_r, strict=True):
                    f1.append(
                        greedy_f1(
                            vectors[c],
                            vectors[r],
                            weights[c],
                            weights[r],
                            floor_cand=len(ids[c]) < longest_c,
                            floor_ref=len(ids[r]) < longest_r,
                        )
                    )
            log.info("BERTScore: %d/%d (answer, gold answer) pairs scored", len(f1), len(refs))
        best, at = [], 0
        for g in golds:
            best.append(max(f1[at : at + len(g)]))
            at += len(g)
        if self.baseline is not None:
            best = [rescale(v, self.baseline) for v in best]
        return best

    def _weights(self, refs: list[str], ids: dict[str, list[int]]) -> dict[str, np.ndarray]:
        """Per text, its tokens' weights: idf over `refs` (with idf), else 1 and 0 for [CLS]/[SEP]."""
        if self.idf:
            table, unseen = idf_weights([ids[r] for r in refs])
            return {t: np.array([table.get(i, unseen) for i in seq]) for t, seq in ids.items()}
        return {t: np.array([0.0 if i in self.special_ids else 1.0 for i in seq]) for t, seq in ids.items()}
