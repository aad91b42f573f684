"""What the workflow produces, derived from a validated config: paths and targets, no Snakemake imports.

`rules/*.smk` call these helpers for inputs and targets, and tests call them directly.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlparse

from .config import expand_beir
from .tinyworld import files as tiny_files


class Plan:
    def __init__(self, config: dict):
        self.config = config
        self.results = config["results"]
        self.downloads = config["downloads"].replace("{results}", self.results)
        self.datasets = {name: expand_beir(ds) for name, ds in config["datasets"].items()}

    # -- raw sources ------------------------------------------------------------------------------------
    def source(self, name: str) -> dict:
        src = dict(self.config["sources"][name])
        if "path" in src:
            src["path"] = src["path"].replace("{results}", self.results)
        return src

    def source_filename(self, name: str) -> str:
        src = self.source(name)
        if src.get("filename"):
            return src["filename"]
        where = src["path"] if "path" in src else unquote(urlparse(src["url"]).path)
        return posixpath.basename(where.rstrip("/")) or name

    def source_file(self, name: str) -> str:
        return f"{self.downloads}/{name}/{self.source_filename(name)}"

    # -- tiny world -------------------------------------------------------------------------------------
    @property
    def tiny_world_dir(self) -> str:
        return f"{self.results}/tinyworld"

    def tiny_world_files(self) -> list[str]:
        tw = self.config.get("tiny_world")
        return [f"{self.tiny_world_dir}/{f}" for f in tiny_files(tw["beir"])] if tw else []

    # -- normalized data --------------------------------------------------------------------------------
    def data_dir(self, dataset: str) -> str:
        return f"{self.results}/data/{dataset}"

    def corpus_owner(self, dataset: str) -> str:
        """The dataset whose corpus.parquet this dataset uses (TREC DL shares MS MARCO's)."""
        seen = [dataset]
        while "dataset" in self.datasets[dataset].get("corpus", {}):
            dataset = self.datasets[dataset]["corpus"]["dataset"]
            if dataset in seen:
                raise ValueError(f"datasets {' -> '.join(seen + [dataset])}: corpus references form a cycle")
            seen.append(dataset)
        return dataset

    def table(self, dataset: str, kind: str, split: str | None = None) -> dict:
        ds = self.datasets[dataset]
        return ds[kind] if split is None else ds[kind][split]

    def data_targets(self) -> list[str]:
        out = []
        for name, ds in self.datasets.items():
            d = self.data_dir(name)
            if "source" in ds.get("corpus", {}):
                out.append(f"{d}/corpus.parquet")
            out += [f"{d}/queries-{s}.parquet" for s in ds.get("queries", {})]
            out += [f"{d}/qrels-{s}.trec" for s in ds.get("qrels", {})]
            out += [f"{d}/answers-{s}.parquet" for s in ds.get("answers", {})]
            if "train_pool" in ds:
                out.append(f"{d}/train-pool.parquet")
        return out

    # -- models ------------------------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        return path.replace("{results}", self.results)

    def llm(self, name: str) -> dict:
        llm = dict(self.config["llms"][name])
        llm["model"] = self.resolve(llm["model"])
        return llm

    def model_inputs(self, model: str) -> list[str]:
        """A model folder the workflow builds (tiny and exported models) is an input; a hub id is not."""
        model = self.resolve(model)
        return [model] if model.startswith(f"{self.results}/models/") else []

    # -- annotation -------------------------------------------------------------------------------------
    LLM_LABELS = ("relsel", "utilsel", "union")

    def annotators(self) -> list[str]:
        """The main annotator and every annotator an experiment takes LLM labels from."""
        main = self.config["annotation"]["annotator"]
        names = {main}
        for exp in self.config["experiments"].values():
            if exp["labels"].startswith(self.LLM_LABELS + ("utilrank",)):
                names.add(exp.get("annotator", main))
        return sorted(names)

    def pool_shards(self) -> list[str]:
        ds = self.config["annotation"]["dataset"]
        return [
            f"{self.results}/pool/{ds}/shard-{k}.parquet" for k in range(self.config["annotation"]["shards"])
        ]

    def annotation_dir(self, annotator: str, step: str) -> str:
        return f"{self.results}/annotate/{annotator}/{step}"

    def annotation_shards(self, annotator: str, step: str) -> list[str]:
        d = self.annotation_dir(annotator, step)
        return [f"{d}/shard-{k}.jsonl" for k in range(self.config["annotation"]["shards"])]

    def annotation_targets(self) -> list[str]:
        from .annotate import STEPS

        return [
            f"{self.annotation_dir(a, s)}/{f}"
            for a in self.annotators()
            for s in STEPS
            for f in ("merged.parquet", "stats.json")
        ]
