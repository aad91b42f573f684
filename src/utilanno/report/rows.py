"""Which experiments of a config reproduce each paper row (`map_experiments`), matched on their settings in
the paper's names (`report.stand_ins`), or why none does; Table 1's rows are annotators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from utilanno.config_annotation import run_name
from utilanno.report.paper import Entry, PaperNumbers

PAPER_ANNOTATOR = "qwen25-32b-int8"  # the llms key of the paper's default annotator (Qwen-2.5-32B-Int8)
# the group sampling the paper pairs with each loss in one-stage training (PAPER-SPEC J.2)
LOSS_SAMPLING = {"singlelh": "human", "rand1lh": "human", "summarg": "pos_all", "jointlh": "pos_all"}

_HUMAN = {"labels": "human", "loss": "singlelh"}
_REPLUG = {"labels": "replug", "loss": "replug_kl"}
_UTILSEL = {"labels": "utilsel", "loss": "summarg"}
_UTILRANK = {"labels": "utilrank@10", "loss": "rand1lh"}


def _cl(base: dict, fraction: float, stage1: str = "pos_one", **more: Any) -> dict:
    """A curriculum: stage 1 on LLM labels (with `stage1` sampling), stage 2 on `fraction` of human labels."""
    return {**base, "human_fraction": fraction, "curriculum": True, "sampling": stage1, **more}


# Paper row key -> the settings an experiment needs to reproduce it (backbone from the table, loss from a
# Table 16 column; unset keys take the defaults of `row_settings`).
ROW_SETTINGS: dict[str, dict] = {
    "human": _HUMAN,
    "replug": _REPLUG,
    "utilsel": _UTILSEL,
    "utilrank": _UTILRANK,
    **{
        f"{k}-cl{p}": _cl(b, p / 100)
        for k, b in [("replug", _REPLUG), ("utilsel", _UTILSEL), ("utilrank", _UTILRANK)]
        for p in (20, 100)
    },
    "annotator-llama31-8b": {**_UTILSEL, "annotator": "llama31-8b"},
    "annotator-qwen25-32b-int8": {**_UTILSEL, "annotator": "qwen25-32b-int8"},
    "relsel": {"labels": "relsel", "loss": "summarg"},
    "utilrank-rand1lh": _UTILRANK,
    "loss-rand1lh": {"labels": "utilsel", "loss": "rand1lh"},
    "loss-jointlh": {"labels": "utilsel", "loss": "jointlh"},
    "loss-summarg": _UTILSEL,
    **{f"sampling-{s}": {**_UTILSEL, "sampling": s} for s in ("pos_one", "pos_avg", "pos_all")},
    "union-20": {"labels": "union", "loss": "summarg", "sampling": "pos_one", "human_fraction": 0.2},
    "cl20-pos_one": _cl(_UTILSEL, 0.2),
    "cl20-pos_all": _cl(_UTILSEL, 0.2, "pos_all"),
    "random": _UTILSEL,
    "random-cl20": _cl(_UTILSEL, 0.2),
    **{p: {**_UTILSEL, "human_positive": p} for p in ("exclusion", "inclusion")},
    **{
        f"{p}-cl{f}": _cl(_UTILSEL, f / 100, human_positive=p)
        for p, f in [("exclusion", 20), ("exclusion", 30), ("inclusion", 20)]
    },
    **{f"utilrank@{k}": {"labels": f"utilrank@{k}"} for k in (10, 20, 30, 40, 50)},
    # Table 9 (App. C): trained on NQ, annotated by Qwen3-32B in thinking mode; First1LH = SingleLH on the
    # first positive (sampling 'first')
    "nq-human-first1lh": {**_HUMAN, "sampling": "first", "dataset": "nq"},
    **{
        f"nq-utilsel-{loss}": {
            "labels": "utilsel",
            "loss": "singlelh" if loss == "first1lh" else "summarg",
            "sampling": "first" if loss == "first1lh" else "pos_all",
            "annotator": "qwen3-32b-thinking",
            "dataset": "nq",
        }
        for loss in ("first1lh", "summarg")
    },
}
# Paper rows no experiment of the grid can reproduce, and why (checked before the settings).
NOT_CONFIGURED = {
    "replug-human": "REPLUG (Human) is a v2-only row (human-label warm-up, then the KL loss); not configured",
}


@dataclass(frozen=True)
class RowMatch:
    """A paper row (of one table entry and, for Table 16, one loss column) and what reproduces it."""

    entry: str
    table: str
    backbone: str | None
    row: str
    loss: str | None
    experiments: tuple[str, ...]  # experiment names, or ("bm25",) for the BM25 baseline; empty: see reason
    reason: str | None


def row_settings(row: str, backbone: str, loss: str | None = None) -> dict[str, Any]:
    """The normalised settings an experiment needs to reproduce paper row `row` (as `experiment_settings`)."""
    s = {**ROW_SETTINGS[row], **({"loss": loss} if loss else {})}
    llm_labels = s["labels"] not in ("human", "replug")
    return {
        "dataset": s.get("dataset", "msmarco"),
        "backbone": backbone,
        "labels": s["labels"],
        "annotator": s.get("annotator", PAPER_ANNOTATOR) if llm_labels else None,
        "loss": s["loss"],
        "sampling": None if s["loss"] == "replug_kl" else s.get("sampling", LOSS_SAMPLING[s["loss"]]),
        "human_fraction": float(s.get("human_fraction", 0.0)),
        "curriculum": bool(s.get("curriculum", False)),
        "human_positive": s.get("human_positive", "random"),
    }


def stand_ins(config: dict) -> dict[str, str]:
    """`report.stand_ins`: our backbone, LLM or dataset name -> the paper's name it stands in for (the tiny
    config's tiny-bert for retromae); the report says so under every table it applies to."""
    return dict((config.get("report") or {}).get("stand_ins") or {})


