"""The report's figures (matplotlib, PNG and SVG, byte-identical on a rerun): training loss per training job,
positives per query per label set, ours against the paper per table, and hours per stage.

Each function writes `<name>.png` and `<name>.svg` into the folder and returns the file name stem; with
nothing to draw (no training in the config, say) the figure says so in words: every run has the same files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

# svg.hashsalt: ids stable across runs; fonttype none: text stays text (smaller, searchable)
plt.rcParams.update({"svg.hashsalt": "utilanno", "svg.fonttype": "none", "figure.dpi": 100, "font.size": 9})


def _save(fig, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", metadata={"Software": None})
    fig.savefig(folder / f"{name}.svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return name


def _nothing(folder: Path, name: str, what: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"nothing to draw: {what}", ha="center", va="center")
    return _save(fig, folder, name)


def _bar_pair(folder: Path, name: str, labels: list[str], left: tuple, right: tuple) -> str:
    """Two horizontal bar charts side by side over the same labels; each side (values, axis label, colour)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 0.6 + 0.35 * len(labels)), sharey=True)
    for ax, (values, label, colour) in zip(axes, (left, right), strict=True):
        ax.barh(labels, values, color=colour)
        ax.set_xlabel(label)
    axes[0].invert_yaxis()
    return _save(fig, folder, name)


def training_loss(logs: dict[str, pl.DataFrame], folder: Path) -> str:
    """One line per training job: loss against optimizer step (from its train-log.jsonl)."""
    logs = {k: v for k, v in logs.items() if v.height}
    if not logs:
        return _nothing(folder, "training-loss", "no training job in this run")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, log in sorted(logs.items()):
        ax.plot(log["step"].to_list(), log["loss"].to_list(), label=name, linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, folder, "training-loss")


def positives_per_query(positives: pl.DataFrame, folder: Path) -> str:
    """Mean positives per query and the share of queries without one, per label set (label_set, queries,
    mean_positives, no_positive)."""
    if not positives.height:
        return _nothing(folder, "positives-per-query", "no label set in this run")
    return _bar_pair(
        folder,
        "positives-per-query",
        positives["label_set"].to_list(),
        (positives["mean_positives"].to_list(), "positives per query (mean)", "tab:blue"),
        ((positives["no_positive"] * 100).to_list(), "queries without a positive (%)", "tab:gray"),
    )


def ours_vs_paper(cells: pl.DataFrame, folder: Path) -> str:
    """Our value against the paper's, one panel per table (cells: table, ours, paper), with the diagonal."""
    cells = cells.filter(pl.col("ours").is_not_null() & pl.col("paper").is_not_null())
    if not cells.height:
        return _nothing(folder, "ours-vs-paper", "no paper cell filled by this run")
    tables = list(dict.fromkeys(cells["table"]))
    cols = min(len(tables), 4)
    rows = -(-len(tables) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax, table in zip(axes.flat, tables, strict=False):
        mine = cells.filter(pl.col("table") == table)
        x, y = mine["paper"].to_list(), mine["ours"].to_list()
        low, high = min(x + y), max(x + y)
        ax.plot([low, high], [low, high], color="lightgray", linewidth=1)
        ax.scatter(x, y, s=10)
        ax.set_title(f"Table {table}")
        ax.set_xlabel("paper")
        ax.set_ylabel("ours")
    for ax in list(axes.flat)[len(tables) :]:
        ax.axis("off")
    return _save(fig, folder, "ours-vs-paper")


def hours_per_stage(stages: pl.DataFrame, folder: Path) -> str:
    """Wall hours (summed over jobs) and GPU-hours per stage (stage, wall_h, gpu_h)."""
    if not stages.height:
        return _nothing(folder, "hours-per-stage", "no benchmark file in this run")
    return _bar_pair(
        folder,
        "hours-per-stage",
        stages["stage"].to_list(),
        (stages["wall_h"].to_list(), "wall hours (sum over jobs)", "tab:green"),
        (stages["gpu_h"].to_list(), "GPU-hours", "tab:red"),
    )
