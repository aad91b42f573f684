# Sharded LLM annotation (PAPER-SPEC B): RelSel -> pseudo answer -> UtilSel | UtilRank, one GPU job per step
# and shard, then one merge per step. A prompt file is an input of its step: editing it reruns that step and
# what depends on it.

ANNOTATION_DATASET = config["annotation"]["dataset"]
POOL_SHARD = f"{RESULTS}/pool/{ANNOTATION_DATASET}/shard-{{k}}.parquet"


rule annotate:
    input:
        pool=POOL_SHARD,
        earlier=lambda wc: list(PLAN.earlier_steps(wc.annotator, wc.step, wc.k).values()),
        prompt=lambda wc: prompt_file(wc.step),
        model=lambda wc: PLAN.model_inputs(PLAN.llm(wc.annotator)["model"]),
        script=script("annotate.py"),
    output:
        f"{RESULTS}/annotate/{{annotator}}/{{step}}/shard-{{k}}.jsonl",
    log:
        f"{LOGS}/{{step}}/{{annotator}}/shard-{{k}}.log",
    benchmark:
        f"{BENCH}/{{step}}/{{annotator}}/shard-{{k}}.tsv"
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
        llm=lambda wc: llm_arg(wc.annotator),
        earlier=lambda wc: cli(
            relsel=PLAN.earlier_steps(wc.annotator, wc.step, wc.k).get("relsel"),
            answers=PLAN.earlier_steps(wc.annotator, wc.step, wc.k).get("pseudo_answer"),
        ),
        words=config["annotation"]["passage_words"],
        batch=config["annotation"]["batch_queries"],
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    shell:
        "python {input.script:q} step {wildcards.step:q} --pool {input.pool:q} --prompt {input.prompt:q}"
        " --llm {params.llm:q} {params.earlier:q} --passage-words {params.words:q} --gpus {params.gpus:q}"
        " --threads {threads} --batch-queries {params.batch:q} --out {output:q} > {log:q} 2>&1"


rule merge_annotations:
    input:
        shards=lambda wc: PLAN.annotation_shards(wc.annotator, wc.step),
        pools=PLAN.pool_shards(),
        benchmarks=lambda wc: [
            f"{BENCH}/{wc.step}/{wc.annotator}/shard-{k}.tsv" for k in range(config["annotation"]["shards"])
        ],
        script=script("annotate.py"),
    output:
        table=f"{RESULTS}/annotate/{{annotator}}/{{step}}/merged.parquet",
        stats=report(
            f"{RESULTS}/annotate/{{annotator}}/{{step}}/stats.json",
            caption="../report/annotation-stats.rst",
            category="Annotate",
            labels={"annotator": "{annotator}", "step": "{step}"},
        ),
    log:
        f"{LOGS}/merge_annotations/{{annotator}}/{{step}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        inputs=lambda wc, input: cli(
            shard=list(input.shards), pool=list(input.pools), benchmark=list(input.benchmarks)
        ),
        topk=cli(topk=config["annotation"]["utilrank_topk"]),
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    shell:
        "python {input.script:q} merge {wildcards.step:q} {params.inputs:q} --gpus {params.gpus:q} {params.topk:q}"
        " --out {output.table:q} --stats {output.stats:q} > {log:q} 2>&1"
