"""What the workflow produces, derived from a validated config: paths and targets, no Snakemake imports.

`rules/*.smk` call these helpers for inputs and targets, and tests call them directly.
"""

from __future__ import annotations

import json
import posixpath
from urllib.parse import unquote, urlparse

from utilanno.annotate import STEP_NEEDS, STEPS
from utilanno.config_annotation import run_name
from utilanno.dataset_specs import expand_beir
from utilanno.plan_evaluation import EvaluationPlan
from utilanno.testing.tinyworld import files as tiny_files


class Plan(EvaluationPlan):
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
        """The dataset whose corpus.parquet this dataset uses (TREC DL shares MS MARCO's, a hybrid set its
        sampled dataset's)."""
        if dataset in self.hybrid_sets():
            dataset = self.config["hybrid"]["dataset"]
        seen = [dataset]
        while "dataset" in self.datasets[dataset].get("corpus", {}):
            dataset = self.datasets[dataset]["corpus"]["dataset"]
            if dataset in seen:
                raise ValueError(f"datasets {' -> '.join(seen + [dataset])}: corpus references form a cycle")
            seen.append(dataset)
        return dataset

    # -- candidate mining (datasets.<name>.mine; annotate.mining) -----------------------------------------
    def mine_dir(self, dataset: str) -> str:
        return f"{self.results}/mine/{dataset}"

    def mine_runs(self, dataset: str) -> list[str]:
        """The runs a dataset's mining fuses: BM25's, then each dense retriever's (`mine.dense`, in order)."""
        d = self.mine_dir(dataset)
        return [f"{d}/bm25.trec"] + [
            f"{d}/dense-{name}.trec" for name in self.datasets[dataset]["mine"]["dense"]
        ]

    def mine_retriever(self, name: str) -> dict:
        """A dense mining retriever: an experiment's trained folder (its own pooling), or a backbone's model
        and pooling; `inputs`: what the job waits for (the trained folder, or a model the workflow builds)."""
        if name in self.config["experiments"]:
            folder = self.retriever_dir(name)
            return {"model": folder, "pooling": None, "inputs": [folder]}
        bb = self.config["backbones"][name]
        model = self.resolve(bb["model"])
        return {"model": model, "pooling": bb["pooling"], "inputs": self.model_inputs(model)}

    def mine_qrels(self, dataset: str) -> list[str]:
        """The mined split's qrels, when the dataset has them: only to report the pools' recall."""
        split = self.datasets[dataset]["mine"]["split"]
        return (
            [f"{self.data_dir(dataset)}/qrels-{split}.trec"]
            if split in self.datasets[dataset].get("qrels", {})
            else []
        )

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

    # Models the workflow builds itself under {results}/models/<name>: name -> scripts/models.py command.
    MODEL_BUILDERS = {
        "tiny-qwen2": "tiny-qwen2",
        "tiny-bert": "tiny-bert",
        "smollm2-135m": "smollm2",
        "minilm": "minilm",
    }

    def model_inputs(self, model: str) -> list[str]:
        """A model folder the workflow builds (tiny and exported models) is an input; a hub id is not."""
        model = self.resolve(model)
        return [model] if model.startswith(f"{self.results}/models/") else []

    # -- annotation runs -------------------------------------------------------------------------------
    LLM_LABELS = ("relsel", "utilsel", "union")

    def runs(self) -> dict[str, dict]:
        """Annotation runs by name (config `annotation`): dataset, pool source, annotator, steps, shards."""
        return self.config["annotation"]

    def run_of(self, exp: dict) -> str:
        """The annotation run an experiment trains on: its own `annotation`, or the config's only run."""
        run = run_name(self.config, exp)
        if run is None:
            raise ValueError(f"several annotation runs ({sorted(self.runs())}): the experiment must name one")
        return run

    def run_experiments(self, run: str) -> dict[str, dict]:
        return {n: e for n, e in self.config["experiments"].items() if self.run_of(e) == run}

    def mined(self, run: str) -> bool:
        return self.runs()[run]["pool_source"] == "mine"

    def mined_datasets(self) -> dict[str, str]:
        """Each dataset some run mines -> the first such run by name (mining runs once per dataset)."""
        out: dict[str, str] = {}
        for run in sorted(self.runs()):
            if self.mined(run):
                out.setdefault(self.runs()[run]["dataset"], run)
        return dict(sorted(out.items()))

    def pool_input(self, run: str) -> str:
        """The pool file a run's pool stage reads: its dataset's converted train_pool, or the mined one."""
        ds = self.runs()[run]["dataset"]
        if self.mined(run):
            return f"{self.mine_dir(ds)}/train-pool.parquet"
        return f"{self.data_dir(ds)}/train-pool.parquet"

    @staticmethod
    def takes_llm_labels(exp: dict) -> bool:
        return exp["labels"].startswith(Plan.LLM_LABELS + ("utilrank",))

    def annotators(self, run: str | None = None) -> list[str]:
        """The LLMs that annotate a run (every run when None): its own annotator and every annotator an
        experiment of the run takes LLM labels from."""
        if run is None:
            return sorted({a for r in self.runs() for a in self.annotators(r)})
        main = self.runs()[run]["annotator"]
        names = {main} if main else set()
        for exp in self.run_experiments(run).values():
            if self.takes_llm_labels(exp):
                names.add(exp.get("annotator") or main)
        return sorted(names)

    def annotations(self) -> list[tuple[str, str]]:
        """Every (run, annotator) pair that annotates, in name order."""
        return [(r, a) for r in sorted(self.runs()) for a in self.annotators(r)]

    def run_annotator(self, exp: dict) -> str:
        return exp.get("annotator") or self.runs()[self.run_of(exp)]["annotator"]

    def pool_dir(self, run: str) -> str:
        return f"{self.results}/pool/{run}"

    def pool_shards(self, run: str) -> list[str]:
        return [f"{self.pool_dir(run)}/shard-{k}.parquet" for k in range(self.runs()[run]["shards"])]

    def annotation_dir(self, run: str, annotator: str, step: str) -> str:
        return f"{self.results}/annotate/{run}/{annotator}/{step}"

    def annotation_shards(self, run: str, annotator: str, step: str) -> list[str]:
        d = self.annotation_dir(run, annotator, step)
        return [f"{d}/shard-{k}.jsonl" for k in range(self.runs()[run]["shards"])]

    def earlier_steps(self, run: str, annotator: str, step: str, k: int | str) -> dict[str, str]:
        """What an annotation step reads besides its pool shard: the earlier steps' outputs of its shard."""
        return {s: f"{self.annotation_dir(run, annotator, s)}/shard-{k}.jsonl" for s in STEP_NEEDS[step]}

    def annotation_steps(self) -> list[tuple[str, str, str]]:
        """Every (run, annotator, step) the workflow annotates, in the order of STEPS within a pair."""
        return [(r, a, s) for r, a in self.annotations() for s in STEPS if s in self.runs()[r]["steps"]]

    def annotation_targets(self) -> list[str]:
        return [
            f"{self.annotation_dir(r, a, s)}/{f}"
            for r, a, s in self.annotation_steps()
            for f in ("merged.parquet", "stats.json")
        ]

    # -- REPLUG -----------------------------------------------------------------------------------------
    def replug_runs(self) -> list[str]:
        """The runs an experiment with REPLUG labels trains on."""
        return sorted(
            {self.run_of(e) for e in self.config["experiments"].values() if e["labels"] == "replug"}
        )

    def replug_scorer(self, run: str) -> str:
        """The LLM that scores a run's REPLUG utilities."""
        return self.config["replug"].get("scorer") or self.runs()[run]["annotator"]

    def replug_table(self, run: str) -> str:
        return f"{self.annotation_dir(run, self.replug_scorer(run), 'replug')}/merged.parquet"

    def replug_answers(self, run: str) -> str:
        ds = self.runs()[run]["dataset"]
        return f"{self.data_dir(ds)}/answers-{self.config['replug']['answers']}.parquet"

    # -- label sets and training ------------------------------------------------------------------------
    @staticmethod
    def _pct(fraction: float) -> str:
        return f"{fraction * 100:g}pct"

    def _label_set(self, exp: dict, stage: int) -> tuple[str, dict]:
        """(name, spec) of the label set one stage of an experiment trains on. Names start with the run and
        say what a set holds: <run>/human, <run>/human-20pct, <run>/<annotator>/utilsel,
        <run>/<annotator>/utilrank@10-exclusion, <run>/<annotator>/union-20pct."""
        run = self.run_of(exp)
        pools = self.pool_shards(run)
        if stage == 2 or exp["labels"] == "human":
            frac = exp["human_fraction"] if stage == 2 else 1.0
            name = f"{run}/human" if frac >= 1.0 else f"{run}/human-{self._pct(frac)}"
            return name, {
                "kind": "human",
                "run": run,
                "pools": pools,
                "subset": frac,
                "merged": None,
                "human_positive": "random",
                "human_fraction": 0.0,
            }
        annotator = self.run_annotator(exp)
        kind = exp["labels"]
        name = f"{run}/{annotator}/{kind}"
        spec = {
            "kind": kind,
            "run": run,
            "pools": pools,
            "subset": 1.0,
            "human_positive": exp["human_positive"],
            "human_fraction": 0.0,
        }
        if kind == "union":
            name += f"-{self._pct(exp['human_fraction'])}"
            spec["human_fraction"] = exp["human_fraction"]
        if exp["human_positive"] != "random":
            name += f"-{exp['human_positive']}"
        step = "utilsel" if kind == "union" else kind.split("@")[0]
        spec["merged"] = f"{self.annotation_dir(run, annotator, step)}/merged.parquet"
        return name, spec

    def label_sets(self) -> dict[str, dict]:
        """Every label set an experiment needs, by name (REPLUG utilities are the merged scoring table)."""
        out = {}
        for exp in self.config["experiments"].values():
            for stage in (1, 2) if exp.get("curriculum") else (1,):
                if stage == 1 and exp["labels"] == "replug":
                    continue
                name, spec = self._label_set(exp, stage)
                out[name] = spec
        return out

    def labels_file(self, name: str) -> str:
        return f"{self.results}/labels/{name}.parquet"

    def retriever_dir(self, name: str) -> str:
        return f"{self.results}/retrievers/{name}"

    def _settings(self, exp: dict, stage: int) -> dict:
        t = self.config["training"]
        if exp["recipe"] != "paper":  # a named recipe overrides some training keys
            t = {**t, **t["recipes"][exp["recipe"]]}
        rate, epochs = t["learning_rate"], t["epochs"]
        cl = exp.get("curriculum")
        if stage == 2:
            loss, sampling, epochs = "singlelh", "human", cl["epochs"]
        else:
            loss, sampling = exp["loss"], cl["stage1_sampling"] if cl else exp["sampling"]
        keys = (
            "query_max_len",
            "passage_max_len",
            "group_size",
            "per_device_batch",
            "warmup_ratio",
            "weight_decay",
            "temperature",
            "max_grad_norm",
            "precision",
            "seed",
            "checkpoint_every",
        )
        return {
            "loss": loss,
            "sampling": sampling,
            "pooling": self.config["backbones"][exp["backbone"]]["pooling"],
            "learning_rate": rate,
            "epochs": epochs,
            **{k: t[k] for k in keys},
            # set only when configured: adding the keys to the schema reran no existing training
            **{k: t[k] for k in ("global_batch", "mini_batch") if t.get(k) is not None},
            # only a REPLUG run carries the REPLUG loss keys: editing them reruns no other training
            **({f"replug_{k}": v for k, v in t["replug"].items()} if loss == "replug_kl" else {}),
        }

    def trainings(self) -> dict[str, dict]:
        """Every training job by output name: the experiments, and the stage 1 of each curriculum, shared by
        experiments whose stage 1 is identical and named after the first of them in name order
        (`<experiment>-stage1`; name order, so that a reordered config names it the same).

        A job: init (backbone model or a stage-1 retriever folder), labels (file), run and pools (its pool
        shards, where negatives are sampled), settings (train.Settings).
        """
        jobs: dict[str, dict] = {}
        stage1: dict[str, str] = {}  # identity of a stage 1 -> its job name
        for name, exp in sorted(self.config["experiments"].items()):
            backbone = self.resolve(self.config["backbones"][exp["backbone"]]["model"])
            run = self.run_of(exp)
            first = {
                "init": backbone,
                "labels": self.replug_table(run)
                if exp["labels"] == "replug"
                else self.labels_file(self._label_set(exp, 1)[0]),
                "run": run,
                "pools": self.pool_shards(run),
                "settings": self._settings(exp, 1),
            }
            if not exp.get("curriculum"):
                jobs[name] = first
                continue
            key = repr(sorted(first.items()))
            if key not in stage1:
                stage1[key] = f"{name}-stage1"
                jobs[stage1[key]] = first
            jobs[name] = {
                "init": self.retriever_dir(stage1[key]),
                "labels": self.labels_file(self._label_set(exp, 2)[0]),
                "run": run,
                "pools": self.pool_shards(run),
                "settings": self._settings(exp, 2),
            }
        return jobs

    def init_inputs(self, init: str) -> list[str]:
        """Inputs of a training job's starting point: a model the workflow builds or a stage-1 retriever."""
        return [init] if init.startswith(f"{self.results}/retrievers/") else self.model_inputs(init)

    def training_targets(self) -> list[str]:
        return [self.retriever_dir(name) for name in self.config["experiments"]]

    # -- report -------------------------------------------------------------------------------------------
    REPORT_FILES = ("index.md", "index.html", "cells.tsv", "stages.tsv", "cost.tsv")
    REPORT_FIGURES = ("training-loss", "positives-per-query", "ours-vs-paper", "hours-per-stage")

    def report_dir(self) -> str:
        return f"{self.results}/report"

    def report_inputs(self) -> dict[str, dict | list | None]:
        """What the report reads, by kind: the results tables, each annotation step's statistics, each
        training job's folder and each label set (the same names the report's spec gives them)."""
        steps = {
            f"{r}/{a}/{s}": f"{self.annotation_dir(r, a, s)}/stats.json"
            for r, a, s in self.annotation_steps()
        }
        metrics = self.evaluation_targets()
        rag = self.rag_targets()
        return {
            "metrics": metrics or None,
            "rag": rag or None,
            "stats": steps,
            "trainings": {name: self.retriever_dir(name) for name in sorted(self.trainings())},
            "label_sets": {name: self.labels_file(name) for name in sorted(self.label_sets())},
        }

    def report_spec(self) -> str:
        """The report command's --spec: its inputs, the part of the config it reads, where benchmarks are and
        where it writes (JSON with sorted keys: a reordered config reruns nothing)."""
        c = self.config
        llm_keys = ("gpus", "engine", "price_per_million_input", "price_per_million_output")
        used = {
            "experiments": c["experiments"],
            "backbones": c["backbones"],
            "annotation": c["annotation"],
            "evaluation": {k: c["evaluation"][k] for k in ("bm25", "gpus")},
            "training": {"gpus": c["training"]["gpus"]},
            "rag": {k: c["rag"][k] for k in ("experiments", "generators")},
            "hybrid": {"judge": (c.get("hybrid") or {}).get("judge")},
            "replug": {"scorer": (c.get("replug") or {}).get("scorer")},
            "llms": {n: {k: v for k, v in llm.items() if k in llm_keys} for n, llm in c["llms"].items()},
            "report": c["report"],
            # passages a human would judge per query of a mined run (its candidates; else report's figure)
            "mined_pool_sizes": {
                r: self.datasets[run["dataset"]]["mine"]["candidates"]
                for r, run in sorted(self.runs().items())
                if self.mined(r)
            },
        }
        spec = {**self.report_inputs(), "config": used, "benchmarks": f"{self.results}/benchmarks"}
        return json.dumps({**spec, "out": self.report_dir()}, sort_keys=True)

    def report_targets(self) -> list[str]:
        files = [f"{self.report_dir()}/{f}" for f in self.REPORT_FILES]
        return files + [
            f"{self.report_dir()}/figures/{n}.{e}" for n in self.REPORT_FIGURES for e in ("png", "svg")
        ]
