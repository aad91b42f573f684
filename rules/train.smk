# Label sets and retriever training (PAPER-SPEC C, D, E), plus the REPLUG utility scores they may need.
# Every experiment in config is one `train` job named after it; a curriculum adds its stage 1 as its own job
# (`<experiment>-stage1`, shared by experiments whose stage 1 is identical).
LABEL_SETS = PLAN.label_sets()
TRAININGS = PLAN.trainings()


rule labels:
    input:
        pools=lambda wc: PLAN.pool_dir(LABEL_SETS[wc.labelset]["run"]),
        merged=lambda wc: [LABEL_SETS[wc.labelset]["merged"]] if LABEL_SETS[wc.labelset]["merged"] else [],
        script=script("train.py"),
    output:
        f"{RESULTS}/labels/{{labelset}}.parquet",
    log:
        f"{LOGS}/labels/{{labelset}}.log",
    benchmark:
        f"{BENCH}/labels/{{labelset}}.tsv"
    wildcard_constraints:
        labelset=alternatives(LABEL_SETS),
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        opts=lambda wc, input: cli(
            pool=LABEL_SETS[wc.labelset]["pools"],
            merged=list(input.merged),
            seed=config["seed"],
            **{
                k: LABEL_SETS[wc.labelset][k] for k in ("kind", "subset", "human_positive", "human_fraction")
            },
        ),
    shell:
        "python {input.script:q} labels {params.opts:q} --out {output:q} > {log:q} 2>&1"


rule replug:
    input:
        pools=lambda wc: PLAN.pool_dir(wc.run),
        answers=lambda wc: PLAN.replug_answers(wc.run),
        prompt=prompt_path(config["replug"]["prompt"]),
        model=lambda wc: PLAN.model_inputs(PLAN.llm(wc.annotator)["model"]),
        script=script("annotate.py"),
    output:
        f"{RESULTS}/annotate/{{run}}/{{annotator}}/replug/shard-{{k}}.jsonl",
    log:
        f"{LOGS}/replug/{{run}}/{{annotator}}/shard-{{k}}.log",
    benchmark:
        f"{BENCH}/replug/{{run}}/{{annotator}}/shard-{{k}}.tsv"
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
        answer=config["replug"]["answer"],
        words=lambda wc: PLAN.runs()[wc.run]["passage_words"],
        batch=lambda wc: PLAN.runs()[wc.run]["batch_queries"],
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    shell:
        "python {input.script:q} replug --pool {params.pool:q} --answers {input.answers:q} --prompt {input.prompt:q}"
        " --llm {params.llm:q} --answer {params.answer:q} --passage-words {params.words:q} --gpus {params.gpus:q}"
        " --threads {threads} --batch-queries {params.batch:q} --out {output:q} > {log:q} 2>&1"


rule merge_replug:
    input:
        shards=lambda wc: PLAN.annotation_shards(wc.run, wc.annotator, "replug"),
        pools=lambda wc: PLAN.pool_dir(wc.run),
        script=script("annotate.py"),
    output:
        table=f"{RESULTS}/annotate/{{run}}/{{annotator}}/replug/merged.parquet",
        stats=f"{RESULTS}/annotate/{{run}}/{{annotator}}/replug/stats.json",
    log:
        f"{LOGS}/merge_replug/{{run}}/{{annotator}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        inputs=lambda wc, input: cli(shard=list(input.shards), pool=PLAN.pool_shards(wc.run)),
        length=config["replug"]["length"],
    shell:
        "python {input.script:q} replug-merge {params.inputs:q} --length {params.length:q}"
        " --out {output.table:q} --stats {output.stats:q} > {log:q} 2>&1"


rule train:
    input:
        init=lambda wc: PLAN.init_inputs(TRAININGS[wc.name]["init"]),
        labels=lambda wc: TRAININGS[wc.name]["labels"],
        pools=lambda wc: PLAN.pool_dir(TRAININGS[wc.name]["run"]),
        script=script("train.py"),
    output:
        directory(f"{RESULTS}/retrievers/{{name}}"),
    log:
        f"{LOGS}/train/{{name}}.log",
    benchmark:
        f"{BENCH}/train/{{name}}.tsv"
    wildcard_constraints:
        name=alternatives(TRAININGS),
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    threads: config["training"]["cpus"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=lambda wc, attempt: config["training"]["mem_mb"] * attempt,
        runtime=lambda wc, attempt: config["training"]["runtime"] * attempt,
    params:
        init=lambda wc: TRAININGS[wc.name]["init"],
        pools=lambda wc: cli(pool=TRAININGS[wc.name]["pools"]),
        settings=lambda wc: json.dumps(TRAININGS[wc.name]["settings"], sort_keys=True),
        checkpoints=lambda wc: f"{RESULTS}/train/{wc.name}/checkpoint",
        nproc=max(1, config["training"]["gpus"]),
    shell:
        "python {input.script:q} train --init {params.init:q} --labels {input.labels:q} {params.pools:q}"
        " --settings {params.settings:q} --checkpoint-dir {params.checkpoints:q} --processes {params.nproc:q}"
        " --gpus {resources.gpu}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"
