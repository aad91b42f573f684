# Retrieval evaluation (PAPER-SPEC F): corpus encoding in shards (one GPU job each), query encoding, exact
# faiss search merged over shards, BM25 with Anserini, per-query metrics, and the long results table with
# the paired t-tests. A corpus shared by several datasets (MS MARCO, DL19, DL20) is encoded once.
EVAL = config["evaluation"]
EVAL_DATASETS = PLAN.eval_datasets()
CORPUS_OWNERS = sorted({PLAN.corpus_owner(d) for d in EVAL_DATASETS})
EXPERIMENTS = list(config["experiments"])
# the hybrid sets' runs are restrictions of the dev runs (rules/hybrid.smk), never searched
SEARCHED = [d for d in EVAL_DATASETS if d not in PLAN.hybrid_sets()]


wildcard_constraints:
    experiment=alternatives(EXPERIMENTS),
    system=alternatives(PLAN.systems()),
    eval_dataset=alternatives(EVAL_DATASETS),
    owner=alternatives(CORPUS_OWNERS),


rule encode_corpus:
    input:
        model=f"{RESULTS}/retrievers/{{experiment}}",
        corpus=f"{RESULTS}/data/{{owner}}/corpus.parquet",
        script=script("evaluate.py"),
    output:
        emb=embeddings(f"{RESULTS}/index/{{experiment}}/{{owner}}/corpus-{{k}}.npy"),
        ids=embeddings(f"{RESULTS}/index/{{experiment}}/{{owner}}/corpus-{{k}}.ids"),
    log:
        f"{LOGS}/encode_corpus/{{experiment}}/{{owner}}-{{k}}.log",
    benchmark:
        f"{BENCH}/encode_corpus/{{experiment}}/{{owner}}-{{k}}.tsv"
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    threads: EVAL["cpus"]
    resources:
        gpu=eval_resources("gpu"),
        mem_mb=lambda wc, attempt: eval_resources("mem_mb", attempt),
        runtime=lambda wc, attempt: eval_resources("runtime", attempt),
    params:
        shards=lambda wc: PLAN.encode_shards(wc.owner),
        encoding=lambda wc: cli(
            max_len=PLAN.encoding(wc.owner)["passage_max_len"],
            passage_text=PLAN.encoding(wc.owner)["passage_text"],
        ),
        batch=EVAL["batch_size"],
        gpus=EVAL["gpus"],
    shell:
        "python {input.script:q} encode-corpus --model {input.model:q} --corpus {input.corpus:q} --shard {wildcards.k:q}"
        " --shards {params.shards:q} {params.encoding:q} --batch-size {params.batch:q} --gpus {params.gpus:q} --threads {threads}"
        " --out {output.emb:q} --ids {output.ids:q} > {log:q} 2>&1"


rule search:
    input:
        model=f"{RESULTS}/retrievers/{{experiment}}",
        queries=eval_queries,
        corpus=lambda wc: PLAN.corpus_embeddings(wc.experiment, wc.eval_dataset),
        corpus_ids=lambda wc: [
            f.removesuffix(".npy") + ".ids" for f in PLAN.corpus_embeddings(wc.experiment, wc.eval_dataset)
        ],
        script=script("evaluate.py"),
    output:
        run=f"{RESULTS}/runs/{{experiment}}/{{eval_dataset}}.trec",
        emb=embeddings(f"{RESULTS}/index/{{experiment}}/{{eval_dataset}}/queries.npy"),
        ids=embeddings(f"{RESULTS}/index/{{experiment}}/{{eval_dataset}}/queries.ids"),
    log:
        f"{LOGS}/search/{{experiment}}/{{eval_dataset}}.log",
    benchmark:
        f"{BENCH}/search/{{experiment}}/{{eval_dataset}}.tsv"
    wildcard_constraints:
        eval_dataset=alternatives(SEARCHED),
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    threads: EVAL["cpus"]
    resources:
        gpu=eval_resources("gpu"),
        mem_mb=lambda wc, attempt: eval_resources("mem_mb", attempt),
        runtime=lambda wc, attempt: eval_resources("runtime", attempt),
    params:
        shards=lambda wc, input: cli(shard=list(zip(input.corpus, input.corpus_ids))),
        depth=EVAL["depth"],
        options=lambda wc: cli(
            drop_self_hits=PLAN.is_beir(wc.eval_dataset),
            query_max_len=PLAN.encoding(wc.eval_dataset)["query_max_len"],
        ),
        factory=EVAL["index_factory"],
        batch=EVAL["batch_size"],
        gpus=EVAL["gpus"],
    shell:
        "python {input.script:q} search --model {input.model:q} --queries {input.queries:q} {params.shards:q}"
        " --depth {params.depth:q} --index-factory {params.factory:q} --batch-size {params.batch:q}"
        " --gpus {params.gpus:q} --threads {threads} --tag {wildcards.experiment:q} {params.options:q}"
        " --queries-out {output.emb:q} {output.ids:q} --out {output.run:q} > {log:q} 2>&1"


