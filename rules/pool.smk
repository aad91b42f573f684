# Candidate pools of each annotation run: human positive + hard negatives per training query, seeded order,
# windows, shards (one folder per run: runs differ in their shard count). A run with pool_source 'mine' takes
# its dataset's mined candidates instead (`datasets.<name>.mine`): BM25 and any dense retrievers over its
# queries, fused (RRF) into the top `candidates` per query with no human positive (annotate.mining; App. C).


rule mine_bm25:
    input:
        index=lambda wc: f"{RESULTS}/bm25/{PLAN.corpus_owner(wc.dataset)}",
        queries=lambda wc: f"{PLAN.data_dir(wc.dataset)}/queries-{PLAN.datasets[wc.dataset]['mine']['split']}.parquet",
        script=script("evaluate.py"),
    output:
        f"{RESULTS}/mine/{{dataset}}/bm25.trec",
    log:
        f"{LOGS}/mine_bm25/{{dataset}}.log",
    benchmark:
        f"{BENCH}/mine_bm25/{{dataset}}.tsv"
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    threads: config["evaluation"]["cpus"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        depth=lambda wc: PLAN.datasets[wc.dataset]["mine"]["depth"],
        self_hits=lambda wc: cli(drop_self_hits=PLAN.is_beir(wc.dataset)),
    shell:
        "python {input.script:q} bm25-search --index {input.index:q} --queries {input.queries:q}"
        " --depth {params.depth:q} {params.self_hits:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule mine_dense:
    input:
        model=lambda wc: PLAN.mine_retriever(wc.retriever)["inputs"],
        corpus=lambda wc: f"{PLAN.data_dir(PLAN.corpus_owner(wc.dataset))}/corpus.parquet",
        queries=lambda wc: f"{PLAN.data_dir(wc.dataset)}/queries-{PLAN.datasets[wc.dataset]['mine']['split']}.parquet",
        script=script("evaluate.py"),
    output:
        f"{RESULTS}/mine/{{dataset}}/dense-{{retriever}}.trec",
    log:
        f"{LOGS}/mine_dense/{{dataset}}/{{retriever}}.log",
    benchmark:
        f"{BENCH}/mine_dense/{{retriever}}/{{dataset}}.tsv"
    wildcard_constraints:
        retriever=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    threads: config["evaluation"]["cpus"]
    resources:
        gpu=eval_resources("gpu"),
        mem_mb=lambda wc, attempt: eval_resources("mem_mb", attempt),
        runtime=lambda wc, attempt: eval_resources("runtime", attempt),
    params:
        model=lambda wc: PLAN.mine_retriever(wc.retriever)["model"],
        options=lambda wc: cli(
            pooling=PLAN.mine_retriever(wc.retriever)["pooling"],
            depth=PLAN.datasets[wc.dataset]["mine"]["depth"],
            passage_max_len=PLAN.encoding(PLAN.corpus_owner(wc.dataset))["passage_max_len"],
            query_max_len=PLAN.encoding(wc.dataset)["query_max_len"],
            passage_text=PLAN.encoding(PLAN.corpus_owner(wc.dataset))["passage_text"],
            drop_self_hits=PLAN.is_beir(wc.dataset),
            batch_size=config["evaluation"]["batch_size"],
            gpus=config["evaluation"]["gpus"],
        ),
    shell:
        "python {input.script:q} mine-dense --model {params.model:q} --corpus {input.corpus:q}"
        " --queries {input.queries:q} {params.options:q} --threads {threads} --tag {wildcards.retriever:q}"
        " --out {output:q} > {log:q} 2>&1"


rule mine:
    input:
        runs=lambda wc: PLAN.mine_runs(wc.dataset),
        queries=lambda wc: f"{PLAN.data_dir(wc.dataset)}/queries-{PLAN.datasets[wc.dataset]['mine']['split']}.parquet",
        qrels=lambda wc: PLAN.mine_qrels(wc.dataset),
        script=script("annotate.py"),
    output:
        pool=f"{RESULTS}/mine/{{dataset}}/train-pool.parquet",
        stats=f"{RESULTS}/mine/{{dataset}}/stats.json",
    log:
        f"{LOGS}/mine/{{dataset}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    params:
        runs=lambda wc, input: cli(run=list(input.runs)),
        qrels=lambda wc, input: cli(qrels=list(input.qrels)),
        opts=lambda wc: cli(
            **{k: PLAN.datasets[wc.dataset]["mine"][k] for k in ("candidates", "fusion", "rrf_k")}
        ),
    shell:
        "python {input.script:q} mine {params.runs:q} --queries {input.queries:q} {params.qrels:q} {params.opts:q}"
        " --out {output.pool:q} --stats {output.stats:q} > {log:q} 2>&1"


rule pool:
    input:
        pool=lambda wc: PLAN.pool_input(wc.run),
        corpus=lambda wc: f"{PLAN.data_dir(PLAN.corpus_owner(PLAN.runs()[wc.run]['dataset']))}/corpus.parquet",
        script=script("annotate.py"),
    output:
        directory(f"{RESULTS}/pool/{{run}}"),
    log:
        f"{LOGS}/pool/{{run}}.log",
    benchmark:
        f"{BENCH}/pool/{{run}}.tsv"
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        outs=lambda wc: cli(out=PLAN.pool_shards(wc.run)),
        opts=lambda wc: cli(
            **{k: PLAN.runs()[wc.run][k] for k in ("negatives", "window", "overlap", "order")},
            seed=config["seed"],
            mined=PLAN.mined(wc.run),
        ),
    shell:
        "python {input.script:q} pool --input {input.pool:q} --corpus {input.corpus:q} {params.outs:q} {params.opts:q}"
        " > {log:q} 2>&1"
