"""The evaluation and RAG half of the plan (`utilanno.plan.Plan` inherits it): the datasets and groups each
system reports, how search encodes them, baselines, and the RAG stage's paths and targets."""

from __future__ import annotations


class EvaluationPlan:
    """A mixin: uses `config`, `results`, `datasets`, `corpus_owner` and `data_dir` of `Plan`."""

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
            names = list(exps[system].get("evaluate", ev["datasets"]))
            hy = self.config.get("hybrid") or {}
            if self.hybrid_sets() and hy["dataset"] in self._members(names):
                names += [d for d, pool in self.hybrid_sets().items() if pool == exps[system]["backbone"]]
            return names
        names = list(ev["datasets"])
        for exp in exps:
            names += [n for n in self.eval_names(exp) if n not in names]
        return names

    # -- the Hybrid Test ---------------------------------------------------------------------------------
    def hybrid_sets(self) -> dict[str, str]:
        """{hybrid dataset: its pool (a backbone)}, e.g. msmarco-hybrid-retromae; none without a judge."""
        hy = self.config.get("hybrid") or {}
        if not hy.get("judge"):
            return {}
        return {f"{hy['dataset']}-hybrid-{pool}": pool for pool in sorted(hy["pools"])}

    def hybrid_dir(self, pool: str) -> str:
        return f"{self.results}/hybrid/{pool}"

    def hybrid_shards(self, pool: str, kind: str) -> list[str]:
        """The pool (`pool`, .parquet) or judge (`judge`, .jsonl) shards of a hybrid pool."""
        ext = "parquet" if kind == "pool" else "jsonl"
        return [
            f"{self.hybrid_dir(pool)}/{kind}/shard-{k}.{ext}" for k in range(self.config["hybrid"]["shards"])
        ]

    def hybrid_runs(self, pool: str) -> list[str]:
        """The dev runs whose top passages make the pool."""
        hy = self.config["hybrid"]
        return [f"{self.results}/runs/{exp}/{hy['dataset']}.trec" for exp in hy["pools"][pool]]

    def hybrid_sources(self) -> dict[str, str]:
        """queries, answers and qrels of the sampled split, and the corpus."""
        ds = self.config["hybrid"]["dataset"]
        d, split = self.data_dir(ds), self.eval_split(ds)
        return {
            "queries": f"{d}/queries-{split}.parquet",
            "answers": f"{d}/answers-{split}.parquet",
            "qrels": f"{d}/qrels-{split}.trec",
            "corpus": f"{self.data_dir(self.corpus_owner(ds))}/corpus.parquet",
        }

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
        """The split a dataset is evaluated on: its one non-training split with queries and qrels or gold
        answers (DPR's NQ test has answers only: top-k accuracy)."""
        if dataset in self.hybrid_sets():
            return "test"
        ds = self.datasets[dataset]
        judged = {**ds.get("qrels", {}), **ds.get("answers", {})}
        splits = [s for s in ds.get("queries", {}) if s != "train" and s in judged]
        if len(splits) != 1:
            raise ValueError(
                f"dataset {dataset!r}: expected one evaluation split with queries and qrels or answers,"
                f" have {splits}"
            )
        return splits[0]

    def eval_qrels(self, dataset: str) -> str | None:
        """The qrels of a dataset's evaluation split; None when it has only gold answers."""
        split = self.eval_split(dataset)
        if dataset not in self.hybrid_sets() and split not in self.datasets[dataset].get("qrels", {}):
            return None
        return f"{self.data_dir(dataset)}/qrels-{split}.trec"

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

    def answer_measures(self, dataset: str) -> list[str]:
        """The top-k answer accuracy measures (`Top20`, ...) of a dataset: scored against its gold answers."""
        return [m for m in self.measures(dataset) if m.startswith("Top") and m[3:].isdigit()]

    def answer_tables(self, dataset: str) -> tuple[str, str]:
        """Gold answers of a dataset's evaluation split and the corpus its runs rank."""
        answers = f"{self.data_dir(dataset)}/answers-{self.eval_split(dataset)}.parquet"
        return answers, f"{self.data_dir(self.corpus_owner(dataset))}/corpus.parquet"

    def measures(self, dataset: str) -> list[str]:
        default = self.config["hybrid"]["measures"] if dataset in self.hybrid_sets() else ["nDCG@10"]
        return self.config["evaluation"]["measures"].get(dataset, default)

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
        return "beir" in self.config["datasets"].get(dataset, {})

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
