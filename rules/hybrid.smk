# The Hybrid Test (PAPER-SPEC B.9): per pool (a backbone), a seeded sample of dev queries with a QA answer, the
# union of the pooled retrievers' top passages, an LLM judge given the answer, and gold = human ∪ judged
# positives as the qrels of the dataset <dataset>-hybrid-<pool>. Each system's run on it is its dev run
# restricted to the sampled queries (same model, corpus and queries: the same ranking).
HYBRID = config["hybrid"]
HYBRID_SETS = PLAN.hybrid_sets()


wildcard_constraints:
    pool=alternatives(set(HYBRID_SETS.values())),
    hybrid_dataset=alternatives(HYBRID_SETS),


rule hybrid_pool:
    input:
        **(PLAN.hybrid_sources() if HYBRID_SETS else {}),
        runs=lambda wc: PLAN.hybrid_runs(wc.pool),
        script=script("hybrid.py"),
    output:
        shards=[f"{RESULTS}/hybrid/{{pool}}/pool/shard-{k}.parquet" for k in range(HYBRID["shards"])],
        stats=f"{RESULTS}/hybrid/{{pool}}/pool.json",
    log:
        f"{LOGS}/hybrid_pool/{{pool}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        files=lambda wc, input, output: cli(run=list(input.runs), out=list(output.shards)),
        depth=HYBRID["depth"],
        n=HYBRID["queries"],
        window=HYBRID["window"],
        overlap=HYBRID["overlap"],
        seed=config["seed"],
    shell:
        "python {input.script:q} pool {params.files:q} --queries {input.queries:q} --answers {input.answers:q}"
        " --qrels {input.qrels:q} --corpus {input.corpus:q} --stats {output.stats:q} --queries-n {params.n:q}"
        " --depth {params.depth:q} --window {params.window:q} --overlap {params.overlap:q} --seed {params.seed:q}"
        " > {log:q} 2>&1"


rule hybrid_judge:
    input:
        pool=f"{RESULTS}/hybrid/{{pool}}/pool/shard-{{k}}.parquet",
        prompt=prompt_path(HYBRID["prompt"]),
        model=PLAN.model_inputs(PLAN.llm(HYBRID["judge"])["model"]) if HYBRID_SETS else [],
        script=script("hybrid.py"),
    output:
        f"{RESULTS}/hybrid/{{pool}}/judge/shard-{{k}}.jsonl",
    log:
        f"{LOGS}/hybrid_judge/{{pool}}/shard-{{k}}.log",
    benchmark:
        f"{BENCH}/hybrid_judge/{{pool}}/shard-{{k}}.tsv"
    conda:
        "../envs/llm.yaml"
    container:
        config["containers"]["llm"]
    threads: lambda wc: PLAN.llm(HYBRID["judge"])["cpus"]
    resources:
        gpu=lambda wc: llm_resources(HYBRID["judge"], "gpu"),
        mem_mb=lambda wc, attempt: llm_resources(HYBRID["judge"], "mem_mb", attempt),
        runtime=lambda wc, attempt: llm_resources(HYBRID["judge"], "runtime", attempt),
    params:
        llm=lambda wc: llm_arg(HYBRID["judge"]),
        words=HYBRID["passage_words"],
        batch=HYBRID["batch_queries"],
        gpus=lambda wc: PLAN.llm(HYBRID["judge"])["gpus"],
    shell:
        "python {input.script:q} judge --pool {input.pool:q} --prompt {input.prompt:q} --llm {params.llm:q}"
        " --passage-words {params.words:q} --gpus {params.gpus:q} --threads {threads}"
        " --batch-queries {params.batch:q} --out {output:q} > {log:q} 2>&1"


rule hybrid_gold:
    input:
        pools=lambda wc: PLAN.hybrid_shards(HYBRID_SETS[wc.hybrid_dataset], "pool"),
        judged=lambda wc: PLAN.hybrid_shards(HYBRID_SETS[wc.hybrid_dataset], "judge"),
        script=script("hybrid.py"),
    output:
        qrels=f"{RESULTS}/data/{{hybrid_dataset}}/qrels-test.trec",
        queries=f"{RESULTS}/data/{{hybrid_dataset}}/queries-test.parquet",
        stats=f"{RESULTS}/data/{{hybrid_dataset}}/hybrid-stats.json",
    log:
        f"{LOGS}/hybrid_gold/{{hybrid_dataset}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    params:
        files=lambda wc, input: cli(pool=list(input.pools), judged=list(input.judged)),
        prices=lambda wc: cli(
            price_input=PLAN.llm(HYBRID["judge"]).get("price_per_million_input"),
            price_output=PLAN.llm(HYBRID["judge"]).get("price_per_million_output"),
        ),
    shell:
        "python {input.script:q} gold {params.files:q} {params.prices:q} --qrels-out {output.qrels:q}"
        " --queries-out {output.queries:q} --stats {output.stats:q} > {log:q} 2>&1"


rule hybrid_run:
    input:
        run=lambda wc: f"{RESULTS}/runs/{wc.system}/{HYBRID['dataset']}.trec",
        queries=f"{RESULTS}/data/{{hybrid_dataset}}/queries-test.parquet",
        script=script("hybrid.py"),
    output:
        f"{RESULTS}/runs/{{system}}/{{hybrid_dataset}}.trec",
    log:
        f"{LOGS}/hybrid_run/{{system}}/{{hybrid_dataset}}.log",
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    shell:
        "python {input.script:q} restrict --run {input.run:q} --queries {input.queries:q} --out {output:q}"
        " > {log:q} 2>&1"
