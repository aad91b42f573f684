"""The retriever: one transformers encoder shared by queries and passages, pooled, scored by dot product
(PAPER-SPEC E: [CLS] pooling, no normalisation, no projection).

A trained model folder holds the transformers model and tokenizer plus `encoder.json` (pooling and the
lengths it was trained with), so the encoding stage encodes exactly as the model was trained.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from utilanno.progress import Progress

log = logging.getLogger(__name__)
SETTINGS = "encoder.json"
POOLINGS = ("cls", "mean")


PASSAGE_TEXTS = ("sep", "space")


def passage_text(title: str | None, text: str, sep: str, style: str = "sep") -> str:
    """sep: `title [SEP] text` as the paper's trainer feeds passages, just the text when there is no title;
    space: `(title + " " + text).strip()`, as BEIR's SentenceBERT.encode_corpus (beir-cellar/beir,
    beir/retrieval/models/sentence_bert.py), which RetroMAE's BEIR script uses."""
    if style == "space":
        return f"{title or ''} {text}".strip()
    if style != "sep":
        raise ValueError(f"unknown passage text style {style!r} (expected one of {PASSAGE_TEXTS})")
    return f"{title} {sep} {text}" if title else text


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[CLS] (first token) or the mean over non-padding tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r} (expected one of {POOLINGS})")


def read_settings(model_dir: str | Path) -> dict:
    """The settings a model was trained with; {} for a backbone that was never trained here."""
    path = Path(model_dir) / SETTINGS
    return json.loads(path.read_text()) if path.exists() else {}


class Encoder(torch.nn.Module):
    """Shared query/passage encoder. `forward(queries, passages)` embeds both in one call, so that
    DistributedDataParallel sees a single forward per step."""

    def __init__(self, model_dir: str | Path, pooling: str | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        local = str(model_dir).startswith(("/", ".", "~")) or str(model_dir).count("/") > 1
        if local and not Path(model_dir).is_dir():  # else a hub id: transformers resolves it (and its cache)
            raise FileNotFoundError(f"encoder model folder {model_dir} does not exist")
        settings = read_settings(model_dir)
        self.pooling = pooling or settings.get("pooling", "cls")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} (expected one of {POOLINGS})")
        self.settings = settings
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir)
        # BERT's pooler head never enters the embeddings: frozen, so DDP does not wait for its gradients
        for p in (
            getattr(self.model, "pooler", None).parameters() if getattr(self.model, "pooler", None) else []
        ):
            p.requires_grad_(False)

    def tokenize(self, texts: list[str], max_len: int) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(texts, max_length=max_len, truncation=True, padding="longest", return_tensors="pt")
        )

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(**batch, return_dict=True)
        return pool(out.last_hidden_state, batch["attention_mask"], self.pooling)

    def forward(self, queries: dict, passages: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed(queries), self.embed(passages)

    def passage(self, title: str | None, text: str, style: str = "sep") -> str:
        return passage_text(title, text, self.tokenizer.sep_token or "", style)

    def max_len(self, requested: int) -> int:
        """`requested` capped at what the model can take, as sentence-transformers caps a plain transformers
        model: min(max_position_embeddings, tokenizer.model_max_length); BERT's 512 meets BEIR's."""
        limits = [requested, self.tokenizer.model_max_length]
        limits.append(getattr(self.model.config, "max_position_embeddings", requested))
        return int(min(limits))

    def save(self, out_dir: str | Path, **settings) -> None:
        """The transformers model and tokenizer, encoder.json, and the sentence-transformers configuration
        (Transformer -> Pooling, dot-product similarity, no normalisation), so that
        `SentenceTransformer(out_dir)` embeds as this encoder does: passages in full at passage_max_len,
        queries alike as long as they fit in it (we truncate queries at query_max_len)."""
        out = Path(out_dir)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        (out / SETTINGS).write_text(json.dumps({"pooling": self.pooling, **settings}, indent=2) + "\n")
        max_len = settings.get("passage_max_len") or self.tokenizer.model_max_length
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        pooling = {
            "word_embedding_dimension": self.model.config.hidden_size,
            "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        }
        files = {
            "modules.json": modules,
            "sentence_bert_config.json": {"max_seq_length": max_len, "do_lower_case": False},
            "config_sentence_transformers.json": {"similarity_fn_name": "dot", "prompts": {}},
            "1_Pooling/config.json": pooling,
        }
        for name, content in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(json.dumps(content, indent=2) + "\n")


def pad(encoder: Encoder, rows: list[list[int]], types: list[list[int]] | None) -> dict[str, torch.Tensor]:
    """Pad token id lists to the longest, on the tokenizer's padding side, as `tokenize` would."""
    width = max(map(len, rows))
    ids = np.full((len(rows), width), encoder.tokenizer.pad_token_id or 0, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    tt = np.zeros((len(rows), width), dtype=np.int64) if types is not None else None
    left = encoder.tokenizer.padding_side == "left"
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = row
        mask[i, span] = 1
        if tt is not None:
            tt[i, span] = types[i]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if tt is not None:
        batch["token_type_ids"] = torch.from_numpy(tt)
    return batch


@torch.no_grad()
def encode(
    encoder: Encoder,
    texts: list[str],
    max_len: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    desc: str = "encode",
    autocast_dtype: torch.dtype | None = None,
    chunk_batches: int = 32,
) -> np.ndarray:
    """Embeddings [n, dim] float32 in input order.

    Batches are cut by token length, longest first, so padding costs little: texts are ordered by characters
    (cheap, global), then tokenized a chunk of `chunk_batches` batches at a time and re-sorted by their exact
    token count inside the chunk. Against character order alone this pads ~10% fewer tokens on MS MARCO-like
    text (benchmarks/encode_throughput.md); only one chunk's token lists are held in memory.
    """
    encoder.eval()
    n = len(texts)
    dim = encoder.model.config.hidden_size
    out = np.empty((n, dim), dtype=np.float32)
    order = sorted(range(n), key=lambda i: -len(texts[i]))
    device = torch.device(device)
    chunk = batch_size * chunk_batches
    bar = Progress(desc, n, "texts", logger=log)
    for c in range(0, n, chunk):
        members = order[c : c + chunk]
        tok = encoder.tokenizer(
            [texts[i] for i in members], max_length=max_len, truncation=True, padding=False
        )
        types = tok.get("token_type_ids")
        by_len = sorted(range(len(members)), key=lambda j: -len(tok["input_ids"][j]))
        for start in range(0, len(by_len), batch_size):
            js = by_len[start : start + batch_size]
            batch = pad(
                encoder,
                [tok["input_ids"][j] for j in js],
                [types[j] for j in js] if types is not None else None,
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                emb = encoder.embed(batch)
            out[[members[j] for j in js]] = emb.float().cpu().numpy()
            bar.update(len(js))
    return out
