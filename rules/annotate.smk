# Sharded LLM annotation (PAPER-SPEC B): RelSel -> pseudo answer -> UtilSel | UtilRank, one GPU job per step
# and shard, then one merge per step. A prompt file is an input of its step: editing it reruns that step and
# what depends on it.

# Every path carries the run (config `annotation.<run>`): pools, annotator, step and shard.


rule annotate:
    input:
        pools=lambda wc: PLAN.pool_dir(wc.run),
        earlier=lambda wc: list(PLAN.earlier_steps(wc.run, wc.annotator, wc.step, wc.k).values()),
        prompt=lambda wc: prompt_file(wc.run, wc.step),
        model=lambda wc: PLAN.model_inputs(PLAN.llm(wc.annotator)["model"]),
        script=script("annotate.py"),
    output:
        f"{RESULTS}/annotate/{{run}}/{{annotator}}/{{step}}/shard-{{k}}.jsonl",
    log:
        f"{LOGS}/{{step}}/{{run}}/{{annotator}}/shard-{{k}}.log",
    benchmark:
        f"{BENCH}/{{step}}/{{run}}/{{annotator}}/shard-{{k}}.tsv"
    conda:
        "../envs/llm.yaml"
    container:
        config["containers"]["llm"]
    threads: lambda wc: PLAN.llm(wc.annotator)["cpus"]
    resources:
        gpu=lambda wc: llm_resources(wc.annotator, "gpu"),
        mem_mb=lambda wc, attempt: llm_resources(wc.annotator, "mem_mb", attempt),
        runtime=lambda wc, attempt: llm_resources(wc.annotator, "runtime", attempt),
    params:
        pool=lambda wc: f"{PLAN.pool_dir(wc.run)}/shard-{wc.k}.parquet",
        llm=lambda wc: llm_arg(wc.annotator),
        earlier=lambda wc: cli(
            relsel=PLAN.earlier_steps(wc.run, wc.annotator, wc.step, wc.k).get("relsel"),
            answers=PLAN.earlier_steps(wc.run, wc.annotator, wc.step, wc.k).get("pseudo_answer"),
        ),
        words=lambda wc: PLAN.runs()[wc.run]["passage_words"],
        batch=lambda wc: PLAN.runs()[wc.run]["batch_queries"],
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    shell:
        "python {input.script:q} step {wildcards.step:q} --pool {params.pool:q} --prompt {input.prompt:q}"
        " --llm {params.llm:q} {params.earlier:q} --passage-words {params.words:q} --gpus {params.gpus:q}"
        " --threads {threads} --batch-queries {params.batch:q} --out {output:q} > {log:q} 2>&1"


rule merge_annotations:
    input:
        shards=lambda wc: PLAN.annotation_shards(wc.run, wc.annotator, wc.step),
        pools=lambda wc: PLAN.pool_dir(wc.run),
        benchmarks=lambda wc: [
            f"{BENCH}/{wc.step}/{wc.run}/{wc.annotator}/shard-{k}.tsv"
            for k in range(PLAN.runs()[wc.run]["shards"])
        ],
        script=script("annotate.py"),
    output:
        table=f"{RESULTS}/annotate/{{run}}/{{annotator}}/{{step}}/merged.parquet",
        stats=report(
            f"{RESULTS}/annotate/{{run}}/{{annotator}}/{{step}}/stats.json",
            caption="../report/annotation-stats.rst",
            category="Annotate",
            labels={"run": "{run}", "annotator": "{annotator}", "step": "{step}"},
        ),
    log:
        f"{LOGS}/merge_annotations/{{run}}/{{annotator}}/{{step}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        inputs=lambda wc, input: cli(
            shard=list(input.shards), pool=PLAN.pool_shards(wc.run), benchmark=list(input.benchmarks)
        ),
        topk=lambda wc: cli(topk=PLAN.runs()[wc.run]["utilrank_topk"]),
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    shell:
        "python {input.script:q} merge {wildcards.step:q} {params.inputs:q} --gpus {params.gpus:q} {params.topk:q}"
        " --out {output.table:q} --stats {output.stats:q} > {log:q} 2>&1"
