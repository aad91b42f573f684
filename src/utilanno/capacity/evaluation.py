"""Per-rule sizing of the capacity planner, part 2: labels and training, encoding, search, BM25, metrics
and RAG (part 1: `utilanno.capacity.jobs`)."""

from __future__ import annotations

import math
from pathlib import Path

from utilanno.annotate.pools import windows as pool_windows
from utilanno.capacity.jobs import Row, RuleCosts
from utilanno.errors import ConfigError


class EvalCosts(RuleCosts):
    """Label sets and training, the evaluation rules and RAG, on top of `RuleCosts`."""

    # dense candidate mining -----------------------------------------------------------------------------
    def mine_dense(self) -> None:
        """One job per (mined dataset, dense retriever): the whole corpus and the mined split's queries
        encoded, exact search to `depth` (embeddings are scratch inside the job)."""
        ev, peak = self.config["evaluation"], self.rates["gpu"]["peak_tflops"] * 1e12
        tpw, t = self.text["encoder_tokens_per_word"], self.config["training"]
        for ds in self.plan.mined_datasets():
            mine, s = self.plan.datasets[ds]["mine"], self.sizes[ds]
            corpus = self.sizes[self.plan.corpus_owner(ds)]
            n = int(s.queries.get(mine["split"], 0))
            for name in mine["dense"]:
                key = (
                    f"backbones.{self.config['experiments'][name]['backbone']}.model"
                    if name in self.config["experiments"]
                    else f"backbones.{name}.model"
                )
                info = self.model(self.config["backbones"][key.split(".")[1]]["model"], key)
                passages = corpus.passages or 0
                tokens = passages * min(t["passage_max_len"], corpus.words * tpw + 3)
                tokens += n * min(t["query_max_len"], s.query_words * tpw + 3)
                flops = 2 * info["params"] * tokens + 2 * n * passages * (info.get("dim") or 768)
                r = self.row("mine_dense")
                r.jobs += 1
                r.gpus.add(ev["gpus"])
                if ev["gpus"] > 0:
                    wall = flops / (peak * self.rates["utilisation"]["encode"]) / ev["gpus"]
                    wall += self.rates["startup_s"]["encode"]
                    r.gpu_hours += wall * ev["gpus"] / 3600
                else:
                    core_s = flops / (self.rates["cpu"]["transformer_gflops_per_core"] * 1e9)
                    wall = core_s / ev["cpus"]
                    r.cpu_hours += core_s / 3600
                r.job_hours = max(r.job_hours, wall / 3600)
                r.kept += n * min(mine["depth"], passages) * (8 + corpus.docid_chars + 8 + 10 + len(name))
                # the job's scratch embeddings: corpus and queries in float16, removed when it ends
                scratch = (passages + n) * (info.get("dim") or 768) * 2
                r.temp += scratch
                self.add_temp(f"mining embeddings of {name} on {ds}", scratch)

    # REPLUG scoring (label utilities) -------------------------------------------------------------------
    def replug(self) -> None:
        for run in self.plan.replug_runs():
            self.run_name = run
            self.run_replug(run)
        self.run_name = None

    def run_replug(self, run: str) -> None:
        scorer = self.plan.replug_scorer(run)
        s, corpus, n, npool = self.pool_size(run)
        llm = self.plan.llm(scorer)
        prompt = self.prompt(self.config["replug"]["prompt"])
        answer = self.word_text(self.text["answer_words"])
        conv = prompt.render(
            self.word_text(s.query_words),
            [self.word_text(corpus.words)],
            passage_words=self.plan.runs()[run]["passage_words"],
        ) + [{"role": "assistant", "content": answer}]
        shards = self.plan.runs()[run]["shards"]
        r = self.row("replug")
        r.jobs += shards
        out = self.completion("replug", llm)
        self.llm_cost(r, scorer, n * npool * self.conv_tokens(conv), n * npool * out, shards)
        docid = "d" * round(corpus.docid_chars)
        record = {
            "qid": "q" * 7,
            "step": "replug",
            "status": "scored",
            "answer": answer,
            "docids": [docid] * npool,
            "prompt_hashes": ["h" * 16] * npool,
            "logprobs": [-12.345678901234567] * npool,
            "n_tokens": [14] * npool,
            "prompt_tokens": 10000,
            "completion_tokens": 400,
        }
        r.kept += n * self._record_bytes(record)
        m = self.row("merge_replug")
        m.jobs += 1
        m.kept += self.parquet(n * npool * (8 + corpus.docid_chars + 16 + 3 * 8)) + self.bytes["stats_json"]

    # training -------------------------------------------------------------------------------------------
    def train(self) -> None:
        label_sets = self.plan.label_sets()
        subset_of = {}
        for name, spec in label_sets.items():
            s, corpus, n, npool = self.pool_size(spec["run"])
            r = self.row("labels")
            r.jobs += 1
            rows = n * spec["subset"] * npool
            r.kept += self.parquet(rows * (8 + corpus.docid_chars + 3))
            subset_of[self.plan.labels_file(name)] = spec["subset"]
        t = self.config["training"]
        gpus = t["gpus"]
        procs = max(1, gpus)
        experiments = self.config["experiments"]
        for name, job in sorted(self.plan.trainings().items()):
            st = job["settings"]
            # a curriculum's shared stage 1 is named after the first experiment that uses it
            bname = experiments[name.removesuffix("-stage1")]["backbone"]
            info = self.model(self.config["backbones"][bname]["model"], f"backbones.{bname}.model")
            n = self.pool_size(job["run"])[2]
            queries = n * subset_of.get(job["labels"], 1.0)
            batch = st["per_device_batch"] * procs
            steps = math.ceil(queries * st["epochs"] / batch) if queries else 0
            tokens = steps * batch * (st["query_max_len"] + st["group_size"] * st["passage_max_len"])
            flops = 6 * info["params"] * tokens
            r = self.row("train")
            r.jobs += 1
            r.gpus.add(gpus)
            if gpus > 0:
                peak = self.rates["gpu"]["peak_tflops"] * 1e12 * self.rates["utilisation"]["train"]
                start = self.rates["startup_s"]["train"]
                r.gpu_hours += (flops / peak + start * gpus) / 3600
                wall = flops / peak / gpus + start
            else:
                core_s = flops / (self.rates["cpu"]["transformer_gflops_per_core"] * 1e9)
                r.cpu_hours += core_s / 3600
                wall = core_s / t["cpus"]
            r.job_hours = max(r.job_hours, wall / 3600)
            self.check_runtime("train", wall, t["runtime"], "training.runtime")
            r.kept += info["params"] * self.bytes["retriever_bytes_per_param"] + self.bytes["tokenizer_bytes"]
            r.kept += steps * self.bytes["train_log_line"]
            if steps > st["checkpoint_every"]:
                ckpt = info["params"] * self.bytes["checkpoint_bytes_per_param"]
                r.temp += ckpt
                self.add_temp(f"checkpoint of training job {name}", ckpt)

    # evaluation -----------------------------------------------------------------------------------------
    def searches(self) -> dict[str, list[str]]:
        """Per experiment, the datasets it searches: its evaluation datasets and the RAG sets' datasets."""
        plan = self.plan
        out = {
            e: list(plan.eval_datasets(e)) if plan.evaluation_targets() else []
            for e in self.config["experiments"]
        }
        if plan.rag_systems():
            for e in self.config["rag"]["experiments"]:
                for rag_set in self.config["rag"]["datasets"]:
                    d = plan.rag_source(rag_set)
                    if d not in out[e]:
                        out[e].append(d)
        return out

    def _queries(self, d: str) -> int:
        plan = self.plan
        if d in plan.hybrid_sets():
            return plan.config["hybrid"]["queries"]
        return self.sizes[d].queries.get(plan.eval_split(d), 0)

    def _hybrid_run(self, system: str, d: str) -> None:
        r = self.row("hybrid_run")
        r.jobs += 1
        c = self.sizes[self.plan.corpus_owner(d)]
        depth = min(self.plan.config["evaluation"]["depth"], c.passages or 0)
        r.kept += self._queries(d) * depth * self.run_line(8, c.docid_chars, depth, system, 12)

    def run_line(self, qid_chars: float, docid_chars: float, depth: float, tag: str, score: float) -> float:
        rank = sum(len(str(i)) for i in range(1, int(depth) + 1)) / max(int(depth), 1)
        return qid_chars + 4 + docid_chars + rank + score + len(tag) + 4

    def evaluate(self) -> None:
        plan, ev, b = self.plan, self.config["evaluation"], self.bytes
        hybrid = plan.hybrid_sets()
        peak = self.rates["gpu"]["peak_tflops"] * 1e12
        u, cpu, start = self.rates["utilisation"], self.rates["cpu"], self.rates["startup_s"]
        pmax = self.config["training"]["passage_max_len"]
        qmax = self.config["training"]["query_max_len"]
        gpus, threads = ev["gpus"], ev["cpus"]
        tpw = self.text["encoder_tokens_per_word"]

        def compute(row: Row, flops: float, cpu_core_s: float, startup: float) -> float:
            """Wall seconds of one job; GPU-hours (held for the whole job) or CPU core-hours into `row`."""
            row.gpus.add(gpus)
            if gpus > 0:
                wall = flops / (peak * u["encode"]) / gpus + cpu_core_s / threads + startup
                row.gpu_hours += wall * gpus / 3600
                row.cpu_hours += cpu_core_s / 3600
            else:
                core_s = flops / (cpu["transformer_gflops_per_core"] * 1e9) + cpu_core_s
                wall = core_s / threads
                row.cpu_hours += core_s / 3600
            row.job_hours = max(row.job_hours, wall / 3600)
            self.check_runtime(row.rule, wall, ev["runtime"], "evaluation.runtime")
            return wall

        for exp, datasets in self.searches().items():
            backbone = self.config["backbones"][self.config["experiments"][exp]["backbone"]]
            info = self.model(
                backbone["model"], f"backbones.{self.config['experiments'][exp]['backbone']}.model"
            )
            dim = info.get("dim")
            if not dim:
                key = f"backbones.{self.config['experiments'][exp]['backbone']}.model"
                raise ConfigError(
                    f"config key '{key}': no embedding width for {backbone['model']!r}: add `dim:` to its"
                    " entry under 'models:' in the rates file"
                )
            owners = []
            for d in datasets:
                o = plan.corpus_owner(d)
                if o not in owners:
                    owners.append(o)
            for owner in owners:
                s = self.sizes[owner]
                shards = plan.encode_shards(owner)
                tokens = min(pmax, s.words * tpw + 3)
                group = f"embeddings of {exp} on {owner}"
                for k in range(shards):
                    rows = (s.passages or 0) // shards + (1 if k < (s.passages or 0) % shards else 0)
                    nbytes = rows * dim * 2 + b["npy_header"] + rows * (s.docid_chars + 1)
                    r = self.row("encode_corpus")
                    r.jobs += 1
                    compute(r, 2 * info["params"] * tokens * rows, 0.0, start["encode"])
                    if self.keep:
                        r.kept += nbytes
                    else:
                        r.temp += nbytes
                        self.add_temp(group, nbytes)
            for d in datasets:
                if d in hybrid:  # a hybrid set's run is the dev run restricted: hybrid_run, no search
                    self._hybrid_run(exp, d)
                    continue
                owner = plan.corpus_owner(d)
                s, c = self.sizes[d], self.sizes[owner]
                q = s.queries.get(plan.eval_split(d), 0)
                r = self.row("search")
                r.jobs += 1
                qtok = min(qmax, s.query_words * tpw + 2)
                faiss_core_s = q * (c.passages or 0) * dim * 2 / (cpu["search_gflops_per_core"] * 1e9)
                compute(r, 2 * info["params"] * qtok * q, faiss_core_s, start["search"])
                depth = min(ev["depth"], c.passages or 0)
                r.kept += q * depth * self.run_line(8, c.docid_chars, depth, exp, b["run_score_chars"])
                qbytes = q * dim * 2 + b["npy_header"] + q * 9
                if self.keep:
                    r.kept += qbytes
                else:
                    r.temp += qbytes
                    self.add_temp(f"embeddings of {exp} on {owner}", qbytes)
        if ev["bm25"] and plan.evaluation_targets():
            datasets = plan.eval_datasets("bm25")
            for owner in sorted({plan.corpus_owner(d) for d in datasets}):
                self.bm25_index(owner)
            for d in datasets:
                if d in hybrid:
                    self._hybrid_run("bm25", d)
                    continue
                c = self.sizes[plan.corpus_owner(d)]
                q = self.sizes[d].queries.get(plan.eval_split(d), 0)
                r = self.row("bm25_search")
                r.jobs += 1
                depth = min(ev["depth"], c.passages or 0)
                r.kept += q * depth * self.run_line(8, c.docid_chars, depth, "bm25", b["bm25_score_chars"])
                core_s = q / cpu["bm25_search_queries_per_s_per_core"]
                r.cpu_hours += core_s / 3600
                r.job_hours = max(r.job_hours, core_s / threads / 3600)
        for pool in sorted(set(hybrid.values())):
            self.hybrid(pool)
        if plan.evaluation_targets():
            for system in plan.systems():
                rows = sum(self._queries(d) * len(plan.measures(d)) for d in plan.eval_datasets(system))
                r = self.row("metrics")
                r.jobs += 1
                r.kept += self.parquet(rows * 50)
            r = self.row("results_table")
            r.jobs = 1
            # results.tsv and significance.tsv: one line per system, dataset and measure (~80 bytes)
            r.kept = (
                2 * 80 * sum(len(plan.measures(d)) for s in plan.systems() for d in plan.eval_datasets(s))
            )

    # Hybrid Test ----------------------------------------------------------------------------------------
    def hybrid(self, pool: str) -> None:
        """One backbone's hybrid pool, judge shards and gold qrels. The pool is sized at its upper bound:
        the pooled retrievers agree on nothing, so each query pools (retrievers x depth) passages."""
        h, plan = self.config["hybrid"], self.plan
        s, corpus = self.sizes[h["dataset"]], self.sizes[plan.corpus_owner(h["dataset"])]
        split = plan.eval_split(h["dataset"])
        n = min(h["queries"], s.answers.get(split, s.queries.get(split, 0)))
        npool = min(len(h["pools"][pool]) * h["depth"], corpus.passages or 0)
        wins = pool_windows(npool, h["window"], h["overlap"])
        passage = self.word_text(corpus.words)
        query, answer = self.word_text(s.query_words), self.word_text(self.text["answer_words"])
        docid = "d" * round(corpus.docid_chars)

        r = self.row("hybrid_pool")
        r.jobs += 1
        r.kept += self.parquet(n * npool * (corpus.docid_chars + self.chars(corpus.words) + 8))

        prompt = self.prompt(h["prompt"])
        llm = self.plan.llm(h["judge"])
        out_tokens = self.completion("utilsel", llm)
        convs = [
            prompt.render(query, [passage] * len(w), passage_words=h["passage_words"], answer=answer)
            for w in wins
        ]
        r = self.row("hybrid_judge")
        r.jobs += h["shards"]
        prefill = n * sum(self.conv_tokens(c) for c in convs)
        self.llm_cost(r, h["judge"], prefill, n * len(convs) * out_tokens, h["shards"])
        raw = "r" * round(out_tokens * self.text["llm_chars_per_token"])
        window = {"docids": [docid] * h["window"], "prompt_hash": "h" * 16, "raw": raw, "status": "parsed"}
        record = {"qid": "q" * 7, "step": "hybrid", "windows": [window] * len(wins), "selected": [docid] * 3}
        r.kept += n * self._record_bytes({**record, "prompt_tokens": 10000, "completion_tokens": 100})

        r = self.row("hybrid_gold")
        r.jobs += 1
        judged = self.rates["relsel_positives"].get(llm["model"], self.rates["relsel_positives"]["default"])
        lines = n * (1 + min(npool, judged))  # a human positive and the judged ones per query
        r.kept += lines * (8 + corpus.docid_chars + 5) + self.bytes["stats_json"]

    # RAG ------------------------------------------------------------------------------------------------
    def rag(self) -> None:
        plan, rag = self.plan, self.config["rag"]
        if not plan.rag_systems():
            return
        for _exp in sorted(rag["experiments"]):
            for gen in sorted(rag["generators"]):
                llm = plan.llm(gen)
                answers_bytes = queries = 0.0
                for rag_set, spec in sorted(rag["datasets"].items()):
                    d = plan.rag_source(rag_set)
                    s, c = self.sizes[d], self.sizes[plan.corpus_owner(d)]
                    n = s.answers.get(spec["split"], s.queries.get(spec["split"], 0))
                    prompt = self.prompt(spec["prompt"])
                    conv = prompt.render(
                        self.word_text(s.query_words), [self.word_text(c.words)] * spec["top_k"]
                    )
                    out = self.completion(Path(spec["prompt"]).stem, llm)
                    r = self.row("rag_generate")
                    r.jobs += spec["shards"]
                    self.llm_cost(r, gen, n * self.conv_tokens(conv), n * out, spec["shards"])
                    raw = "r" * round(out * self.text["llm_chars_per_token"])
                    record = {
                        "qid": "q" * 7,
                        "step": "rag",
                        "query": self.word_text(s.query_words),
                        "docids": ["d" * round(c.docid_chars)] * spec["top_k"],
                        "prompt_hash": "h" * 16,
                        "raw": raw,
                        "status": "parsed",
                        "answer": raw,
                        "prompt_tokens": 1000,
                        "completion_tokens": 100,
                    }
                    r.kept += n * self._record_bytes(record)
                    answers_bytes += n * (self._record_bytes(record) + self.chars(self.text["answer_words"]))
                    queries += n
                m = self.row("rag_metrics")
                m.jobs += 1
                # answers.parquet (records + gold answers) and the per-query metrics (~6 measures x 50 bytes)
                m.kept += self.parquet(answers_bytes) + self.parquet(queries * 6 * 50)
        t = self.row("rag_table")
        t.jobs = 1
        t.kept = 2 * 80 * len(plan.rag_systems()) * len(rag["datasets"]) * 6

    # Report ---------------------------------------------------------------------------------------------
    def report(self) -> None:
        """One CPU job; its size barely depends on the config (every paper cell is printed either way)."""
        r = self.row("report")
        r.jobs = 1
        r.kept = self.bytes["report"]
