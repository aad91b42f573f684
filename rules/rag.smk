# RAG evaluation (PAPER-SPEC G): each generator answers each answerable query of each RAG set from a
# retriever experiment's top-k passages (one GPU job per shard, resumable like annotation), then one scoring
# job per (experiment, generator) and one table with the paired t-tests. A prompt file is an input of the
# generation jobs that use it: editing it reruns those answers and their metrics only.
RAG = config["rag"]


wildcard_constraints:
    rag_experiment=alternatives(RAG["experiments"]),
    generator=alternatives(RAG["generators"]),
    rag_dataset=alternatives(RAG["datasets"]),


rule rag_generate:
    input:
        run=lambda wc: PLAN.rag_run(wc.rag_experiment, wc.rag_dataset),
        queries=lambda wc: PLAN.rag_tables(wc.rag_dataset)[0],
        answers=lambda wc: PLAN.rag_tables(wc.rag_dataset)[1],
        corpus=lambda wc: PLAN.rag_corpus(wc.rag_dataset),
        prompt=lambda wc: prompt_path(RAG["datasets"][wc.rag_dataset]["prompt"]),
        model=lambda wc: PLAN.model_inputs(PLAN.llm(wc.generator)["model"]),
        script=script("rag.py"),
    output:
        f"{RESULTS}/rag/{{rag_experiment}}/{{generator}}/{{rag_dataset}}/shard-{{k}}.jsonl",
    log:
        f"{LOGS}/rag_generate/{{rag_experiment}}/{{generator}}/{{rag_dataset}}-{{k}}.log",
    benchmark:
        f"{BENCH}/rag_generate/{{rag_experiment}}/{{generator}}/{{rag_dataset}}-{{k}}.tsv"
    conda:
        "../envs/llm.yaml"
    container:
        config["containers"]["llm"]
    threads: lambda wc: PLAN.llm(wc.generator)["cpus"]
    resources:
        gpu=lambda wc: llm_resources(wc.generator, "gpu"),
        mem_mb=lambda wc, attempt: llm_resources(wc.generator, "mem_mb", attempt),
        runtime=lambda wc, attempt: llm_resources(wc.generator, "runtime", attempt),
    params:
        llm=lambda wc: llm_arg(wc.generator),
        shards=lambda wc: RAG["datasets"][wc.rag_dataset]["shards"],
        top_k=lambda wc: RAG["datasets"][wc.rag_dataset]["top_k"],
        max_tokens=RAG["max_tokens"],
        batch=RAG["batch_queries"],
        gpus=lambda wc: PLAN.llm(wc.generator)["gpus"],
    shell:
        "python {input.script:q} generate --queries {input.queries:q} --answers {input.answers:q}"
        " --run {input.run:q} --corpus {input.corpus:q} --prompt {input.prompt:q} --llm {params.llm:q}"
        " --shard {wildcards.k:q} --shards {params.shards:q} --top-k {params.top_k:q}"
        " --max-tokens {params.max_tokens:q} --gpus {params.gpus:q} --threads {threads}"
        " --batch-queries {params.batch:q} --out {output:q} > {log:q} 2>&1"


rule rag_metrics:
    input:
        shards=lambda wc: [
            f for d in RAG["datasets"] for f in PLAN.rag_shards(wc.rag_experiment, wc.generator, d)
        ],
        tables=[f for d in RAG["datasets"] for f in PLAN.rag_tables(d)],
        bertscore=PLAN.model_inputs(RAG["bertscore_model"]) if RAG["bertscore_model"] else [],
        script=script("rag.py"),
    output:
        answers=f"{RESULTS}/rag/{{rag_experiment}}/{{generator}}/answers.parquet",
        metrics=f"{RESULTS}/rag/metrics/{{rag_experiment}}/{{generator}}.parquet",
    log:
        f"{LOGS}/rag_metrics/{{rag_experiment}}/{{generator}}.log",
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    threads: EVAL["cpus"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        opts=lambda wc, input: cli(
            dataset=[
                (d, o["metrics"], o["tokenization"], *PLAN.rag_tables(d))
                for d, o in sorted(RAG["datasets"].items())
            ],
            shard=list(input.shards),
            bertscore_model=PLAN.resolve(RAG["bertscore_model"]) if RAG["bertscore_model"] else None,
            bertscore_layer=RAG["bertscore_layer"],
            bertscore_model_type=RAG["bertscore_model_type"],
            bertscore_idf=RAG["bertscore_idf"],
            bertscore_rescale_with_baseline=RAG["bertscore_rescale_with_baseline"],
            bertscore_lang=RAG["bertscore_lang"] if RAG["bertscore_rescale_with_baseline"] else None,
            bertscore_baseline_path=(
                PLAN.resolve(RAG["bertscore_baseline_path"]) if RAG["bertscore_baseline_path"] else None
            ),
        ),
    shell:
        "python {input.script:q} score {params.opts:q} --threads {threads}"
        " --answers-out {output.answers:q} --out {output.metrics:q} > {log:q} 2>&1"


rule rag_table:
    input:
        metrics=[PLAN.rag_metrics_file(s) for s in PLAN.rag_systems()],
        script=script("evaluate.py"),
    output:
        table=report(
            f"{RESULTS}/rag/results.tsv",
            caption="../report/results-table.rst",
            category="RAG",
            labels={"table": "results"},
        ),
        significance=report(
            f"{RESULTS}/rag/significance.tsv",
            caption="../report/significance.rst",
            category="RAG",
            labels={"table": "significance"},
        ),
    log:
        f"{LOGS}/rag_table.log",
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
                "metrics": f"{RESULTS}/rag/metrics",
                "systems": PLAN.rag_systems(),
                "datasets": {s: sorted(RAG["datasets"]) for s in PLAN.rag_systems()},
                "baselines": PLAN.rag_baselines(),
                "alpha": EVAL["significance"],
            },
            sort_keys=True,
        ),
    shell:
        "python {input.script:q} table --spec {params.spec:q} --out {output.table:q}"
        " --significance {output.significance:q} > {log:q} 2>&1"