rule bm25_index:
    input:
        corpus=f"{RESULTS}/data/{{owner}}/corpus.parquet",
        script=script("evaluate.py"),
    output:
        directory(f"{RESULTS}/bm25/{{owner}}"),
    log:
        f"{LOGS}/bm25_index/{{owner}}.log",
    benchmark:
        f"{BENCH}/bm25_index/{{owner}}.tsv"
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    threads: EVAL["cpus"]
    resources:
        mem_mb=lambda wc, attempt: eval_resources("mem_mb", attempt),
        runtime=lambda wc, attempt: eval_resources("runtime", attempt),
    shell:
        "python {input.script:q} bm25-index --corpus {input.corpus:q} --threads {threads} --out {output:q}"
        " > {log:q} 2>&1"


rule bm25_search:
    input:
        index=lambda wc: f"{RESULTS}/bm25/{PLAN.corpus_owner(wc.eval_dataset)}",
        queries=eval_queries,
        script=script("evaluate.py"),
    output:
        f"{RESULTS}/runs/bm25/{{eval_dataset}}.trec",
    log:
        f"{LOGS}/bm25_search/{{eval_dataset}}.log",
    wildcard_constraints:
        eval_dataset=alternatives(SEARCHED),
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    threads: EVAL["cpus"]
    resources:
        mem_mb=lambda wc, attempt: eval_resources("mem_mb", attempt),
        runtime=lambda wc, attempt: eval_resources("runtime", attempt),
    params:
        depth=EVAL["depth"],
        self_hits=lambda wc: cli(drop_self_hits=PLAN.is_beir(wc.eval_dataset)),
    shell:
        "python {input.script:q} bm25-search --index {input.index:q} --queries {input.queries:q}"
        " --depth {params.depth:q} {params.self_hits:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule metrics:
    input:
        runs=lambda wc: [f"{RESULTS}/runs/{wc.system}/{d}.trec" for d in PLAN.eval_datasets(wc.system)],
        qrels=lambda wc: [q for d in PLAN.eval_datasets(wc.system) if (q := PLAN.eval_qrels(d))],
        answers=lambda wc: [
            f
            for d in PLAN.eval_datasets(wc.system)
            if PLAN.answer_measures(d)
            for f in PLAN.answer_tables(d)
        ],
        script=script("evaluate.py"),
    output:
        f"{RESULTS}/metrics/{{system}}.parquet",
    log:
        f"{LOGS}/metrics/{{system}}.log",
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        evals=lambda wc, input: cli(
            eval=[
                (d, r, PLAN.eval_qrels(d) or "-", int(PLAN.is_beir(d)))
                for d, r in zip(PLAN.eval_datasets(wc.system), input.runs)
            ]
        ),
        answers=lambda wc: cli(
            answers=[
                (d, *PLAN.answer_tables(d)) for d in PLAN.eval_datasets(wc.system) if PLAN.answer_measures(d)
            ]
        ),
        spec=lambda wc: json.dumps(
            {d: PLAN.measures(d) for d in PLAN.eval_datasets(wc.system)}, sort_keys=True
        ),
    shell:
        "python {input.script:q} metrics {params.evals:q} {params.answers:q} --spec {params.spec:q} --out {output:q}"
        " > {log:q} 2>&1"


rule results_table:
    input:
        metrics=[PLAN.metrics_file(s) for s in PLAN.systems()],
        script=script("evaluate.py"),
    output:
        table=report(
            f"{RESULTS}/metrics/results.tsv",
            caption="../report/results-table.rst",
            category="Evaluate",
            labels={"table": "results"},
        ),
        significance=report(
            f"{RESULTS}/metrics/significance.tsv",
            caption="../report/significance.rst",
            category="Evaluate",
            labels={"table": "significance"},
        ),
    log:
        f"{LOGS}/results_table.log",
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        spec=json.dumps(
            {
                "metrics": f"{RESULTS}/metrics",
                "systems": PLAN.systems(),
                "datasets": {s: PLAN.eval_datasets(s) for s in PLAN.systems()},
                "groups": {s: PLAN.eval_groups(s) for s in PLAN.systems()},
                "baselines": PLAN.baselines(),
                "alpha": EVAL["significance"],
            },
            sort_keys=True,
        ),
    shell:
        "python {input.script:q} table --spec {params.spec:q} --out {output.table:q}"
        " --significance {output.significance:q} > {log:q} 2>&1"
