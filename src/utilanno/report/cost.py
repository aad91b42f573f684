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

# benchmark folder -> (stage, what decides the job's GPUs): run-llm (<step>/<run>/<annotator>/<shard>.tsv),
# judge, generator (rag_generate/<experiment>/<generator>), eval, train, or None (no GPU)
FOLDERS = {
    "tiny_world": ("data", None),
    "corpus": ("data", None),
    "pool": ("pool", None),
    "mine_bm25": ("pool", None),
    "mine_dense": ("pool", "mine"),
    **{step: ("annotate", "run-llm") for step in STEPS},
    "replug": ("train", "run-llm"),
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
    "run": pl.String,  # the annotation run of an annotation or REPLUG job ("" otherwise)
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
    if how == "run-llm":
        known = len(parts) > 2 and parts[0] in config.get("annotation", {}) and parts[1] in llms
        return llms[parts[1]]["gpus"] if known else None
    if how == "judge":
        judge = (config.get("hybrid") or {}).get("judge")
        return llms[judge]["gpus"] if judge in llms else None
    if how == "generator":
        return llms[parts[1]]["gpus"] if len(parts) > 1 and parts[1] in llms else None
    if how == "mine":
        known = parts[0] in config.get("experiments", {}) or parts[0] in config.get("backbones", {})
        return config["evaluation"]["gpus"] if known else None
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
        run, parts = ("", rel[1:]) if how != "run-llm" else (rel[1], rel[2:])
        owner = parts[0].removesuffix(".tsv") if parts else ""
        gpus = _gpus(config, how, rel[1:])
        if gpus is None:
            continue
        wall, cpu = read_benchmark(path)
        rows.append(
            {
                "rule": rule,
                "stage": stage,
                "owner": owner,
                "run": run,
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


def _cost_row(
    run: str, queries: int, item: str, gpu_h: float, usd: float | None, paper_scale: float | None, method: str
) -> dict:
    per_1k = None if usd is None or not queries else usd / queries * 1000
    return {"run": run, "item": item, "queries": queries, "gpu_h": gpu_h, "usd": usd, "usd_per_1k": per_1k,
            "usd_paper_scale": paper_scale, "method": method}  # fmt: skip


def annotation_cost(
    config: dict, bench: pl.DataFrame, stats: dict[tuple[str, str, str], dict], paper_queries: int
) -> pl.DataFrame:
    """Table 17's rows for each annotation run with an annotator: run, item, queries, GPU-hours, USD here, USD
    per 1k queries, USD at the paper's scale (`paper_queries`), and how it is computed."""
    report = config["report"]
    gpu_price = report["gpu_price_per_hour"]
    human_unit = report["human_price_per_judgement"] * report["human_passages_per_query"]
    rows = []
    for run, ann in sorted(config["annotation"].items()):
        annotator = ann["annotator"]
        if not annotator:
            continue
        llm = config["llms"].get(annotator, {})
        step_stats = {step: s for (r, a, step), s in stats.items() if (r, a) == (run, annotator)}
        queries = max((s.get("queries", 0) for s in step_stats.values()), default=0)

        # a mined run's pools hold its candidates: a human would judge those (the paper's scale keeps its 31)
        passages = (config.get("mined_pool_sizes") or {}).get(run, report["human_passages_per_query"])
        human = _cost_row(
            run,
            queries,
            "human",
            0.0,
            report["human_price_per_judgement"] * passages * queries,
            human_unit * paper_queries,
            f"${report['human_price_per_judgement']} per judgement x {passages} passages x queries",
        )
        out = [human]
        mine = bench.filter((pl.col("owner") == annotator) & (pl.col("run") == run))
        for item, steps in LABEL_STEPS.items():
            if not all(s in step_stats for s in steps):
                continue
            gpu_h = mine.filter(pl.col("rule").is_in(steps))["gpu_s"].sum() / 3600
            usd = gpu_h * gpu_price + sum(_token_cost(step_stats[s], llm) for s in steps)
            method = f"GPU-hours of {' + '.join(steps)} x ${gpu_price}/GPU-hour"
            method += " + API tokens" if llm.get("engine") == "openai" else ""
            out.append(
                _cost_row(
                    run, queries, item, gpu_h, usd, usd / queries * paper_queries if queries else None, method
                )
            )
        replug = bench.filter((pl.col("rule") == "replug") & (pl.col("run") == run))
        if replug.height:
            scorer = (config.get("replug") or {}).get("scorer") or annotator
            gpu_h = replug["gpu_s"].sum() / 3600
            usd = gpu_h * gpu_price
            out.append(
                _cost_row(
                    run,
                    queries,
                    "replug-gpu",
                    gpu_h,
                    usd,
                    usd / queries * paper_queries if queries else None,
                    f"GPU-hours of REPLUG scoring with {scorer} x ${gpu_price}/GPU-hour (the paper adds the"
                    " human QA answers' cost to its total; not re-derived here)",
                )
            )
        util = next((r for r in out if r["item"] == "utilsel"), None)
        if util is not None:
            scale = util["usd_paper_scale"]
            out.append(
                _cost_row(
                    run,
                    queries,
                    "utilsel-cl20",
                    util["gpu_h"],
                    0.2 * human["usd"] + util["usd"],
                    None if scale is None else 0.2 * human["usd_paper_scale"] + scale,
                    "20% of the human cost + UtilSel's",
                )
            )
        rows += out
    schema = {
        "run": pl.String,
        "item": pl.String,
        "queries": pl.Int64,
        "gpu_h": pl.Float64,
        "usd": pl.Float64,
        "usd_per_1k": pl.Float64,
        "usd_paper_scale": pl.Float64,
        "method": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def load_stats(paths: dict[tuple[str, str, str], str]) -> dict[tuple[str, str, str], dict]:
    """(run, annotator, step) -> its stats.json, naming a file that is not JSON."""
    out = {}
    for key, path in paths.items():
        try:
            out[key] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputFormatError(str(path), None, f"cannot read annotation statistics: {err}") from None
    return out
