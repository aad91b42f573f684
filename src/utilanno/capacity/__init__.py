"""Capacity planning: what a config's jobs will write to disk and what they cost in GPU-hours and LLM tokens,
before any job runs, so that a researcher can request an allocation.

The jobs are the ones Snakemake would schedule for the config, enumerated from the same `Plan` the rules use
(one row per rule; the annotation rule per step). Each is sized from first principles:

- disk: from dataset sizes (`capacity/datasets.yaml`, normalized tables already built under
  `<results>/data/`, or a `--sizes` file) and the formats the workflow writes: float16 `.npy` embeddings
  (passages x dim x 2 bytes + an ids file), TREC run lines, JSONL records of the LLM steps (built here with
  the same keys the steps write), Parquet tables (raw bytes x a measured compression ratio), fp32 retrievers,
  Adam checkpoints;
- time: FLOPs of each job (transformers: 2 x parameters per token for inference, 6 x for training; exact
  inner-product search: queries x passages x dim x 2) over a rate from the rates file (`capacity/rates.yaml`:
  each figure says whether it was measured here, published, or assumed);
- LLM tokens: the step's prompt files rendered by the workflow's own prompt code over passages of the
  dataset's mean length, characters over characters-per-token, plus the chat template.

Temporary outputs (`temp()` in the rules: the embeddings unless `evaluation.keep_embeddings`; a training
job's checkpoint, deleted when it finishes) are reported apart from what is kept: the peak is what is kept
plus the largest temporary sets that exist at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from utilanno.annotate import STEPS
from utilanno.capacity.evaluation import EvalCosts
from utilanno.capacity.inputs import (  # noqa: F401  (the planner's public names, for scripts and tests)
    DEFAULT_RATES,
    DEFAULT_SIZES,
    DatasetSize,
    dataset_sizes,
    load_config,
    load_rates,
    load_sizes,
)
from utilanno.capacity.jobs import STAGES, Row
from utilanno.errors import ConfigError
from utilanno.plan import Plan


@dataclass
class Estimate:
    rows: list[Row]
    temp_sets: list[tuple[str, float]]  # temporary outputs that exist together: (what, bytes)
    concurrency: int
    keep_embeddings: bool
    sizes: dict[str, DatasetSize]
    models: dict[str, dict]
    calibration: list[dict]
    rates_path: str
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> float:
        return sum(r.kept for r in self.rows)

    @property
    def temp(self) -> float:
        return sum(r.temp for r in self.rows)

    @property
    def largest_temp(self) -> list[tuple[str, float]]:
        return sorted(self.temp_sets, key=lambda t: (-t[1], t[0]))[: self.concurrency]

    @property
    def peak(self) -> float:
        """Kept outputs plus the `concurrency` largest temporary sets at once."""
        return self.kept + sum(b for _, b in self.largest_temp)

    def job_counts(self) -> dict[str, int]:
        """Jobs per rule, as `snakemake -n` counts them."""
        out: dict[str, int] = {}
        for r in self.rows:
            rule = r.rule.split(":")[0]
            out[rule] = out.get(rule, 0) + r.jobs
        return out

    def total(self, attr: str) -> float:
        return sum(getattr(r, attr) for r in self.rows)

    def gpu_hours_by_rule(self) -> dict[str, float]:
        return {r.rule: r.gpu_hours for r in self.rows if r.gpu_hours}

    def to_dict(self) -> dict:
        return {
            "rows": [
                {
                    "stage": r.stage,
                    "rule": r.rule,
                    "jobs": r.jobs,
                    "gpus_per_job": sorted(r.gpus),
                    "kept_bytes": round(r.kept),
                    "temp_bytes": round(r.temp),
                    "gpu_hours": round(r.gpu_hours, 3),
                    "cpu_core_hours": round(r.cpu_hours, 3),
                    "longest_job_hours": round(r.job_hours, 3),
                    "tokens_in": round(r.tokens_in),
                    "tokens_out": round(r.tokens_out),
                }
                for r in self.rows
            ],
            "totals": {
                "jobs": sum(r.jobs for r in self.rows),
                "kept_bytes": round(self.kept),
                "temp_bytes": round(self.temp),
                "peak_bytes": round(self.peak),
                "all_temporaries_at_once_bytes": round(self.kept + self.temp),
                "gpu_hours": round(self.total("gpu_hours"), 2),
                "cpu_core_hours": round(self.total("cpu_hours"), 2),
                "tokens_in": round(self.total("tokens_in")),
                "tokens_out": round(self.total("tokens_out")),
            },
            "keep_embeddings": self.keep_embeddings,
            "concurrency": self.concurrency,
            "largest_temporary_sets": [{"what": w, "bytes": round(b)} for w, b in self.largest_temp],
            "calibration": self.calibration,
            "datasets": {n: {"passages": s.passages, "source": s.source} for n, s in self.sizes.items()},
            "models": self.models,
            "rates": self.rates_path,
            "notes": self.notes,
        }


class _Planner(EvalCosts):
    """Every rule's costs (the parent classes), the paper check, and the estimate."""

    def calibrate(self) -> list[dict]:
        """The paper's GPU-hours beside this plan's for the same steps of each run's annotator (the REPLUG
        scorer for `replug`), compute only: the paper ran one engine for all queries, without our per-shard
        start-up. Runs on a pool file only: the paper's figures are for its MS MARCO pools."""
        out = []
        for run in sorted(self.plan.runs()):
            if self.plan.mined(run):
                continue
            for item in self.rates["calibration"]:
                steps = item.get("steps", [])
                replug = steps == ["replug"]
                llm = self.plan.replug_scorer(run) if replug else self.plan.runs()[run]["annotator"]
                keys = [(f"annotate:{s}" if s in STEPS else s, llm, run) for s in steps]
                if not steps or not all(k in self.llm_hours for k in keys):
                    continue
                ours = sum(self.llm_hours[k] for k in keys)
                paper = item.get("gpu_hours")
                out.append(
                    {
                        "name": item.get("name", ", ".join(steps)),
                        "run": run,
                        "llm": llm,
                        "paper_gpu_hours": paper,
                        "plan_gpu_hours_without_startup": round(ours, 1),
                        "ratio": round(ours / paper, 2) if paper else None,
                    }
                )
        return out

    def run(self, concurrency: int) -> Estimate:
        self.data()
        self.mine()
        self.mine_dense()
        self.pool()
        self.annotate()
        self.replug()
        self.train()
        self.evaluate()
        self.rag()
        self.report()
        order = list(STAGES)
        rows = sorted(
            self.rows.values(),
            key=lambda r: (
                order.index(r.rule.split(":")[0]),
                STEPS.index(r.rule[9:]) if r.rule.startswith("annotate:") else 0,
            ),
        )
        return Estimate(
            rows=[r for r in rows if r.jobs],
            temp_sets=sorted(self.temp_sets.items()),
            concurrency=concurrency,
            keep_embeddings=self.keep,
            sizes=self.sizes,
            models=self.models,
            calibration=self.calibrate(),
            rates_path=self.rates["path"],
            notes=self.notes,
        )


