"""The model card (`README.md`, Hugging Face format) of a trained retriever folder: what it was trained from,
on which labels, with which loss and hyperparameters, and how to load it. Evaluation comes later in the
workflow: the card points to where its metrics land rather than holding numbers it cannot know yet."""

from __future__ import annotations

import json
from pathlib import Path

# the paper's names of the losses (PAPER-SPEC D) and of the positive-sampling strategies (C.1)
LOSS_NAMES = {
    "singlelh": "SingleLH (InfoNCE, the human positive)",
    "rand1lh": "Rand1LH (InfoNCE, one positive drawn from the label set)",
    "jointlh": "JointLH (every positive in one likelihood)",
    "summarg": "SumMargLH (marginal likelihood of the positives)",
    "replug_kl": "REPLUG KL distillation from LLM answer likelihoods, plus weighted InfoNCE",
}


def _base_model(init_model: str) -> str | None:
    """A hub id names the base model in the card's metadata; a local path does not (nobody else has it)."""
    p = Path(init_model)
    return None if p.is_absolute() or p.exists() or init_model.startswith(".") else init_model


def render(summary: dict, name: str) -> str:
    s = summary["settings"]
    base = _base_model(summary["init_model"])
    meta = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity"]
    meta += ["tags:", "- sentence-transformers", "- feature-extraction", "- dense-retrieval", "- utilanno"]
    if base:
        meta.append(f"base_model: {json.dumps(base)}")
    meta.append("---")
    counts = ", ".join(f"{k}: {v}" for k, v in summary["counts"].items())
    rows = "\n".join(f"| `{k}` | {json.dumps(v)} |" for k, v in sorted(s.items()))
    return (
        "\n".join(meta)
        + f"""

# {name}

A dense retriever trained by the utilanno workflow (a reproduction of *Utility-Focused LLM Annotation for
Retrieval and Retrieval-Augmented Generation*, Zhang et al., EMNLP 2025): one encoder for queries and
passages, {s["pooling"]} pooling, scores are dot products (no normalisation).

- **Initialised from:** `{summary["init_model"]}`
- **Labels:** `{summary["labels"]}` ({counts})
- **Loss:** {LOSS_NAMES.get(s["loss"], s["loss"])}, positive sampling `{s["sampling"]}`
- **Steps:** {summary["steps"]} ({summary["steps_per_epoch"]} per epoch), {summary["world_size"]} process(es);
  loss {summary["first_loss"]} -> {summary["final_loss"]} (the curve: `train-log.jsonl`; the run:
  `training.json`)
- **Metrics:** written by the workflow's evaluation to `results/metrics/results.tsv` (system `{name}`)

## Use

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/{name}")
queries = model.encode(["what is dense retrieval"])
passages = model.encode(["Title [SEP] passage text"])  # titled passages as trained: title [SEP] text
scores = model.similarity(queries, passages)  # dot product
```

The same embeddings come from `utilanno.train.encoder.Encoder` (`encoder.json` holds the pooling and the
lengths it was trained with: queries {s["query_max_len"]} tokens, passages {s["passage_max_len"]}).

## Hyperparameters

| setting | value |
|---|---|
{rows}
"""
    )
