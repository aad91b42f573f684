"""The paper's numbers (`paper_numbers.yaml`) as a validated flat table, and the experiments behind each row.

`load()` reads the YAML (its header documents the layout), refuses a malformed file with a message naming the
entry, the table and the row, and returns `PaperNumbers`; `PaperNumbers.frame()` is one row per printed value:

    entry      the YAML block (e.g. t2-retromae; a table may span blocks: v2-only rows and columns)
    table      the EMNLP table number ("2", "3", "12", ...)
    backbone   retromae | contriever | null (Tables 1 and 17)
    row        the paper row key (label set / loss / curriculum / annotator / cost item), see `row_labels`
    dataset, measure   the workflow's names (config.yaml datasets and groups; ir_measures or rag measures)
    generator  the RAG generator (an llms key) or null;  loss: Table 16's loss column or null
    value      the number as printed (null where PAPER-SPEC says NOT FOUND)
    mark       the significance marks as printed ("−", "+†", "(−)", ...) or null
    flag       uncertain ("(4.6?)") | inferred ("[INF]") | reconstructed (rebuilt table) | not found | null
    source     EMNLP | v2 (a value printed only in arXiv v2)

`map_experiments(config, paper)` says, for every row of the retrieval and RAG tables, which experiments of a
loaded config reproduce it (matched on their settings, not their names) or why none does. Tables 1 and 17 are
annotation statistics and costs, not experiments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from utilanno.errors import InputFormatError

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")

# EMNLP table number -> what its rows are
TABLE_KINDS = {
    "1": "annotation",
    "17": "cost",
    **dict.fromkeys(("2", "3", "12", "6", "7", "8", "16", "9"), "retrieval"),
    **dict.fromkeys(("4", "13", "5"), "rag"),
}
_REQUIRED = ("table", "spec", "source", "caption", "columns", "rows")
_OPTIONAL = ("backbone", "measure", "rows_are", "v2_only", "reconstructed")
_QUALIFIERS = ("generator", "loss", "source")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@/()-]*$")
_NUMBER = r"\d+(?:\.\d+)?"
_CELL = re.compile(rf"^(?P<num>{_NUMBER})(?P<marks>(?:\(−\)|−|\+|†)*)(?P<inferred> \[INF\])?$")
_UNCERTAIN = re.compile(rf"^\((?P<num>{_NUMBER})\?\)$")


@dataclass(frozen=True)
class Cell:
    """One printed value and what it is; the fields are the columns of `PaperNumbers.frame()`."""

    entry: str
    table: str
    backbone: str | None
    row: str
    dataset: str
    measure: str
    generator: str | None
    loss: str | None
    value: float | None
    mark: str | None
    flag: str | None
    source: str


SCHEMA = {f.name: pl.Float64 if f.name == "value" else pl.String for f in fields(Cell)}


@dataclass(frozen=True)
class Entry:
    """One YAML block: a paper table, or the v2-only rows/columns of one."""

    name: str
    table: str
    spec: str
    source: str
    caption: str
    backbone: str | None
    rows: tuple[str, ...]  # paper row keys, in print order
    losses: tuple[str | None, ...]  # the loss columns (Table 16), else (None,)

    @property
    def kind(self) -> str:
        return TABLE_KINDS[self.table]


@dataclass(frozen=True)
class PaperNumbers:
    """The loaded file: paper row labels, the table entries in file order, and every printed value."""

    path: str
    row_labels: dict[str, str]
    entries: dict[str, Entry]
    cells: tuple[Cell, ...]

    def frame(self) -> pl.DataFrame:
        """The flat table: one row per printed value, columns as in `SCHEMA`."""
        return pl.DataFrame(
            [{f.name: getattr(c, f.name) for f in fields(Cell)} for c in self.cells], schema=SCHEMA
        )


def _fail(path: str, where: str, reason: str) -> InputFormatError:
    return InputFormatError(path, None, f"{where}: {reason}")


def parse_cell(raw: Any) -> tuple[float | None, str | None, str | None]:
    """A YAML cell -> (value, mark, flag); raises ValueError on anything else than the layout allows."""
    if raw is None:
        return None, None, "not found"
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number")
    if isinstance(raw, int | float):
        return float(raw), None, None
    if isinstance(raw, str):
        if m := _UNCERTAIN.match(raw):
            return float(m["num"]), None, "uncertain"
        if m := _CELL.match(raw):
            return float(m["num"]), m["marks"] or None, "inferred" if m["inferred"] else None
    raise ValueError(
        f"cannot read cell {raw!r}: expected a number, null, NUMBER followed by marks (−, +, †, (−)), "
        "'(NUMBER?)' or 'NUMBER [INF]'"
    )


def _parse_column(text: Any, measure: str | None, where: str, path: str) -> dict[str, str | None]:
    """'DATASET [MEASURE] [generator=G] [loss=L] [source=v2]' -> its fields."""
    if not isinstance(text, str) or not text.split():
        raise _fail(path, where, f"a column must be a non-empty string, got {text!r}")
    tokens = text.split()
    plain = [t for t in tokens if "=" not in t]
    if not plain or len(plain) > 2 or (len(plain) == 2) == (measure is not None):
        raise _fail(
            path, where, f"column {text!r}: give 'DATASET MEASURE', or 'DATASET' when the table sets measure"
        )
    out: dict[str, str | None] = {"dataset": plain[0], "measure": plain[1] if len(plain) == 2 else measure}
    out |= {"generator": None, "loss": None, "source": None}
    for token in tokens:
        if "=" in token:
            key, _, value = token.partition("=")
            if key not in _QUALIFIERS or not value or (key == "source" and value != "v2"):
                raise _fail(
                    path,
                    where,
                    f"column {text!r}: unknown qualifier {token!r} (allowed: {_QUALIFIERS}, source=v2)",
                )
            out[key] = value
    for key in ("dataset", "measure", "generator", "loss"):
        if out[key] is not None and not _NAME.match(out[key]):
            raise _fail(path, where, f"column {text!r}: {key} {out[key]!r} is not a plain name")
    return out


def _entry(name: str, spec: Any, labels: dict[str, str], path: str) -> tuple[Entry, list[Cell]]:
    where = f"table entry {name!r}"
    if not isinstance(spec, dict):
        raise _fail(path, where, f"expected a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(path, where, f"unknown key(s) {unknown} (allowed: {sorted(_REQUIRED + _OPTIONAL)})")
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise _fail(path, where, f"missing key(s) {missing}")
    table = spec["table"]
    if not isinstance(table, str):
        raise _fail(path, where, f'table must be a quoted string such as "2", got {table!r}')
    if table not in TABLE_KINDS:
        raise _fail(
            path, where, f"table {table!r} is not one of the paper's tables {sorted(TABLE_KINDS, key=int)}"
        )
    where = f"table entry {name!r} (Table {table})"
    for key in ("spec", "source", "caption"):
        if not isinstance(spec[key], str) or not spec[key].strip():
            raise _fail(path, where, f"{key} must be a non-empty string")
    backbone, measure = spec.get("backbone"), spec.get("measure")
    for key, value in (("backbone", backbone), ("measure", measure)):
        if value is not None and not (isinstance(value, str) and _NAME.match(value)):
            raise _fail(path, where, f"{key} must be a plain name, got {value!r}")
    rows_are = spec.get("rows_are", "row")
    if rows_are not in ("row", "dataset"):
        raise _fail(path, where, f"rows_are must be 'row' or 'dataset', got {rows_are!r}")
    for key in ("v2_only", "reconstructed"):
        if not isinstance(spec.get(key, False), bool):
            raise _fail(path, where, f"{key} must be true or false")
    columns, rows = spec["columns"], spec["rows"]
    if not isinstance(columns, list) or not columns:
        raise _fail(path, where, "columns must be a non-empty list")
    if not isinstance(rows, dict) or not rows:
        raise _fail(path, where, "rows must be a non-empty mapping of row key -> list of values")

    def known_row(key: Any, what: str) -> str:
        if not isinstance(key, str) or key not in labels:
            raise _fail(path, where, f"{what} {key!r} has no entry in row_labels")
        return key

    if rows_are == "dataset":
        if measure is None:
            raise _fail(path, where, "a table with datasets as rows needs `measure`")
        parsed = [{"row": known_row(c, "column (a paper row)")} for c in columns]
    else:
        parsed = [_parse_column(c, measure, f"{where} column {i + 1}", path) for i, c in enumerate(columns)]
    cells: list[Cell] = []
    for key, values in rows.items():
        row_where = f"{where} row {key!r}"
        if rows_are == "row":
            known_row(key, "row")
        elif not isinstance(key, str) or not _NAME.match(key):
            raise _fail(path, row_where, "a dataset row key must be a plain name")
        if not isinstance(values, list) or len(values) != len(columns):
            n = len(values) if isinstance(values, list) else type(values).__name__
            raise _fail(path, row_where, f"{n} values for {len(columns)} columns")
        for col, raw in zip(parsed, values, strict=True):
            fields_ = (
                {**col, "row": key} if rows_are == "row" else {"dataset": key, "measure": measure, **col}
            )
            try:
                value, mark, flag = parse_cell(raw)
            except ValueError as err:
                label = fields_.get("row") if rows_are == "dataset" else f"{col['dataset']} {col['measure']}"
                raise _fail(path, f"{row_where} column {label!r}", str(err)) from None
            v2 = spec.get("v2_only", False) or col.get("source") == "v2"
            cells.append(
                Cell(
                    entry=name,
                    table=table,
                    backbone=backbone,
                    row=fields_["row"],
                    dataset=fields_["dataset"],
                    measure=fields_["measure"],
                    generator=fields_.get("generator"),
                    loss=fields_.get("loss"),
                    value=value,
                    mark=mark,
                    flag=flag or ("reconstructed" if spec.get("reconstructed", False) else None),
                    source="v2" if v2 else "EMNLP",
                )
            )
    row_keys = tuple(c["row"] for c in parsed) if rows_are == "dataset" else tuple(rows)
    losses = tuple(sorted({c["loss"] for c in parsed if c.get("loss")})) or (None,)
    entry = Entry(name, table, spec["spec"], spec["source"], spec["caption"], backbone, row_keys, losses)
    return entry, cells


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed
    """A SafeLoader that refuses a repeated mapping key (a row transcribed twice would hide the first)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(k, deep=True) for k, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(None, None, f"repeated key(s) {repeated}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load(path: str | Path = PAPER_NUMBERS) -> PaperNumbers:
    """Read and validate the paper's numbers; an InputFormatError names the entry, table, row and column."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        raise InputFormatError(path, None, f"not valid YAML: {err}") from None
    if not isinstance(data, dict) or set(data) != {"row_labels", "tables"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise InputFormatError(path, None, f"expected exactly the keys ['row_labels', 'tables'], got {keys}")
    labels = data["row_labels"]
    if not isinstance(labels, dict) or not all(isinstance(v, str) and v.strip() for v in labels.values()):
        raise InputFormatError(path, None, "row_labels must map each row key to its paper label")
    if not isinstance(data["tables"], dict) or not data["tables"]:
        raise InputFormatError(path, None, "tables must be a non-empty mapping of entry name -> table")
    entries: dict[str, Entry] = {}
    cells: list[Cell] = []
    for name, spec in data["tables"].items():
        entries[name], new = _entry(str(name), spec, labels, path)
        cells += new
    seen: dict[tuple, str] = {}
    for c in cells:
        key = (c.table, c.backbone, c.row, c.dataset, c.measure, c.generator, c.loss)
        if key in seen:
            raise _fail(
                path,
                f"table entry {c.entry!r} (Table {c.table}) row {c.row!r}",
                f"{key} also in {seen[key]!r}",
            )
        seen[key] = c.entry
    return PaperNumbers(path, dict(labels), entries, tuple(cells))


# ------------------------------------------------------------------------------------------------ experiments

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
}
# Paper rows no experiment of the grid can reproduce, and why (checked before the settings).
NOT_CONFIGURED = {
    "replug-human": "REPLUG (Human) is a v2-only row (human-label warm-up, then the KL loss); not configured",
    **{
        k: "not configured: needs NQ training data (issue 16)"
        for k in ("nq-human-first1lh", "nq-utilsel-first1lh", "nq-utilsel-summarg")
    },
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
        "backbone": backbone,
        "labels": s["labels"],
        "annotator": s.get("annotator", PAPER_ANNOTATOR) if llm_labels else None,
        "loss": s["loss"],
        "sampling": None if s["loss"] == "replug_kl" else s.get("sampling", LOSS_SAMPLING[s["loss"]]),
        "human_fraction": float(s.get("human_fraction", 0.0)),
        "curriculum": bool(s.get("curriculum", False)),
        "human_positive": s.get("human_positive", "random"),
    }


def experiment_settings(config: dict, name: str) -> dict[str, Any]:
    """An experiment's settings in the form of `row_settings`: a curriculum's group sampling is its stage 1
    sampling, REPLUG's KL loss has none, and human and REPLUG labels have no annotator."""
    exp = config["experiments"][name]
    curriculum = exp.get("curriculum")
    llm_labels = exp["labels"] not in ("human", "replug")
    sampling = curriculum.get("stage1_sampling", "pos_one") if curriculum else exp.get("sampling", "pos_all")
    return {
        "backbone": exp["backbone"],
        "labels": exp["labels"],
        "annotator": (exp.get("annotator") or config.get("annotation", {}).get("annotator"))
        if llm_labels
        else None,
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
    if entry.backbone not in config.get("backbones", {}):
        return (), f"backbone {entry.backbone!r} is not in config backbones"
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


def map_experiments(config: dict, paper: PaperNumbers) -> list[RowMatch]:
    """For every row of every retrieval and RAG table entry (and every loss column of Table 16): the config's
    experiments that reproduce it, matched on their settings, or the reason none does."""
    out = []
    for entry in paper.entries.values():
        if entry.kind not in ("retrieval", "rag"):
            continue
        for row in entry.rows:
            for loss in entry.losses:
                names, reason = _match(config, entry, row, loss)
                out.append(RowMatch(entry.name, entry.table, entry.backbone, row, loss, names, reason))
    return out