def estimate(
    config: dict,
    rates: dict | None = None,
    sizes: tuple[dict, dict] | None = None,
    concurrency: int = 1,
) -> Estimate:
    """The capacity estimate of a validated config (see the module docstring)."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    rates = rates if rates is not None else load_rates()
    shipped, overrides = sizes if sizes is not None else load_sizes()
    plan = Plan(config)
    return _Planner(config, rates, dataset_sizes(config, plan, shipped, overrides)).run(concurrency)


# -- report ------------------------------------------------------------------------------------------------
def human_bytes(n: float) -> str:
    """Decimal units (1 GB = 1e9 bytes), as disk quotas are usually given."""
    if n <= 0:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def _num(x: float, digits: int = 1) -> str:
    if not x:
        return "-"
    if x < 0.5 * 10**-digits:
        return "<" + f"{10**-digits:.{digits}f}"
    if x >= 1e9:
        return f"{x / 1e9:,.2f} B"
    if x >= 1e6:
        return f"{x / 1e6:,.1f} M"
    return f"{x:,.{digits}f}"


def _count(x: float) -> str:
    return _num(x) if x >= 1e6 else (f"{x:,.0f}" if x else "-")


def format_table(est: Estimate) -> str:
    head = (
        "stage",
        "rule",
        "jobs",
        "GPUs/job",
        "kept",
        "temporary",
        "GPU-h",
        "CPU core-h",
        "longest job h",
        "tokens in",
        "tokens out",
    )
    lines = []
    for r in est.rows:
        lines.append(
            (
                r.stage,
                r.rule,
                f"{r.jobs:,}",
                ",".join(map(str, sorted(r.gpus))) if any(r.gpus) else "-",
                human_bytes(r.kept),
                human_bytes(r.temp),
                _num(r.gpu_hours),
                _num(r.cpu_hours),
                _num(r.job_hours, 2),
                _count(r.tokens_in),
                _count(r.tokens_out),
            )
        )
    lines.append(
        (
            "total",
            "",
            f"{sum(r.jobs for r in est.rows):,}",
            "",
            human_bytes(est.kept),
            human_bytes(est.temp),
            _num(est.total("gpu_hours")),
            _num(est.total("cpu_hours")),
            "",
            _count(est.total("tokens_in")),
            _count(est.total("tokens_out")),
        )
    )
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    left = {0, 1}

    def fmt(row):
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    out = [fmt(head), "  ".join("-" * w for w in widths)]
    out += [fmt(row) for row in lines[:-1]]
    out += ["  ".join("-" * w for w in widths), fmt(lines[-1])]
    return "\n".join(out)


def format_report(est: Estimate) -> str:
    out = [format_table(est), ""]
    keep = (
        "kept (evaluation.keep_embeddings: true)"
        if est.keep_embeddings
        else "temporary (temp(); evaluation.keep_embeddings: false)"
    )
    out.append("Disk (decimal units, 1 GB = 1e9 bytes):")
    largest = ", ".join(f"{w} {human_bytes(b)}" for w, b in est.largest_temp) or "no temporary outputs"
    sets = "set" if est.concurrency == 1 else f"{est.concurrency} sets"
    for label, value, extra in (
        ("kept (what survives the run)", est.kept, ""),
        (f"peak (kept + the largest temporary {sets} at once)", est.peak, f"  [{largest}]"),
        ("upper bound (every temporary output at once)", est.kept + est.temp, ""),
    ):
        out.append(f"  {label + ':':<56}{human_bytes(value):>10}{extra}")
    out.append(f"  corpus and query embeddings are {keep}")
    by_work: dict[str, float] = {}
    for r in est.rows:
        if r.gpu_hours:
            work = "LLM annotation" if r.rule.startswith("annotate:") else r.rule
            by_work[work] = by_work.get(work, 0.0) + r.gpu_hours
    gpu_hours = est.total("gpu_hours")
    if gpu_hours:
        stages = ", ".join(f"{w} {h:,.0f}" for w, h in by_work.items())
        out.append(
            f"GPU-hours: {gpu_hours:,.0f} in all ({stages}); ESTIMATES from FLOPs and an assumed utilisation"
            " (see the rates file), GPUs held by a job counted for its whole run"
        )
    else:
        out.append(f"GPU-hours: none (every job runs on CPU: {est.total('cpu_hours'):,.2f} core-hours)")
    out.append(
        f"LLM tokens: {_count(est.total('tokens_in'))} in, {_count(est.total('tokens_out'))} out"
        " (characters of the rendered prompts / characters per token: an estimate)"
    )
    for c in est.calibration:
        if c["ratio"] is None:
            continue
        out.append(
            f"Check against the paper: {c['name']} (run {c['run']}): paper {c['paper_gpu_hours']:,} GPU-h,"
            f" this plan {c['plan_gpu_hours_without_startup']:,} GPU-h without job start-up ({c['ratio']}x)"
        )
    rates = Path(est.rates_path)
    try:
        rates = rates.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    out.append(f"Rates: {rates} (each figure marked MEASURED here, PUBLISHED or ESTIMATE)")
    out.append("Datasets:")
    for name, s in est.sizes.items():
        what = f"{s.passages:,} passages" if s.passages else "no corpus of its own"
        out.append(f"  {name}: {what}; {s.source}")
    for note in dict.fromkeys(est.notes):
        out.append(f"Note: {note}")
    return "\n".join(out)
