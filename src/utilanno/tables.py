"""Reading the workflow's own intermediates: a damaged file is named in the error, never a bare KeyError.

A shard or table cut short (a full disk, a copy interrupted, a file edited by hand) must fail its reader with
the file's name and what is wrong, so that a person deletes it and lets Snakemake make it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from utilanno.errors import InputFormatError

_REMAKE = "delete it to have the workflow make it again"


def _schema(path: str | Path) -> dict:
    try:
        return dict(pl.read_parquet_schema(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # polars raises several kinds for a damaged footer or a non-Parquet file
        raise InputFormatError(str(path), None, f"not a readable Parquet table ({err}); {_REMAKE}") from None


def _check_columns(path, schema: dict, columns) -> None:
    missing = [c for c in columns or () if c not in schema]
    if missing:
        raise InputFormatError(
            str(path), None, f"missing column(s) {missing} (has {sorted(schema)}); {_REMAKE}"
        )


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pl.DataFrame:
    """pl.read_parquet with the file named in every error (unreadable file, missing columns)."""
    _check_columns(path, _schema(path), columns)
    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as err:  # a damaged page behind a readable footer
        raise InputFormatError(str(path), None, f"damaged Parquet data ({err}); {_REMAKE}") from None


def scan_parquet(path: str | Path, columns: list[str] | None = None) -> pl.LazyFrame:
    """pl.scan_parquet after checking that the file is a readable table with `columns`."""
    _check_columns(path, _schema(path), columns)
    return pl.scan_parquet(path)


def read_jsonl(path: str | Path, key: str = "qid") -> dict[str, dict]:
    """A JSONL file of records by `key`; a broken line is named with its line number."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                rec = json.loads(line)
                out[rec[key]] = rec
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise InputFormatError(str(path), n, f"not a JSON record ({err}); {_REMAKE}") from None
            except (KeyError, TypeError):
                raise InputFormatError(str(path), n, f"record without {key!r}; {_REMAKE}") from None
    return out
