"""What the run cost, from Snakemake's benchmark files, and the annotation cost in the way of the paper's
Table 17 (EMNLP App. F; PAPER-SPEC B.8).

Every job with a `benchmark:` writes `<results>/benchmarks/<folder>/.../<job>.tsv` (wall seconds `s`, CPU
seconds `cpu_time`, memory). The folder says which rule ran, and the path's first part after it the
experiment, annotator or LLM whose resources the job held; GPU-seconds = wall seconds x the job's GPUs from
the config. Benchmarks of names the config no longer has (a removed experiment's old files) are left out.

Table 17's method: human labelling = price per judgement x passages per query x queries; an LLM label set =
the GPU-hours of the steps it needs x a price per GPU-hour (plus priced API tokens, for endpoint annotators);
a curriculum with a fraction of human labels = that fraction of the human cost + the LLM's. Our figures are
given for our run and at the paper's scale (the paper's query count, our cost per query).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from utilanno.annotate import STEPS
from utilanno.errors import InputFormatError

# benchmark folder -> (stage, what decides the job's GPUs): llm (the path's first part is an LLM or the
# annotator), judge, generator (rag_generate/<experiment>/<generator>), eval, train, or None (no GPU)
FOLDERS = {
    "tiny_world": ("data", None),
    "corpus": ("data", None),
    "pool": ("pool", None),
    "mine_bm25": ("pool", None),
    **{step: ("annotate", "llm") for step in STEPS},
    "replug": ("train", "llm"),
    "labels": ("train", None),
    "train": ("train", "train"),
    "encode_corpus": ("evaluate", "eval"),
    "search": ("evaluate", "eval"),
    "bm25_index": ("evaluate", None),
    "hybrid_judge": ("hybrid", "judge"),
    "rag_generate": ("rag", "generator"),
}
BENCHMARKS = {
    "rule": pl.String,
    "stage": pl.String,
    "owner": pl.String,  # the experiment, annotator or LLM the job belongs to ("" if none)
    "file": pl.String,
    "wall_s": pl.Float64,
    "cpu_s": pl.Float64,
    "gpus": pl.Int64,
    "gpu_s": pl.Float64,
}
# the LLM label sets of Table 17 and the annotation steps each needs (utilrank@k: the UtilRank steps)
LABEL_STEPS = {
    "relsel": ("relsel",),
    "utilsel": ("relsel", "pseudo_answer", "utilsel"),
    "utilrank": ("relsel", "pseudo_answer", "utilrank"),
}


def _gpus(config: dict, how: str | None, parts: tuple[str, ...]) -> int | None:
    """The job's GPUs, or None when the path names nothing the config has."""
    llms = config.get("llms", {})
    if how is None:
        return 0
    if how == "llm":
        return llms[parts[0]]["gpus"] if parts[0] in llms else None
    if how == "judge":
        judge = (config.get("hybrid") or {}).get("judge")
        return llms[judge]["gpus"] if judge in llms else None
    if how == "generator":
        return llms[parts[1]]["gpus"] if len(parts) > 1 and parts[1] in llms else None
    if how == "eval":
        return config["evaluation"]["gpus"] if parts[0] in config.get("experiments", {}) else None
    if how == "train":
        return (
            config["training"]["gpus"]
            if parts[0].removesuffix(".tsv").removesuffix("-stage1") in config.get("experiments", {})
            else None
        )
    raise ValueError(how)


