# Sharded LLM annotation (PAPER-SPEC B): RelSel -> pseudo answer -> UtilSel | UtilRank, one GPU job per step
# and shard, then one merge per step. A prompt file is an input of its step: editing it reruns that step and
# what depends on it.

ANNOTATION_DATASET = config["annotation"]["dataset"]
POOL_SHARD = f"{RESULTS}/pool/{ANNOTATION_DATASET}/shard-{{k}}.parquet"
STEP_SHARD = f"{RESULTS}/annotate/{{annotator}}/{{step}}/shard-{{k}}.jsonl"
# What each step reads besides its pool shard: earlier steps of the same annotator and shard.
STEP_NEEDS = {"relsel": [], "pseudo_answer": ["relsel"], "utilsel": ["relsel", "pseudo_answer"],
              "utilrank": ["relsel", "pseudo_answer"]}


for _step in STEP_NEEDS:

    rule:
        name:
            _step
        input:
            pool=POOL_SHARD,
            prompt=lambda wc, step=_step: prompt_file(step),
            model=lambda wc: PLAN.model_inputs(PLAN.llm(wc.annotator)["model"]),
            earlier=[STEP_SHARD.replace("{step}", s) for s in STEP_NEEDS[_step]],
            script=script("annotate.py"),
        output:
            STEP_SHARD.replace("{step}", _step),
        params:
            step=_step,  # the shell text is formatted at run time, when _step holds the loop's last value
            llm=lambda wc: llm_arg(wc.annotator),
            earlier=lambda wc, input, step=_step: " ".join(
                f"--{'relsel' if s == 'relsel' else 'answers'} '{f}'" for s, f in zip(STEP_NEEDS[step], input.earlier)
            ),
            words=config["annotation"]["passage_words"],
            batch=config["annotation"]["batch_queries"],
            gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
        log:
            f"{LOGS}/{_step}/{{annotator}}/shard-{{k}}.log",
        benchmark:
            f"{BENCH}/{_step}/{{annotator}}/shard-{{k}}.tsv"
        threads: lambda wc: PLAN.llm(wc.annotator)["cpus"]
        resources:
            gpu=lambda wc: llm_resources(wc.annotator, "gpu"),
            mem_mb=lambda wc, attempt: llm_resources(wc.annotator, "mem_mb", attempt),
            runtime=lambda wc, attempt: llm_resources(wc.annotator, "runtime", attempt),
        conda:
            "../envs/llm.yaml"
        container:
            config["containers"]["llm"]
        shell:
            "python '{input.script}' step {params.step} --pool '{input.pool}' --prompt '{input.prompt}'"
            " --llm {params.llm} {params.earlier} --passage-words {params.words} --gpus {params.gpus}"
            " --threads {threads} --batch-queries {params.batch} --out '{output}' > {log} 2>&1"


rule merge_annotations:
    input:
        shards=lambda wc: PLAN.annotation_shards(wc.annotator, wc.step),
        pools=PLAN.pool_shards(),
        benchmarks=lambda wc: [f"{BENCH}/{wc.step}/{wc.annotator}/shard-{k}.tsv"
                               for k in range(config["annotation"]["shards"])],
        script=script("annotate.py"),
    output:
        table=f"{RESULTS}/annotate/{{annotator}}/{{step}}/merged.parquet",
        stats=f"{RESULTS}/annotate/{{annotator}}/{{step}}/stats.json",
    params:
        shards=lambda wc, input: " ".join(f"--shard '{f}'" for f in input.shards),
        pools=lambda wc, input: " ".join(f"--pool '{f}'" for f in input.pools),
        benchmarks=lambda wc, input: " ".join(f"--benchmark '{f}'" for f in input.benchmarks),
        topk=" ".join(f"--topk {k}" for k in config["annotation"]["utilrank_topk"]),
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    log:
        f"{LOGS}/merge_annotations/{{annotator}}/{{step}}.log",
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' merge {wildcards.step} {params.shards} {params.pools} {params.benchmarks}"
        " --gpus {params.gpus} {params.topk} --out '{output.table}' --stats '{output.stats}' > {log} 2>&1"
