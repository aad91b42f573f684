# Label sets and retriever training (PAPER-SPEC C, D, E), plus the REPLUG utility scores they may need.
# Every experiment in config is one `train` job named after it; a curriculum adds its stage 1 as its own job
# (`<experiment>-stage1`, shared by experiments whose stage 1 is identical).
LABEL_SETS = PLAN.label_sets()
TRAININGS = PLAN.trainings()
POOL_SHARDS = PLAN.pool_shards()


rule labels:
    input:
        pools=POOL_SHARDS,
        merged=lambda wc: [LABEL_SETS[wc.labelset]["merged"]] if LABEL_SETS[wc.labelset]["merged"] else [],
        script=script("train.py"),
    output:
        f"{RESULTS}/labels/{{labelset}}.parquet",
    params:
        pools=lambda wc, input: " ".join(f"--pool '{f}'" for f in input.pools),
        opts=lambda wc: (
            "--kind '{kind}' --subset {subset} --human-positive {human_positive} --human-fraction {human_fraction}"
            .format(**LABEL_SETS[wc.labelset])
        ),
        merged=lambda wc, input: " ".join(f"--merged '{f}'" for f in input.merged),
        seed=config["seed"],
    wildcard_constraints:
        labelset=alternatives(LABEL_SETS),
    log:
        f"{LOGS}/labels/{{labelset}}.log",
    benchmark:
        f"{BENCH}/labels/{{labelset}}.tsv"
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' labels {params.pools} {params.merged} {params.opts} --seed {params.seed}"
        " --out '{output}' > {log} 2>&1"


rule replug:
    input:
        pool=POOL_SHARD,
        answers=PLAN.replug_answers(),
        prompt=prompt_path(config["replug"]["prompt"]),
        model=lambda wc: PLAN.model_inputs(PLAN.llm(wc.annotator)["model"]),
        script=script("annotate.py"),
    output:
        f"{RESULTS}/annotate/{{annotator}}/replug/shard-{{k}}.jsonl",
    params:
        llm=lambda wc: llm_arg(wc.annotator),
        answer=config["replug"]["answer"],
        words=config["annotation"]["passage_words"],
        batch=config["annotation"]["batch_queries"],
        gpus=lambda wc: PLAN.llm(wc.annotator)["gpus"],
    log:
        f"{LOGS}/replug/{{annotator}}/shard-{{k}}.log",
    benchmark:
        f"{BENCH}/replug/{{annotator}}/shard-{{k}}.tsv"
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
        "python '{input.script}' replug --pool '{input.pool}' --answers '{input.answers}' --prompt '{input.prompt}'"
        " --llm {params.llm} --answer {params.answer} --passage-words {params.words} --gpus {params.gpus}"
        " --threads {threads} --batch-queries {params.batch} --out '{output}' > {log} 2>&1"


rule merge_replug:
    input:
        shards=lambda wc: PLAN.annotation_shards(wc.annotator, "replug"),
        pools=POOL_SHARDS,
        script=script("annotate.py"),
    output:
        table=f"{RESULTS}/annotate/{{annotator}}/replug/merged.parquet",
        stats=f"{RESULTS}/annotate/{{annotator}}/replug/stats.json",
    params:
        shards=lambda wc, input: " ".join(f"--shard '{f}'" for f in input.shards),
        pools=lambda wc, input: " ".join(f"--pool '{f}'" for f in input.pools),
        length=config["replug"]["length"],
    log:
        f"{LOGS}/merge_replug/{{annotator}}.log",
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' replug-merge {params.shards} {params.pools} --length {params.length}"
        " --out '{output.table}' --stats '{output.stats}' > {log} 2>&1"


rule train:
    input:
        init=lambda wc: PLAN.init_inputs(TRAININGS[wc.name]["init"]),
        labels=lambda wc: TRAININGS[wc.name]["labels"],
        pools=POOL_SHARDS,
        script=script("train.py"),
    output:
        directory(f"{RESULTS}/retrievers/{{name}}"),
    params:
        init=lambda wc: TRAININGS[wc.name]["init"],
        pools=lambda wc, input: " ".join(f"--pool '{f}'" for f in input.pools),
        settings=lambda wc: shlex.quote(json.dumps(TRAININGS[wc.name]["settings"], sort_keys=True)),
        checkpoints=lambda wc: f"{RESULTS}/train/{wc.name}/checkpoint",
        nproc=max(1, config["training"]["gpus"]),
    wildcard_constraints:
        name=alternatives(TRAININGS),
    log:
        f"{LOGS}/train/{{name}}.log",
    benchmark:
        f"{BENCH}/train/{{name}}.tsv"
    threads: config["training"]["cpus"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=lambda wc, attempt: config["training"]["mem_mb"] * attempt,
        runtime=lambda wc, attempt: config["training"]["runtime"] * attempt,
    conda:
        "../envs/train.yaml"
    container:
        config["containers"]["train"]
    shell:
        "python '{input.script}' train --init '{params.init}' --labels '{input.labels}' {params.pools}"
        " --settings {params.settings} --checkpoint-dir '{params.checkpoints}' --processes {params.nproc}"
        " --threads {threads} --out '{output}' > {log} 2>&1"