def read_benchmark(path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one Snakemake benchmark file; CPU seconds NA (not measured) read 0."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header, values = lines[0].split("\t"), lines[-1].split("\t")
        row = dict(zip(header, values, strict=True))
        cpu = row.get("cpu_time", "NA")
        return float(row["s"]), 0.0 if cpu in ("NA", "-", "") else float(cpu)
    except (IndexError, KeyError, ValueError, UnicodeDecodeError) as err:
        raise InputFormatError(
            str(path), None, f"not a Snakemake benchmark file (s, cpu_time): {err}"
        ) from None


def benchmarks(folder: str | Path, config: dict) -> pl.DataFrame:
    """Every benchmark file under `folder` whose rule and owner the config knows (`BENCHMARKS`)."""
    root = Path(folder)
    rows = []
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rel = path.relative_to(root).parts
        rule = rel[0].removesuffix(".tsv")
        if rule not in FOLDERS:
            continue
        stage, how = FOLDERS[rule]
        owner = rel[1].removesuffix(".tsv") if len(rel) > 1 else ""
        gpus = _gpus(config, how, rel[1:])
        if gpus is None:
            continue
        wall, cpu = read_benchmark(path)
        rows.append(
            {
                "rule": rule,
                "stage": stage,
                "owner": owner,
                "file": str(path),
                "wall_s": wall,
                "cpu_s": cpu,
                "gpus": gpus,
                "gpu_s": wall * gpus,
            }
        )
    return pl.DataFrame(rows, schema=BENCHMARKS)


def per_stage(bench: pl.DataFrame) -> pl.DataFrame:
    """Jobs, wall hours (summed over jobs), CPU hours and GPU-hours per stage."""
    return (
        bench.group_by("stage", maintain_order=True)
        .agg(
            jobs=pl.len(),
            wall_h=pl.col("wall_s").sum() / 3600,
            cpu_h=pl.col("cpu_s").sum() / 3600,
            gpu_h=pl.col("gpu_s").sum() / 3600,
        )
        .sort("stage")
    )


def _token_cost(stats: dict, llm: dict) -> float:
    inp, out = llm.get("price_per_million_input"), llm.get("price_per_million_output")
    if inp is None and out is None:
        return 0.0
    return (stats.get("prompt_tokens", 0) * (inp or 0) + stats.get("completion_tokens", 0) * (out or 0)) / 1e6


def annotation_cost(
    config: dict, bench: pl.DataFrame, stats: dict[tuple[str, str], dict], paper_queries: int
) -> pl.DataFrame:
    """Table 17's rows for our run: item, queries, GPU-hours, USD here, USD per 1k queries, USD at the paper's
    scale (`paper_queries`), and how it is computed."""
    report = config["report"]
    annotator = config["annotation"]["annotator"]
    llm = config["llms"].get(annotator, {})
    gpu_price = report["gpu_price_per_hour"]
    step_stats = {step: s for (a, step), s in stats.items() if a == annotator}
    queries = max((s.get("queries", 0) for s in step_stats.values()), default=0)
    human_unit = report["human_price_per_judgement"] * report["human_passages_per_query"]
    rows = [
        {
            "item": "human",
            "queries": queries,
            "gpu_h": 0.0,
            "usd": human_unit * queries,
            "usd_paper_scale": human_unit * paper_queries,
            "method": f"${report['human_price_per_judgement']} per judgement x "
            f"{report['human_passages_per_query']} passages x queries",
        }
    ]
    mine = bench.filter(pl.col("owner") == annotator)
    for item, steps in LABEL_STEPS.items():
        if not all(s in step_stats for s in steps):
            continue
        gpu_h = mine.filter(pl.col("rule").is_in(steps))["gpu_s"].sum() / 3600
        usd = gpu_h * gpu_price + sum(_token_cost(step_stats[s], llm) for s in steps)
        rows.append(
            {
                "item": item,
                "queries": queries,
                "gpu_h": gpu_h,
                "usd": usd,
                "usd_paper_scale": usd / queries * paper_queries if queries else None,
                "method": f"GPU-hours of {' + '.join(steps)} x ${gpu_price}/GPU-hour"
                + (" + API tokens" if llm.get("engine") == "openai" else ""),
            }
        )
    replug = bench.filter(pl.col("rule") == "replug")
    if replug.height:
        scorer = (config.get("replug") or {}).get("scorer") or annotator
        gpu_h = replug["gpu_s"].sum() / 3600
        rows.append(
            {
                "item": "replug-gpu",
                "queries": queries,
                "gpu_h": gpu_h,
                "usd": gpu_h * gpu_price,
                "usd_paper_scale": gpu_h * gpu_price / queries * paper_queries if queries else None,
                "method": f"GPU-hours of REPLUG scoring with {scorer} x ${gpu_price}/GPU-hour (the paper "
                "adds the human QA answers' cost to its total; not re-derived here)",
            }
        )
    if any(r["item"] == "utilsel" for r in rows):
        util = next(r for r in rows if r["item"] == "utilsel")
        rows.append(
            {
                "item": "utilsel-cl20",
                "queries": queries,
                "gpu_h": util["gpu_h"],
                "usd": 0.2 * rows[0]["usd"] + util["usd"],
                "usd_paper_scale": None
                if util["usd_paper_scale"] is None
                else 0.2 * rows[0]["usd_paper_scale"] + util["usd_paper_scale"],
                "method": "20% of the human cost + UtilSel's",
            }
        )
    schema = {
        "item": pl.String,
        "queries": pl.Int64,
        "gpu_h": pl.Float64,
        "usd": pl.Float64,
        "usd_paper_scale": pl.Float64,
        "method": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def load_stats(paths: dict[tuple[str, str], str]) -> dict[tuple[str, str], dict]:
    """(annotator, step) -> its stats.json, naming a file that is not JSON."""
    out = {}
    for key, path in paths.items():
        try:
            out[key] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputFormatError(str(path), None, f"cannot read annotation statistics: {err}") from None
    return out
