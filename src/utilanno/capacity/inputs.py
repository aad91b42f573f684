"""Inputs of the capacity planner (`utilanno.capacity`): the config as the Snakefile sees it, the rates file,
dataset sizes (shipped table, tables already built, --sizes files) and model sizes."""

from __future__ import annotations

import copy
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from utilanno import config as configuration
from utilanno.errors import ConfigError
from utilanno.plan import Plan

REPO = Path(__file__).resolve().parents[3]
DEFAULT_RATES = REPO / "capacity" / "rates.yaml"
DEFAULT_SIZES = REPO / "capacity" / "datasets.yaml"
PAPER_CONFIG = REPO / "config.yaml"


# -- inputs ------------------------------------------------------------------------------------------------
def _read_yaml(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} file '{path}': not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} file '{path}': expected a mapping at the top level")
    return data


def _merge(base: dict, over: dict) -> dict:
    """`over` merged into `base`, mappings key by key (as Snakemake merges --configfile into configfile:)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path) -> dict:
    """A config as the Snakefile sees it: a file with `datasets:` is a whole grid; any other file overrides
    keys of the paper grid (config.yaml). Validated, defaults filled."""
    user = _read_yaml(path, "config")
    config = user if "datasets" in user else _merge(_read_yaml(PAPER_CONFIG, "config"), user)
    return configuration.validate(config)


# dotted key -> what it must be; the rates file is checked before anything is estimated
_RATE_KEYS = (
    "gpu.peak_tflops",
    "utilisation.llm_prefill",
    "utilisation.llm_decode",
    "utilisation.encode",
    "utilisation.train",
    "startup_s.llm",
    "startup_s.encode",
    "startup_s.search",
    "startup_s.train",
    "cpu.transformer_gflops_per_core",
    "cpu.search_gflops_per_core",
    "cpu.bm25_index_docs_per_s_per_core",
    "cpu.bm25_search_queries_per_s_per_core",
    "cpu.convert_passages_per_s",
    "text.chars_per_word",
    "text.encoder_tokens_per_word",
    "text.llm_chars_per_token",
    "text.chat_message_tokens",
    "text.chat_template_tokens",
    "text.answer_words",
    "completion_tokens.default",
    "relsel_positives.default",
    "bytes.parquet_lz4_ratio",
    "bytes.parquet_zstd_ratio",
    "bytes.run_score_chars",
    "bytes.bm25_score_chars",
    "bytes.npy_header",
    "bytes.bm25_index_bytes_per_word",
    "bytes.tokenizer_bytes",
    "bytes.checkpoint_bytes_per_param",
    "bytes.retriever_bytes_per_param",
    "bytes.train_log_line",
    "bytes.stats_json",
    "bytes.report",
)
# keys that may be 0 (a start-up time); every other rate must be positive
_MAY_BE_ZERO = ("startup_s.",)


def load_rates(path: str | Path = DEFAULT_RATES) -> dict:
    rates = _read_yaml(path, "rates")
    for key in _RATE_KEYS:
        node = rates
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"rates file '{path}': missing key '{key}'")
            node = node[part]
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise ConfigError(f"rates file '{path}': key '{key}' must be a number, got {node!r}")
        if node < 0 or (node == 0 and not key.startswith(_MAY_BE_ZERO)):
            raise ConfigError(f"rates file '{path}': key '{key}' must be positive, got {node!r}")
    for name, model in (rates.get("models") or {}).items():
        if not isinstance(model, dict) or not isinstance(model.get("params"), int | float):
            raise ConfigError(f"rates file '{path}': key 'models.{name}.params' must be a number")
    rates.setdefault("models", {})
    rates.setdefault("calibration", [])
    rates["path"] = str(path)
    return rates


def load_sizes(paths: list[str | Path] | tuple = ()) -> tuple[dict, dict]:
    """(shipped table by canonical key, overrides by config dataset name) from the default table and files."""
    shipped = _read_yaml(DEFAULT_SIZES, "sizes").get("datasets") or {}
    overrides: dict = {}
    for path in paths:
        data = _read_yaml(path, "sizes").get("datasets")
        if not isinstance(data, dict):
            raise ConfigError(f"sizes file '{path}': expected a 'datasets:' mapping of dataset name -> sizes")
        overrides = _merge(overrides, data)
    return shipped, overrides


# -- dataset sizes -----------------------------------------------------------------------------------------
@dataclass
class DatasetSize:
    passages: int | None = None
    words: float = 56.0
    title_words: float = 0.0  # added to `words` when the config joins titles to the corpus (`titles:`)
    docid_chars: float = 8.0
    query_words: float = 6.0
    queries: dict = field(default_factory=dict)
    qrels: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)
    pool_queries: int | None = None
    source: str = ""
    files: dict = field(default_factory=dict)  # local table -> bytes on disk (measured)


def canonical_key(name: str, raw: dict) -> str:
    """`beir/<folder>` for a BEIR folder (a renamed dataset still finds its sizes), else the config name."""
    return f"beir/{raw['beir']['folder'].strip('/')}" if "beir" in raw else name


def tiny_world_sizes(tw: dict) -> dict:
    """Sizes of the tiny world's datasets, as `utilanno.testing.tinyworld.generate` makes them from its
    parameters (BEIR sets: 160 passages and 24 judged test queries each; NQ-open covers 2/3 of them; the
    own corpus: 160 passages)."""
    p = tw.get("passages", 1200)
    tq, dq, lq = tw.get("train_queries", 64), tw.get("dev_queries", 40), tw.get("dl_queries", 8)
    common = {"words": 22.0, "docid_chars": 6.0, "query_words": 5.4, "source": "tiny world parameters"}
    out = {
        "msmarco": {
            **common,
            "passages": p,
            "queries": {"train": tq, "dev": dq},
            "qrels": {"train": tq, "dev": dq},
            "answers": {"train": tq, "dev": dq},
            "pool_queries": tq,
        },
        "dl19": {**common, "queries": {"test": lq}, "qrels": {"test": 7 * lq}},
        "dl20": {**common, "queries": {"test": lq}, "qrels": {"test": 7 * lq}},
    }
    beir = {"passages": 160, "queries": {"test": 24}, "qrels": {"test": 32}}
    for name in tw.get("beir", ["scifact", "nq", "hotpotqa", "cqadupstack"]):
        folders = (
            [f"cqadupstack/{f}" for f in ("android", "gis", "stats")] if name == "cqadupstack" else [name]
        )
        for folder in folders:
            entry = {**common, **beir}
            if name in ("nq", "hotpotqa"):
                entry["answers"] = {"test": 16 if name == "nq" else 24}
            out[f"beir/{folder}"] = entry
    # the own corpus (tinyworld._own_corpus): 24 unlabelled training queries, 12 test queries with answers
    out["own"] = {**common, "passages": 160, "queries": {"train": 24, "test": 12}, "qrels": {"test": 12}}
    out["own"]["answers"] = {"test": 12}
    return out


def _rows(path: Path) -> int:
    import polars as pl

    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def _local(plan: Plan, name: str) -> tuple[dict, dict]:
    """Counts read from a dataset's normalized tables that already exist (Parquet row counts from the
    metadata; judgment lines), and their sizes on disk."""
    folder = Path(plan.data_dir(name))
    counts: dict = {}
    files: dict = {}
    if not folder.is_dir():
        return counts, files
    for path in sorted(folder.iterdir()):
        stem, suffix = path.stem, path.suffix
        try:
            if path.name == "corpus.parquet":
                counts["passages"] = _rows(path)
            elif path.name == "train-pool.parquet":
                counts["pool_queries"] = _rows(path)
            elif suffix == ".parquet" and stem.startswith(("queries-", "answers-")):
                kind, split = stem.split("-", 1)
                counts.setdefault(kind, {})[split] = _rows(path)
            elif suffix == ".trec" and stem.startswith("qrels-"):
                with open(path, "rb") as fh:
                    counts.setdefault("qrels", {})[stem[len("qrels-") :]] = sum(
                        block.count(b"\n") for block in iter(lambda fh=fh: fh.read(1 << 20), b"")
                    )
            else:
                continue
        except Exception:  # a damaged or partial table: fall back to the other sources of sizes
            continue
        files[str(path)] = path.stat().st_size
    return counts, files


def _tiny_paths(plan: Plan, ds: dict) -> bool:
    """Whether every table of a dataset reads a file of the tiny world."""
    from utilanno.dataset_specs import iter_tables

    prefix = plan.tiny_world_dir + "/"
    sources = [t["source"] for _, t in iter_tables("", ds) if "source" in t]
    return bool(sources) and all(plan.source(s).get("path", "").startswith(prefix) for s in sources)


def dataset_sizes(config: dict, plan: Plan, shipped: dict, overrides: dict) -> dict[str, DatasetSize]:
    """Sizes of every dataset of the config: a --sizes file (by config name) > tables already built >
    the shipped table (by canonical key) or, for tiny-world sources, the tiny world's parameters."""
    tiny = tiny_world_sizes(config["tiny_world"]) if config.get("tiny_world") else {}
    out = {}
    for name, raw in config["datasets"].items():
        ds = plan.datasets[name]
        key = canonical_key(name, raw)
        origin = []
        if tiny and _tiny_paths(plan, raw) and key in tiny:
            entry = copy.deepcopy(tiny[key])
            origin.append(entry["source"])
        elif key in shipped:
            entry = copy.deepcopy(shipped[key])
            origin.append(f"capacity/datasets.yaml '{key}': {entry.get('source', '')}")
        else:
            entry = {}
        counts, files = _local(plan, name)
        if counts:
            entry = _merge(entry, counts)
            origin.append(f"tables under {plan.data_dir(name)}")
        if name in overrides:
            if not isinstance(overrides[name], dict):
                raise ConfigError(f"sizes file: 'datasets.{name}' must be a mapping")
            entry = _merge(entry, overrides[name])
            origin.append("--sizes file")
        missing = []
        if "source" in ds.get("corpus", {}) and not entry.get("passages"):
            missing.append("passages")
        for split in ds.get("queries", {}):
            if split not in (entry.get("queries") or {}):
                missing.append(f"queries.{split}")
        if "train_pool" in ds and not entry.get("pool_queries"):
            missing.append("pool_queries")
        if missing:
            raise ConfigError(
                f"config key 'datasets.{name}': no size known for {', '.join(missing)} (looked up as '{key}'"
                f" in {DEFAULT_SIZES.relative_to(REPO)} and in {plan.data_dir(name)}/); give them in a file"
                f" passed with --sizes, e.g.\n  datasets:\n    {name}: {{passages: 1000000, words: 60,"
                " queries: {test: 500}}"
            )
        known = {k: v for k, v in entry.items() if k in DatasetSize.__dataclass_fields__}
        size = DatasetSize(**known)
        for split, n in size.queries.items():  # judgments and answers default to one per query
            size.qrels.setdefault(split, n)
        if (ds.get("corpus") or {}).get("titles") and "passages" not in counts:
            size.words += size.title_words
        size.source = "; ".join(origin)
        size.files = files
        out[name] = size
    return out


