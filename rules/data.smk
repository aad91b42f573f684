# Data stage: raw sources -> verified downloads -> normalized tables under results/data/<dataset>/.
# Downloads and the tiny world are local rules: they never go to GPU nodes and need the network (or nothing).


# Light rules run where Snakemake runs, never as cluster jobs: downloads need the network, the others take
# seconds (queries and judgments are small tables).
localrules:
    tiny_world,
    download,
    queries,
    qrels,


rule tiny_world:
    input:
        script=script("data.py"),
    output:
        PLAN.tiny_world_files(),
    log:
        f"{LOGS}/tiny_world.log",
    benchmark:
        f"{BENCH}/tiny_world.tsv"
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    params:
        opts=lambda wc: cli(
            **{
                k: ",".join(map(str, v)) if isinstance(v, list) else v
                for k, v in (config.get("tiny_world") or {}).items()
            }
        ),
        out=lambda wc, output: str(Path(output[0]).parent.parent),  # <dir>/msmarco/<file>
    shell:
        "python {input.script:q} tiny-world --out {params.out:q} {params.opts:q} > {log:q} 2>&1"


rule download:
    input:
        local=lambda wc: [PLAN.source(wc.source)["path"]] if "path" in PLAN.source(wc.source) else [],
        script=script("data.py"),
    output:
        f"{PLAN.downloads}/{{source}}/{{filename}}",
    log:
        f"{LOGS}/download/{{source}}/{{filename}}.log",
    retries: 2
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    params:
        where=lambda wc: cli(
            **{k: PLAN.source(wc.source).get(k) for k in ("path", "url", "md5", "sha256")},
            manifest=f"{PLAN.downloads}/manifest.json",
        ),
    shell:
        "python {input.script:q} download {params.where:q} --dest {output:q} > {log:q} 2>&1"


rule corpus:
    input:
        raw=_raw("corpus"),
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/corpus.parquet",
    log:
        f"{LOGS}/corpus/{{dataset}}.log",
    benchmark:
        f"{BENCH}/corpus/{{dataset}}.tsv"
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        member=_member("corpus"),
        titles=lambda wc: cli(titles=PLAN.table(wc.dataset, "corpus").get("titles")),
        fmt=_format("corpus"),
    shell:
        "python {input.script:q} corpus --raw {input.raw:q} {params.member:q} {params.titles:q} --format {params.fmt:q}"
        " --out {output:q}"
        " > {log:q} 2>&1"


rule queries:
    input:
        raw=_raw("queries"),
        judged=_judged_by,
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/queries-{{split}}.parquet",
    log:
        f"{LOGS}/queries/{{dataset}}-{{split}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    params:
        member=_member("queries"),
        fmt=_format("queries"),
        judged=lambda wc, input: cli(judged_by=list(input.judged)),
    shell:
        "python {input.script:q} queries --raw {input.raw:q} {params.member:q} --format {params.fmt:q} {params.judged:q}"
        " --out {output:q} > {log:q} 2>&1"


rule qrels:
    input:
        raw=_raw("qrels"),
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/qrels-{{split}}.trec",
    log:
        f"{LOGS}/qrels/{{dataset}}-{{split}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    params:
        member=_member("qrels"),
        fmt=_format("qrels"),
    shell:
        "python {input.script:q} qrels --raw {input.raw:q} {params.member:q} --format {params.fmt:q} --out {output:q}"
        " > {log:q} 2>&1"


rule answers:
    input:
        raw=_raw("answers"),
        queries=f"{RESULTS}/data/{{dataset}}/queries-{{split}}.parquet",
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/answers-{{split}}.parquet",
    log:
        f"{LOGS}/answers/{{dataset}}-{{split}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    params:
        member=_member("answers"),
        fmt=_format("answers"),
    shell:
        "python {input.script:q} answers --raw {input.raw:q} {params.member:q} --format {params.fmt:q}"
        " --queries {input.queries:q} --out {output:q} > {log:q} 2>&1"


rule train_pool:
    input:
        raw=_raw("train_pool"),
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/train-pool.parquet",
    log:
        f"{LOGS}/train_pool/{{dataset}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    params:
        member=_member("train_pool"),
        fmt=_format("train_pool"),
    shell:
        "python {input.script:q} pool --raw {input.raw:q} {params.member:q} --format {params.fmt:q} --out {output:q}"
        " > {log:q} 2>&1"
