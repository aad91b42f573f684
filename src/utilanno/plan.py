"""What the workflow produces, derived from a validated config: paths and targets, no Snakemake imports.

`rules/*.smk` call these helpers for inputs and targets, and tests call them directly.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlparse

from utilanno.annotate import STEP_NEEDS, STEPS
from utilanno.dataset_specs import expand_beir
from utilanno.testing.tinyworld import files as tiny_files


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

    def earlier_steps(self, annotator: str, step: str, k: int | str) -> dict[str, str]:
        """What an annotation step reads besides its pool shard: the earlier steps' outputs of its shard."""
        return {s: f"{self.annotation_dir(annotator, s)}/shard-{k}.jsonl" for s in STEP_NEEDS[step]}

    def annotation_targets(self) -> list[str]:
        return [
            f"{self.annotation_dir(a, s)}/{f}"
            for a in self.annotators()
            for s in STEPS
            for f in ("merged.parquet", "stats.json")
        ]

    # -- REPLUG -----------------------------------------------------------------------------------------
    def replug_scorer(self) -> str | None:
        """The LLM that scores REPLUG utilities, when an experiment uses them."""
        if not any(e["labels"] == "replug" for e in self.config["experiments"].values()):
            return None
        return self.config["replug"].get("scorer", self.config["annotation"]["annotator"])

    def replug_table(self) -> str:
        return f"{self.annotation_dir(self.replug_scorer(), 'replug')}/merged.parquet"

    def replug_answers(self) -> str:
        ds = self.config["annotation"]["dataset"]
        return f"{self.data_dir(ds)}/answers-{self.config['replug']['answers']}.parquet"

    # -- label sets and training ------------------------------------------------------------------------
    @staticmethod
    def _pct(fraction: float) -> str:
        return f"{fraction * 100:g}pct"

    def _label_set(self, exp: dict, stage: int) -> tuple[str, dict]:
        """(name, spec) of the label set one stage of an experiment trains on. Names say what a set holds:
        human, human-20pct, <annotator>/utilsel, <annotator>/utilrank@10-exclusion, <annotator>/union-20pct.
        """
        if stage == 2 or exp["labels"] == "human":
            frac = exp["human_fraction"] if stage == 2 else 1.0
            name = "human" if frac >= 1.0 else f"human-{self._pct(frac)}"
            return name, {
                "kind": "human",
                "subset": frac,
                "merged": None,
                "human_positive": "random",
                "human_fraction": 0.0,
            }
        annotator = exp.get("annotator", self.config["annotation"]["annotator"])
        kind = exp["labels"]
        name = f"{annotator}/{kind}"
        spec = {"kind": kind, "subset": 1.0, "human_positive": exp["human_positive"], "human_fraction": 0.0}
        if kind == "union":
            name += f"-{self._pct(exp['human_fraction'])}"
            spec["human_fraction"] = exp["human_fraction"]
        if exp["human_positive"] != "random":
            name += f"-{exp['human_positive']}"
        step = "utilsel" if kind == "union" else kind.split("@")[0]
        spec["merged"] = f"{self.annotation_dir(annotator, step)}/merged.parquet"
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
        rate, epochs = t["learning_rate"], t["epochs"]
        if exp["recipe"] == "retromae":
            rate, epochs = t["retromae_recipe"]["learning_rate"], t["retromae_recipe"]["epochs"]
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
            "utility_temperature": self.config["replug"]["temperature"],
            **{k: t[k] for k in keys},
        }

    def trainings(self) -> dict[str, dict]:
        """Every training job by output name: the experiments, and the stage 1 of each curriculum, shared by
        experiments whose stage 1 is identical and named after the first of them in name order
        (`<experiment>-stage1`; name order, so that a reordered config names it the same).

        A job: init (backbone model or a stage-1 retriever folder), labels (file), settings (train.Settings).
        """
        jobs: dict[str, dict] = {}
        stage1: dict[str, str] = {}  # identity of a stage 1 -> its job name
        for name, exp in sorted(self.config["experiments"].items()):
            backbone = self.resolve(self.config["backbones"][exp["backbone"]]["model"])
            first = {
                "init": backbone,
                "labels": self.replug_table()
                if exp["labels"] == "replug"
                else self.labels_file(self._label_set(exp, 1)[0]),
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
                "settings": self._settings(exp, 2),
            }
        return jobs

    def init_inputs(self, init: str) -> list[str]:
        """Inputs of a training job's starting point: a model the workflow builds or a stage-1 retriever."""
        return [init] if init.startswith(f"{self.results}/retrievers/") else self.model_inputs(init)

    def training_targets(self) -> list[str]:
        return [self.retriever_dir(name) for name in self.config["experiments"]]

    # -- evaluation -------------------------------------------------------------------------------------
    def _members(self, names: list[str]) -> list[str]:
        """Datasets behind names of datasets or groups (groups may contain groups), in order, once each."""
        groups = self.config["evaluation"]["groups"]
        out: list[str] = []
        for name in names:
            for m in self._members(groups[name]) if name in groups else [name]:
                if m not in out:
                    out.append(m)
        return out

    def eval_names(self, system: str) -> list[str]:
        """Datasets and groups a system reports: an experiment's own `evaluate` list, else
        evaluation.datasets; BM25 reports every dataset any experiment does."""
        ev = self.config["evaluation"]
        exps = self.config["experiments"]
        if system in exps:
            return list(exps[system].get("evaluate", ev["datasets"]))
        names = list(ev["datasets"])
        for exp in exps.values():
            names += [n for n in exp.get("evaluate", []) if n not in names]
        return names

    def eval_datasets(self, system: str | None = None) -> list[str]:
        """Datasets a system is evaluated on (groups replaced by their members, in order, once each); all
        evaluated datasets without a system."""
        if system is not None:
            return self._members(self.eval_names(system))
        out: list[str] = []
        for name in self.systems():
            out += [d for d in self.eval_datasets(name) if d not in out]
        return out or self._members(self.config["evaluation"]["datasets"])

    def eval_groups(self, system: str) -> dict[str, list[str]]:
        """Groups a system reports, with their direct members (datasets or groups), inner groups first, so
        that a group's mean is taken over its members' means (BEIR: CQADupStack counts once, PAPER-SPEC F)."""
        groups = self.config["evaluation"]["groups"]
        out: dict[str, list[str]] = {}

        def visit(name: str) -> None:
            if name in groups and name not in out:
                for member in groups[name]:
                    visit(member)
                out[name] = list(groups[name])

        for name in self.eval_names(system):
            visit(name)
        return out

    def eval_split(self, dataset: str) -> str:
        """The split a dataset is evaluated on: its one non-training split with queries and qrels."""
        ds = self.datasets[dataset]
        splits = [s for s in ds.get("queries", {}) if s != "train" and s in ds.get("qrels", {})]
        if len(splits) != 1:
            raise ValueError(
                f"dataset {dataset!r}: expected one evaluation split with queries and qrels, have {splits}"
            )
        return splits[0]

    def systems(self) -> list[str]:
        """Every evaluated system, sorted by name (a merely reordered config must not change any param)."""
        return sorted(self.config["experiments"]) + (["bm25"] if self.config["evaluation"]["bm25"] else [])

    def encode_shards(self, dataset: str) -> int:
        return self.config["evaluation"]["encode_shards"].get(self.corpus_owner(dataset), 1)

    def embeddings_dir(self, experiment: str, dataset: str) -> str:
        return f"{self.results}/index/{experiment}/{dataset}"

    def corpus_embeddings(self, experiment: str, dataset: str) -> list[str]:
        """The .npy files of a dataset's corpus (shared by datasets with one corpus, as DL19/DL20/MS MARCO);
        each has an .ids file beside it."""
        owner = self.corpus_owner(dataset)
        d = self.embeddings_dir(experiment, owner)
        return [f"{d}/corpus-{k}.npy" for k in range(self.encode_shards(owner))]

    def measures(self, dataset: str) -> list[str]:
        return self.config["evaluation"]["measures"].get(dataset, ["nDCG@10"])

    def encoding(self, dataset: str) -> dict:
        """query_max_len, passage_max_len (None: the retriever's training length) and passage_text of a
        dataset's search; passage keys come from the dataset that owns the corpus (encoded once)."""
        enc = self.config["evaluation"]["encoding"]

        def settings(name: str) -> dict:
            return {**enc["beir" if self.is_beir(name) else "default"], **enc["datasets"].get(name, {})}

        passages = settings(self.corpus_owner(dataset))
        return {
            "query_max_len": settings(dataset)["query_max_len"],
            "passage_max_len": passages["passage_max_len"],
            "passage_text": passages["passage_text"],
        }

    def is_beir(self, dataset: str) -> bool:
        return "beir" in self.config["datasets"][dataset]

    def metrics_file(self, system: str) -> str:
        return f"{self.results}/metrics/{system}.parquet"

    def baselines(self) -> dict[str, dict[str, str | None]]:
        """Per experiment, the systems the paper tests it against: the human-label experiment of the same
        backbone, and REPLUG with the same backbone, human fraction and curriculum (PAPER-SPEC F)."""
        exps = self.config["experiments"]

        def first(e: dict, pred) -> str | None:
            # by name, not config order: the same grid reordered picks the same baseline
            return next(
                (n for n in sorted(exps) if exps[n]["backbone"] == e["backbone"] and pred(exps[n])), None
            )

        out = {}
        for name, e in exps.items():
            human = first(e, lambda o: o["labels"] == "human" and not o.get("curriculum"))
            replug = None
            if e["labels"] not in ("human", "replug"):
                cl, frac = bool(e.get("curriculum")), e["human_fraction"]
                replug = first(
                    e,
                    lambda o, cl=cl, frac=frac: (
                        o["labels"] == "replug"
                        and o["human_fraction"] == frac
                        and bool(o.get("curriculum")) == cl
                    ),
                )
            out[name] = {"human": human, "replug": replug}
        return out

    def evaluation_targets(self) -> list[str]:
        if not self.eval_datasets():
            return []
        return [f"{self.results}/metrics/results.tsv", f"{self.results}/metrics/significance.tsv"]

    # -- RAG --------------------------------------------------------------------------------------------
    def rag_systems(self) -> list[str]:
        """`<experiment>/<generator>` for every retriever experiment and generator of the RAG stage."""
        rag = self.config["rag"]
        if not rag["datasets"]:
            return []
        return [f"{e}/{g}" for e in sorted(rag["experiments"]) for g in sorted(rag["generators"])]

    def rag_dir(self, experiment: str, generator: str) -> str:
        return f"{self.results}/rag/{experiment}/{generator}"

    def rag_shards(self, experiment: str, generator: str, dataset: str) -> list[str]:
        n = self.config["rag"]["datasets"][dataset]["shards"]
        return [f"{self.rag_dir(experiment, generator)}/{dataset}/shard-{k}.jsonl" for k in range(n)]

    def rag_source(self, rag_set: str) -> str:
        """The dataset a RAG set reads (its `dataset`, else its own name)."""
        return self.config["rag"]["datasets"][rag_set]["dataset"] or rag_set

    def rag_run(self, experiment: str, rag_set: str) -> str:
        return f"{self.results}/runs/{experiment}/{self.rag_source(rag_set)}.trec"

    def rag_corpus(self, rag_set: str) -> str:
        return f"{self.data_dir(self.corpus_owner(self.rag_source(rag_set)))}/corpus.parquet"

    def rag_tables(self, rag_set: str) -> list[str]:
        """Queries, gold answers and qrels of a RAG set's dataset and split."""
        split = self.config["rag"]["datasets"][rag_set]["split"]
        folder = self.data_dir(self.rag_source(rag_set))
        return [
            f"{folder}/queries-{split}.parquet",
            f"{folder}/answers-{split}.parquet",
            f"{folder}/qrels-{split}.trec",
        ]

    def rag_metrics_file(self, system: str) -> str:
        return f"{self.results}/rag/metrics/{system}.parquet"

    def rag_baselines(self) -> dict[str, dict[str, str | None]]:
        """The retrieval baselines (human labels; REPLUG at the same fraction) with the same generator,
        where that experiment is part of the RAG stage."""
        rag = self.config["rag"]
        base = self.baselines()
        out = {}
        for e in rag["experiments"]:
            for g in rag["generators"]:
                roles = {r: b for r, b in base[e].items() if b in rag["experiments"]}
                out[f"{e}/{g}"] = {r: f"{b}/{g}" for r, b in roles.items()}
        return out

    def rag_targets(self) -> list[str]:
        if not self.rag_systems():
            return []
        return [f"{self.results}/rag/results.tsv", f"{self.results}/rag/significance.tsv"]