# -- models ------------------------------------------------------------------------------------------------
def _safetensors_params(folder: Path) -> int | None:
    total, found = 0, False
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, t in header.items():
            if key != "__metadata__":
                total += math.prod(t["shape"])
                found = True
    return total if found else None


def model_info(plan: Plan, rates: dict, model: str, key: str) -> dict:
    """{params, dim, source} of a model: read from its folder when it exists (config.json + safetensors),
    else the rates file's `models:` entry (by hub id, or by name for a model the workflow builds)."""
    path = Path(plan.resolve(model))
    if path.is_dir() and (path / "config.json").is_file():
        params = _safetensors_params(path)
        if params:
            cfg = json.loads((path / "config.json").read_text())
            return {"params": params, "dim": cfg.get("hidden_size"), "source": f"read from {path}"}
    built = f"{plan.results}/models/"
    name = str(path)[len(built) :].strip("/") if str(path).startswith(built) else model
    entry = rates["models"].get(name) or rates["models"].get(model)
    if entry is None:
        raise ConfigError(
            f"config key '{key}': no parameter count for model {model!r}: add `{name}: {{params: N, dim: D}}`"
            f" under 'models:' in the rates file ({rates['path']}), or build the model folder first"
        )
    return {"params": float(entry["params"]), "dim": entry.get("dim"), "source": entry.get("source", "rates")}
