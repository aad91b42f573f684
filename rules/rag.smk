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
    params:
        llm=lambda wc: llm_arg(wc.generator),
        shards=lambda wc: RAG["datasets"][wc.rag_dataset]["shards"],
        top_k=lambda wc: RAG["datasets"][wc.rag_dataset]["top_k"],
        max_tokens=RAG["max_tokens"],
        batch=RAG["batch_queries"],
        gpus=lambda wc: PLAN.llm(wc.generator)["gpus"],
    log:
        f"{LOGS}/rag_generate/{{rag_experiment}}/{{generator}}/{{rag_dataset}}-{{k}}.log",
    benchmark:
        f"{BENCH}/rag_generate/{{rag_experiment}}/{{generator}}/{{rag_dataset}}-{{k}}.tsv"
    threads: lambda wc: PLAN.llm(wc.generator)["cpus"]
    resources:
        gpu=lambda wc: llm_resources(wc.generator, "gpu"),
        mem_mb=lambda wc, attempt: llm_resources(wc.generator, "mem_mb", attempt),
        runtime=lambda wc, attempt: llm_resources(wc.generator, "runtime", attempt),
    conda:
        "../envs/llm.yaml"
    container:
        config["containers"]["llm"]
    shell:
        "python '{input.script}' generate --queries '{input.queries}' --answers '{input.answers}'"
        " --run '{input.run}' --corpus '{input.corpus}' --prompt '{input.prompt}' --llm {params.llm}"
        " --shard {wildcards.k} --shards {params.shards} --top-k {params.top_k} --max-tokens {params.max_tokens}"
        " --gpus {params.gpus} --threads {threads} --batch-queries {params.batch} --out '{output}' > {log} 2>&1"


rule rag_metrics:
    input:
        shards=lambda wc: [f for d in RAG["datasets"] for f in PLAN.rag_shards(wc.rag_experiment, wc.generator, d)],
        tables=[f for d in RAG["datasets"] for f in PLAN.rag_tables(d)],
        bertscore=PLAN.model_inputs(RAG["bertscore_model"]) if RAG["bertscore_model"] else [],
        script=script("rag.py"),
    output:
        answers=f"{RESULTS}/rag/{{rag_experiment}}/{{generator}}/answers.parquet",
        metrics=f"{RESULTS}/rag/metrics/{{rag_experiment}}/{{generator}}.parquet",
    params:
        datasets=" ".join(
            f"--dataset {d} {o['metrics']} " + " ".join(f"'{f}'" for f in PLAN.rag_tables(d))
            for d, o in RAG["datasets"].items()
        ),
        shards=lambda wc, input: " ".join(f"--shard '{f}'" for f in input.shards),
        bertscore=(
            f"--bertscore-model '{PLAN.resolve(RAG['bertscore_model'])}'" if RAG["bertscore_model"] else ""
        ) + (f" --bertscore-layer {RAG['bertscore_layer']}" if RAG["bertscore_layer"] is not None else ""),
    log:
        f"{LOGS}/rag_metrics/{{rag_experiment}}/{{generator}}.log",
    threads: EVAL["cpus"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    shell:
        "python '{input.script}' score {params.datasets} {params.shards} {params.bertscore} --threads {threads}"
        " --answers-out '{output.answers}' --out '{output.metrics}' > {log} 2>&1"


rule rag_table:
    input:
        metrics=[PLAN.rag_metrics_file(s) for s in PLAN.rag_systems()],
        script=script("evaluate.py"),
    output:
        table=f"{RESULTS}/rag/results.tsv",
        significance=f"{RESULTS}/rag/significance.tsv",
    params:
        spec=shlex.quote(json.dumps({
            "metrics": f"{RESULTS}/rag/metrics", "systems": PLAN.rag_systems(),
            "datasets": {s: list(RAG["datasets"]) for s in PLAN.rag_systems()},
            "baselines": PLAN.rag_baselines(), "alpha": EVAL["significance"],
        })),
    log:
        f"{LOGS}/rag_table.log",
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    shell:
        "python '{input.script}' table --spec {params.spec} --out '{output.table}'"
        " --significance '{output.significance}' > {log} 2>&1"