def annotators(config: dict) -> list[str]:
    """Every LLM that annotates label sets: the annotation's default and the own annotator of each experiment
    with LLM labels (as `Plan.annotators`, on a config that need not be whole)."""
    names = {run.get("annotator") for run in config.get("annotation", {}).values()}
    names |= {
        _annotator(config, e)
        for e in config.get("experiments", {}).values()
        if e["labels"] not in ("human", "replug")
    }
    return sorted(n for n in names if n)


def _annotator(config: dict, exp: dict) -> str | None:
    """An experiment's annotator: its own, or its run's."""
    runs = config.get("annotation") or {}
    return exp.get("annotator") or (runs.get(run_name(config, exp)) or {}).get("annotator")


def experiment_settings(config: dict, name: str) -> dict[str, Any]:
    """An experiment's settings in the form of `row_settings`, in the paper's names (`stand_ins`; `dataset`:
    what it trains on, its annotation run's dataset): a
    curriculum's group sampling is its stage 1 sampling, REPLUG's KL loss has none, and human and REPLUG
    labels have no annotator."""
    exp = config["experiments"][name]
    named = stand_ins(config)
    curriculum = exp.get("curriculum")
    llm_labels = exp["labels"] not in ("human", "replug")
    sampling = curriculum.get("stage1_sampling", "pos_one") if curriculum else exp.get("sampling", "pos_all")
    annotator = _annotator(config, exp)
    runs = config.get("annotation", {})
    trained_on = (runs.get(run_name(config, exp)) or {}).get("dataset")
    return {
        "dataset": named.get(trained_on, trained_on),
        "backbone": named.get(exp["backbone"], exp["backbone"]),
        "labels": exp["labels"],
        "annotator": named.get(annotator, annotator) if llm_labels else None,
        "loss": exp["loss"],
        "sampling": None if exp["loss"] == "replug_kl" else sampling,
        "human_fraction": float(exp.get("human_fraction", 0.0)),
        "curriculum": bool(curriculum),
        "human_positive": exp.get("human_positive", "random"),
    }


def _match(config: dict, entry: Entry, row: str, loss: str | None) -> tuple[tuple[str, ...], str | None]:
    if row in NOT_CONFIGURED:
        return (), NOT_CONFIGURED[row]
    if row == "bm25":
        on = config.get("evaluation", {}).get("bm25", False)
        return (("bm25",), None) if on else ((), "the BM25 baseline is off (evaluation.bm25: false)")
    if row not in ROW_SETTINGS:
        return (), f"paper row {row!r} has no settings in utilanno.report.paper.ROW_SETTINGS"
    if "loss" not in ROW_SETTINGS[row] and loss is None:
        return (), f"paper row {row!r} needs a loss column (Table 16)"
    named = stand_ins(config)
    if entry.backbone not in {named.get(b, b) for b in config.get("backbones", {})}:
        return (), f"backbone {entry.backbone!r} is not in config backbones (nor a report.stand_ins target)"
    want = row_settings(row, entry.backbone, loss)
    names = tuple(n for n in config.get("experiments", {}) if experiment_settings(config, n) == want)
    if not names:
        shown = ", ".join(f"{k}={v}" for k, v in want.items())
        return (), f"no experiment in the config has these settings: {shown}"
    if entry.kind == "rag":
        rag = set(config.get("rag", {}).get("experiments", []))
        if not rag & set(names):
            return (), f"experiment(s) {list(names)} not in rag.experiments"
        names = tuple(n for n in names if n in rag)
    return names, None


def _annotator_match(config: dict, row: str) -> tuple[tuple[str, ...], str | None]:
    named = stand_ins(config)
    ours = tuple(a for a in annotators(config) if named.get(a, a) == row)
    return (ours, None) if ours else ((), f"annotator {row!r} annotates no label set of the config")


def map_experiments(config: dict, paper: PaperNumbers) -> list[RowMatch]:
    """For every row of every retrieval and RAG table entry (and every loss column of Table 16): the config's
    experiments that reproduce it, matched on their settings, or the reason none does; for Table 1's rows
    (annotators): the config's annotator that stands for it."""
    out = []
    for entry in paper.entries.values():
        if entry.kind == "annotation":
            out += [
                RowMatch(entry.name, entry.table, None, r, None, *_annotator_match(config, r))
                for r in entry.rows
            ]
        if entry.kind not in ("retrieval", "rag"):
            continue
        for row in entry.rows:
            for loss in entry.losses:
                names, reason = _match(config, entry, row, loss)
                out.append(RowMatch(entry.name, entry.table, entry.backbone, row, loss, names, reason))
    return out
