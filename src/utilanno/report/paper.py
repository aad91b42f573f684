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

Which experiments reproduce each row: `utilanno.report.rows`.
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
