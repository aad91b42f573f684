"""Per-rule sizing of the capacity planner, part 1: the helpers shared by every rule, and the data, pool,
annotation and REPLUG rules (part 2, from the labels on: `utilanno.capacity.evaluation`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from utilanno.annotate import STEPS
from utilanno.annotate import prompts as prompt_files
from utilanno.annotate.pools import windows as pool_windows
from utilanno.capacity.inputs import REPO, DatasetSize, model_info
from utilanno.plan import Plan

STAGES = {
    "tiny_world": "data",
    "build_model": "data",
    "download": "data",
    "corpus": "data",
    "queries": "data",
    "qrels": "data",
    "answers": "data",
    "train_pool": "data",
    "mine_bm25": "pool",
    "mine_dense": "pool",
    "mine": "pool",
    "pool": "pool",
    "annotate": "annotate",
    "merge_annotations": "annotate",
    "replug": "train",
    "merge_replug": "train",
    "labels": "train",
    "train": "train",
    "encode_corpus": "evaluate",
    "search": "evaluate",
    "bm25_index": "evaluate",
    "bm25_search": "evaluate",
    "hybrid_pool": "hybrid",
    "hybrid_judge": "hybrid",
    "hybrid_gold": "hybrid",
    "hybrid_run": "hybrid",
    "metrics": "evaluate",
    "results_table": "evaluate",
    "rag_generate": "rag",
    "rag_metrics": "rag",
    "rag_table": "rag",
    "report": "report",
}


@dataclass
class Row:
    """One rule (the annotation rule: one step) summed over its jobs."""

    rule: str
    jobs: int = 0
    kept: float = 0.0  # bytes of outputs that stay
    temp: float = 0.0  # bytes of outputs Snakemake (or the job) deletes again
    gpu_hours: float = 0.0  # GPU-hours the jobs hold (compute + start-up), summed over jobs
    cpu_hours: float = 0.0  # core-hours of CPU work (jobs without GPUs; faiss and BM25)
    job_hours: float = 0.0  # wall hours of the longest job
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    gpus: set = field(default_factory=set)  # GPUs per job (several values: jobs of several LLMs)

    @property
    def stage(self) -> str:
        return STAGES[self.rule.split(":")[0]]


class RuleCosts:
    """Sizes the jobs of each rule into one `Row` per rule (see `utilanno.capacity`)."""

    def __init__(self, config: dict, rates: dict, sizes: dict[str, DatasetSize]):
        self.config, self.rates, self.sizes = config, rates, sizes
        self.plan = Plan(config)
        self.rows: dict[str, Row] = {}
        self.temp_sets: dict[str, float] = {}
        self.models: dict[str, dict] = {}
        self.text = rates["text"]
        self.bytes = rates["bytes"]
        self.keep = config["evaluation"]["keep_embeddings"]
        self.run_name: str | None = None  # the annotation run being costed (annotate, replug)
        self.notes: list[str] = []
        # (rule, llm, run or None) -> GPU-hours without start-up
        self.llm_hours: dict[tuple[str, str, str | None], float] = {}
        self.bm25_indexed: set[str] = set()  # corpus owners whose BM25 index is already counted

    # helpers --------------------------------------------------------------------------------------------
    def row(self, rule: str) -> Row:
        return self.rows.setdefault(rule, Row(rule))

    def model(self, model: str, key: str) -> dict:
        if model not in self.models:
            self.models[model] = model_info(self.plan, self.rates, model, key)
        return self.models[model]

    def pool_negatives(self, dataset: str) -> int:
        """Hard negatives per query of a dataset's pool file: what its runs take (else the paper's 30)."""
        runs = [r for r in self.plan.runs().values() if r["dataset"] == dataset]
        return max((r["negatives"] for r in runs), default=30)

    def chars(self, words: float) -> float:
        return words * self.text["chars_per_word"]

    def word_text(self, words: float) -> str:
        word = "w" * max(1, round(self.text["chars_per_word"] - 1))
        return " ".join([word] * max(1, round(words)))

    def conv_tokens(self, messages: list[dict]) -> float:
        chars = sum(len(m["content"]) for m in messages)
        return (
            chars / self.text["llm_chars_per_token"]
            + len(messages) * self.text["chat_message_tokens"]
            + self.text["chat_template_tokens"]
        )

    def completion(self, prompt_name: str, llm: dict) -> float:
        ct = self.rates["completion_tokens"]
        tokens = float(ct.get(prompt_name, ct["default"]))
        if (llm.get("chat_template_kwargs") or {}).get("enable_thinking"):  # reasoning before the answer
            tokens += float(ct.get("thinking", 0))
        return min(tokens, float(llm["sampling"]["max_tokens"]))

    def prompt(self, path: str):
        p = Path(path)
        if not (p.is_absolute() or p.exists()):
            p = REPO / p
        return prompt_files.load(p)

    def parquet(self, raw_bytes: float, lz4: bool = False) -> float:
        return raw_bytes * self.bytes["parquet_lz4_ratio" if lz4 else "parquet_zstd_ratio"]

    def check_runtime(self, rule: str, wall_s: float, limit_min: float, key: str) -> None:
        """A note when a job is estimated to run past its time limit (first attempt)."""
        if wall_s / 60 > limit_min:
            self.notes.append(
                f"{rule}: a job is estimated at {wall_s / 3600:.1f} h, over its time limit {key} ="
                f" {limit_min} min: raise it or use more shards"
            )

    def add_temp(self, what: str, nbytes: float) -> None:
        self.temp_sets[what] = self.temp_sets.get(what, 0.0) + nbytes

    def llm_cost(self, row: Row, name: str, prefill: float, decode: float, jobs: int) -> None:
        """GPU-hours (or CPU core-hours) of `jobs` LLM jobs over these tokens, into `row`."""
        llm = self.plan.llm(name)
        row.tokens_in += prefill
        row.tokens_out += decode
        row.gpus.add(llm["gpus"])
        if llm["engine"] == "openai":
            self.notes.append(f"{row.rule}: llms.{name} is a remote endpoint: its tokens, no GPU-hours here")
            return
        params = self.model(llm["model"], f"llms.{name}.model")["params"]
        flops_in, flops_out = 2 * params * prefill, 2 * params * decode
        if llm["gpus"] > 0:
            peak, u = self.rates["gpu"]["peak_tflops"] * 1e12, self.rates["utilisation"]
            compute = flops_in / (peak * u["llm_prefill"]) + flops_out / (peak * u["llm_decode"])
            start = self.rates["startup_s"]["llm"]
            row.gpu_hours += (compute + jobs * start * llm["gpus"]) / 3600
            key = (row.rule, name, self.run_name)
            self.llm_hours[key] = self.llm_hours.get(key, 0.0) + compute / 3600
            wall = compute / max(jobs, 1) / llm["gpus"] + start
        else:
            core_s = (flops_in + flops_out) / (self.rates["cpu"]["transformer_gflops_per_core"] * 1e9)
            row.cpu_hours += core_s / 3600
            wall = core_s / max(jobs, 1) / llm["cpus"]
        row.job_hours = max(row.job_hours, wall / 3600)
        self.check_runtime(row.rule, wall, llm["runtime"], f"llms.{name}.runtime")

    # data -----------------------------------------------------------------------------------------------
    def table_raw_bytes(self, dataset: str, kind: str, split: str | None, table: dict) -> float:
        """Bytes of one raw table as downloaded (uncompressed)."""
        s = self.sizes[dataset]
        fmt = table.get("format", "")
        if kind == "corpus":
            per = s.docid_chars + self.chars(s.words) + (40 if fmt.startswith("beir") else 2)
            return (s.passages or 0) * per
        if kind == "queries":
            return s.queries.get(split, 0) * (
                8 + self.chars(s.query_words) + (30 if fmt.startswith("beir") else 2)
            )
        if kind == "qrels":
            return s.qrels.get(split, 0) * (8 + s.docid_chars + 6)
        if kind == "answers":
            n = s.answers.get(split, s.queries.get(split, 0))
            if fmt == "msmarco-qna":  # QnA v2.1 holds ~10 candidate passages per query beside its answers
                return n * (10 * (self.chars(s.words) + 60) + self.chars(self.text["answer_words"]) + 200)
            return n * (self.chars(s.query_words + self.text["answer_words"]) + 60)
        if kind == "train_pool":
            passage = s.docid_chars + self.chars(s.words) + 40
            return (s.pool_queries or 0) * (
                (1 + self.pool_negatives(dataset)) * passage + self.chars(s.query_words) + 80
            )
        return 0.0

    def data(self) -> None:
        from utilanno.dataset_specs import iter_tables

        plan, b = self.plan, self.bytes
        per_source: dict[str, float] = {}
        seen: set = set()
        for name, ds in plan.datasets.items():
            for key, table in iter_tables(name, ds):
                if "source" not in table:
                    continue
                parts = key.split(".")
                kind, split = parts[2], (parts[3] if len(parts) > 3 else None)
                ident = (table["source"], table.get("member"), kind, split)
                if ident in seen:
                    continue
                seen.add(ident)
                per_source[table["source"]] = per_source.get(table["source"], 0.0) + self.table_raw_bytes(
                    name, kind, split, table
                )
        tiny_prefix = plan.tiny_world_dir + "/"
        for source, raw in sorted(per_source.items()):
            filename = plan.source_filename(source)
            packed = filename.endswith((".gz", ".zip", ".tgz", ".bz2", ".xz"))
            nbytes = raw * (0.35 if packed else 1.0)
            r = self.row("download")
            r.jobs += 1
            r.kept += nbytes
            if plan.source(source).get("path", "").startswith(tiny_prefix):
                self.row("tiny_world").kept += nbytes
        if plan.tiny_world_files():
            self.row("tiny_world").jobs = 1
        for name, ds in plan.datasets.items():
            s = self.sizes[name]
            measured = {Path(f).name: n for f, n in s.files.items()}
            if "source" in ds.get("corpus", {}):
                r = self.row("corpus")
                r.jobs += 1
                raw = (s.passages or 0) * (s.docid_chars + self.chars(s.words) + 8)
                r.kept += measured.get("corpus.parquet", self.parquet(raw, lz4=True))
                core_s = (s.passages or 0) / self.rates["cpu"]["convert_passages_per_s"]
                r.cpu_hours += core_s / 3600
                r.job_hours = max(r.job_hours, core_s / 3600)
            for split, n in ((sp, s.queries.get(sp, 0)) for sp in ds.get("queries", {})):
                r = self.row("queries")
                r.jobs += 1
                r.kept += measured.get(
                    f"queries-{split}.parquet", self.parquet(n * (8 + self.chars(s.query_words) + 8))
                )
            for split in ds.get("qrels", {}):
                r = self.row("qrels")
                r.jobs += 1
                r.kept += measured.get(f"qrels-{split}.trec", s.qrels.get(split, 0) * (8 + s.docid_chars + 6))
            for split in ds.get("answers", {}):
                r = self.row("answers")
                r.jobs += 1
                n = s.answers.get(split, s.queries.get(split, 0))
                r.kept += measured.get(
                    f"answers-{split}.parquet",
                    self.parquet(n * (16 + self.chars(self.text["answer_words"]))),
                )
            if "train_pool" in ds:
                r = self.row("train_pool")
                r.jobs += 1
                raw = (s.pool_queries or 0) * (
                    8 + self.chars(s.query_words) + (1 + self.pool_negatives(name)) * (s.docid_chars + 4)
                )
                r.kept += measured.get("train-pool.parquet", self.parquet(raw))
        built: dict[str, str] = {}  # model folder the workflow builds -> the config key naming it
        for key, model in self.used_models():
            for folder in plan.model_inputs(model):
                built.setdefault(folder, key)
        for folder, key in sorted(built.items()):
            r = self.row("build_model")
            r.jobs += 1
            r.kept += self.model(folder, key)["params"] * 4 + b["tokenizer_bytes"]

    def used_models(self) -> list[tuple[str, str]]:
        """(config key, model) of the models jobs load: annotators, the REPLUG scorer, generators, backbones
        and the BERTScore model."""
        plan, cfg = self.plan, self.config
        llms = set(plan.annotators()) | set(cfg["rag"]["generators"] if plan.rag_systems() else [])
        llms |= {plan.replug_scorer(run) for run in plan.replug_runs()}
        models = [(f"llms.{n}.model", cfg["llms"][n]["model"]) for n in sorted(llms)]
        backbones = sorted({e["backbone"] for e in cfg["experiments"].values()})
        models += [(f"backbones.{b}.model", cfg["backbones"][b]["model"]) for b in backbones]
        if plan.rag_systems() and cfg["rag"]["bertscore_model"]:
            models.append(("rag.bertscore_model", cfg["rag"]["bertscore_model"]))
        return models

    # annotation -----------------------------------------------------------------------------------------
    def pool_size(self, run: str) -> tuple[DatasetSize, DatasetSize, int, int]:
        """(dataset sizes, corpus sizes, queries, passages per pool) of an annotation run."""
        ann = self.plan.runs()[run]
        ds = ann["dataset"]
        s = self.sizes[ds]
        corpus = self.sizes[self.plan.corpus_owner(ds)]
        if self.plan.mined(run):
            mine = self.plan.datasets[ds]["mine"]
            return s, corpus, int(s.queries.get(mine["split"], 0)), mine["candidates"]
        return s, corpus, int(s.pool_queries or 0), 1 + ann["negatives"]

    def bm25_index(self, owner: str) -> None:
        """One BM25 index per corpus, however many stages search it."""
        if owner in self.bm25_indexed:
            return
        self.bm25_indexed.add(owner)
        s, b, cpu = self.sizes[owner], self.bytes, self.rates["cpu"]
        r = self.row("bm25_index")
        r.jobs += 1
        r.kept += (s.passages or 0) * (s.words * b["bm25_index_bytes_per_word"] + s.docid_chars + 8)
        core_s = (s.passages or 0) / cpu["bm25_index_docs_per_s_per_core"]
        r.cpu_hours += core_s / 3600
        r.job_hours = max(r.job_hours, core_s / self.config["evaluation"]["cpus"] / 3600)

    def mine(self) -> None:
        """Candidate mining of each dataset a run mines (once per dataset): BM25 search, fusion."""
        for ds, run in self.plan.mined_datasets().items():
            s, corpus, n, npool = self.pool_size(run)
            mine, owner = self.plan.datasets[ds]["mine"], self.plan.corpus_owner(ds)
            self.bm25_index(owner)
            r = self.row("mine_bm25")
            r.jobs += 1
            depth = min(mine["depth"], corpus.passages or 0)
            r.kept += n * depth * (8 + corpus.docid_chars + 8 + self.bytes["bm25_score_chars"] + 10)
            core_s = n / self.rates["cpu"]["bm25_search_queries_per_s_per_core"]
            r.cpu_hours += core_s / 3600
            r.job_hours = max(r.job_hours, core_s / self.config["evaluation"]["cpus"] / 3600)
            r = self.row("mine")
            r.jobs += 1
            r.kept += (
                self.parquet(n * (8 + self.chars(s.query_words) + npool * (corpus.docid_chars + 4))) + 500
            )

    def pool(self) -> None:
        for run in sorted(self.plan.runs()):
            self.run_pool(run)

    def run_pool(self, run: str) -> None:
        s, corpus, n, npool = self.pool_size(run)
        r = self.row("pool")
        r.jobs += 1
        per = 8 + self.chars(s.query_words) + 2 * corpus.docid_chars
        per += npool * (corpus.docid_chars + self.chars(corpus.words) + 8) + 4 * (npool + 2)
        r.kept += self.parquet(n * per)

    def _record_bytes(self, record: dict) -> int:
        return len(json.dumps(record)) + 1

    def annotate(self) -> None:
        for run in sorted(self.plan.runs()):
            self.run_name = run
            self.run_annotate(run)
        self.run_name = None

    def run_annotate(self, run: str) -> None:
        ann = self.plan.runs()[run]
        s, corpus, n, npool = self.pool_size(run)
        shards = ann["shards"]
        words = ann["passage_words"]
        passage = self.word_text(corpus.words)
        query = self.word_text(s.query_words)
        docid = "d" * round(corpus.docid_chars)
        hash16 = "h" * 16
        size, overlap = ann["window"], ann["overlap"]
        wins = pool_windows(npool, size, overlap)
        for annotator in self.plan.annotators(run):
            llm = self.plan.llm(annotator)
            k = self.rates["relsel_positives"].get(llm["model"], self.rates["relsel_positives"]["default"])
            k = max(1, min(npool, round(k)))
            answer_tokens = self.completion("pseudo_answer", llm)
            answer = self.word_text(
                answer_tokens * self.text["llm_chars_per_token"] / self.text["chars_per_word"]
            )
            for step in (s for s in STEPS if s in ann["steps"]):
                prompt = self.prompt(ann["prompts"][step])
                out_tokens = self.completion(step, llm)
                raw = "r" * round(out_tokens * self.text["llm_chars_per_token"])
                if step == "relsel":
                    convs = [prompt.render(query, [passage] * len(w), passage_words=words) for w in wins]
                    record = {
                        "qid": "q" * 7,
                        "step": step,
                        "windows": [
                            {
                                "docids": [docid] * len(w),
                                "prompt_hash": hash16,
                                "raw": raw,
                                "status": "parsed",
                                "ids": list(range(min(len(w), 3))),
                            }
                            for w in wins
                        ],
                        "selected": [docid] * k,
                        "prompt_tokens": 10000,
                        "completion_tokens": 100,
                    }
                else:
                    extra = {"answer": answer} if step != "pseudo_answer" else {}
                    convs = [prompt.render(query, [passage] * k, passage_words=words, **extra)]
                    record = {
                        "qid": "q" * 7,
                        "step": step,
                        "docids": [docid] * k,
                        "prompt_hash": hash16,
                        "raw": raw,
                        "status": "parsed",
                        "prompt_tokens": 1000,
                        "completion_tokens": 100,
                    }
                    if step == "pseudo_answer":
                        record["answer"] = raw
                    else:
                        record["ids"] = list(range(min(k, 3)))
                        record["ranking" if step == "utilrank" else "selected"] = [docid] * min(k, 3)
                r = self.row(f"annotate:{step}")
                r.jobs += shards
                prefill = n * sum(self.conv_tokens(c) for c in convs)
                self.llm_cost(r, annotator, prefill, n * len(convs) * out_tokens, shards)
                r.kept += n * self._record_bytes(record)
                m = self.row("merge_annotations")
                m.jobs += 1
                m.kept += self.parquet(n * self._record_bytes(record)) + self.bytes["stats_json"]
