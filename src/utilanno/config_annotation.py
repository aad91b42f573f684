"""Cross-checks of the annotation runs (config `annotation`) and of the experiments that name them, and of
candidate mining: what `config._cross_check` adds for the annotation stage."""

from __future__ import annotations

import difflib

from utilanno.annotate import STEP_NEEDS
from utilanno.dataset_specs import expand_beir

# what an experiment needs of the human labels, which a mined pool does not have
_HUMAN_NEEDS = {
    "labels": lambda e: e["labels"] in ("human", "union"),
    "human_fraction": lambda e: e.get("human_fraction", 0) > 0,
    "curriculum": lambda e: bool(e.get("curriculum")),
    "human_positive": lambda e: e.get("human_positive", "random") != "random",
}

# the annotation step whose merged table a label kind reads
_LABEL_STEP = {"relsel": "relsel", "utilsel": "utilsel", "union": "utilsel", "utilrank": "utilrank"}


def run_name(config: dict, exp: dict) -> str | None:
    """The run an experiment names, or the config's only run (None when it has several and names none): one
    rule for the config checks, the plan and the report (which reads configs that need not be whole)."""
    runs = config.get("annotation") or {}
    return exp.get("annotation") or (next(iter(runs)) if len(runs) == 1 else None)


def run_problems(config: dict, datasets: dict, ref) -> list[str]:
    """Annotation runs and the experiments that name them: datasets, pool sources, annotators, steps."""
    out = []
    runs = config["annotation"]
    for name, run in runs.items():
        key = f"annotation.{name}"
        if run["annotator"] is not None:
            ref(f"{key}.annotator", run["annotator"], config["llms"], "llms")
        ref(f"{key}.dataset", run["dataset"], datasets, "datasets")
        ds = datasets.get(run["dataset"])
        if ds is not None and run["pool_source"] not in ds:
            out.append(
                f"config key '{key}.pool_source': dataset {run['dataset']!r} has no '{run['pool_source']}' to"
                f" take candidates from (datasets.{run['dataset']}.{run['pool_source']})"
            )
        for step in run["steps"]:
            missing = [s for s in STEP_NEEDS[step] if s not in run["steps"]]
            if missing:
                out.append(
                    f"config key '{key}.steps': {step} reads {' and '.join(missing)}, which must be listed"
                )
    for ename, exp in config["experiments"].items():
        key = f"experiments.{ename}.annotation"
        if "annotation" in exp:
            ref(key, exp["annotation"], runs, "annotation")
            if exp["annotation"] not in runs:
                continue
            run = runs[exp["annotation"]]
        elif len(runs) > 1:
            out.append(
                f"config key '{key}': the config has several annotation runs"
                f" ({', '.join(sorted(runs))}); name one"
            )
            continue
        else:
            run = next(iter(runs.values()))
        step = _LABEL_STEP.get(exp["labels"].split("@")[0])
        if step and not (exp.get("annotator") or run["annotator"]):
            out.append(
                f"config key 'experiments.{ename}.annotator': labels {exp['labels']!r} need an annotator, and"
                " the run has none (its annotator is null)"
            )
        if step and step not in run["steps"]:
            out.append(
                f"config key 'experiments.{ename}.labels': {exp['labels']!r} needs the {step} step, which its"
                f" annotation run does not annotate (steps {run['steps']})"
            )
    return out


def mining_problems(config: dict, datasets: dict) -> list[str]:
    """A mined dataset: a split with queries, a depth that holds the candidates; no experiment on a mined run
    that needs human labels."""
    out = []
    for name, ds in datasets.items():
        if "mine" not in ds:
            continue
        key = f"datasets.{name}.mine"
        if ds["mine"]["split"] not in expand_beir(ds).get("queries", {}):
            out.append(f"config key '{key}.split': {name} has no queries for split {ds['mine']['split']!r}")
        if ds["mine"]["depth"] < ds["mine"]["candidates"]:
            out.append(f"config key '{key}.depth': must be at least candidates ({ds['mine']['candidates']})")
        for i, retriever in enumerate(ds["mine"]["dense"]):
            out += _dense_problems(config, name, f"{key}.dense.{i}", retriever)
    runs = config["annotation"]
    for ename, exp in config["experiments"].items():
        rname = run_name(config, exp)
        if rname not in runs or runs[rname]["pool_source"] != "mine":
            continue
        for what, needs in _HUMAN_NEEDS.items():
            if needs(exp):
                out.append(
                    f"config key 'experiments.{ename}.{what}': its annotation run {rname!r} annotates mined"
                    " candidates, which have no human labels"
                )
    return out


def _dense_problems(config: dict, dataset: str, key: str, retriever: str) -> list[str]:
    """A dense mining retriever: exactly one experiment or backbone of that name, and not an experiment that
    trains on candidates mined with it (a cycle)."""
    experiments, backbones = config["experiments"], config["backbones"]
    if retriever in experiments and retriever in backbones:
        return [f"config key '{key}': {retriever!r} names both an experiment and a backbone; rename one"]
    if retriever in backbones:
        return []
    if retriever not in experiments:
        known = sorted(experiments) + sorted(backbones)
        close = difflib.get_close_matches(retriever, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return [f"config key '{key}': {retriever!r} is neither an experiment nor a backbone{hint}"]
    runs = config["annotation"]
    run = run_name(config, experiments[retriever])
    cycle = run in runs and runs[run]["pool_source"] == "mine" and runs[run]["dataset"] == dataset
    if cycle:
        return [
            f"config key '{key}': experiment {retriever!r} trains on the candidates it would mine"
            f" (annotation run {run!r}): a cycle"
        ]
    return []
