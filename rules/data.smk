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
    params:
        opts=lambda wc: " ".join(
            f"--{k.replace('_', '-')} '{','.join(v) if isinstance(v, list) else v}'"
            for k, v in (config.get("tiny_world") or {}).items()
        ),
        out=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),  # <dir>/msmarco/<file>
    log:
        f"{LOGS}/tiny_world.log",
    benchmark:
        f"{BENCH}/tiny_world.tsv"
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' tiny-world --out '{params.out}' {params.opts} > {log} 2>&1"


rule download:
    input:
        local=lambda wc: [PLAN.source(wc.source)["path"]] if "path" in PLAN.source(wc.source) else [],
        script=script("data.py"),
    output:
        f"{PLAN.downloads}/{{source}}/{{filename}}",
    params:
        where=lambda wc: (
            f"--path '{PLAN.source(wc.source)['path']}'"
            if "path" in PLAN.source(wc.source)
            else f"--url '{PLAN.source(wc.source)['url']}'"
        ),
        checks=lambda wc: " ".join(
            f"--{k} {PLAN.source(wc.source)[k]}" for k in ("md5", "sha256") if k in PLAN.source(wc.source)
        ),
    log:
        f"{LOGS}/download/{{source}}/{{filename}}.log",
    retries: 2
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' download {params.where} --dest '{output}' {params.checks} > {log} 2>&1"


rule corpus:
    input:
        raw=_raw("corpus"),
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/corpus.parquet",
    params:
        member=_member("corpus"),
        fmt=_format("corpus"),
    log:
        f"{LOGS}/corpus/{{dataset}}.log",
    benchmark:
        f"{BENCH}/corpus/{{dataset}}.tsv"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' corpus --raw '{input.raw}' {params.member} --format {params.fmt} --out '{output}'"
        " > {log} 2>&1"


rule queries:
    input:
        raw=_raw("queries"),
        judged=_judged_by,
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/queries-{{split}}.parquet",
    params:
        member=_member("queries"),
        fmt=_format("queries"),
        judged=lambda wc, input: f"--judged-by '{input.judged[0]}'" if input.judged else "",
    log:
        f"{LOGS}/queries/{{dataset}}-{{split}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' queries --raw '{input.raw}' {params.member} --format {params.fmt} {params.judged}"
        " --out '{output}' > {log} 2>&1"


rule qrels:
    input:
        raw=_raw("qrels"),
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/qrels-{{split}}.trec",
    params:
        member=_member("qrels"),
        fmt=_format("qrels"),
    log:
        f"{LOGS}/qrels/{{dataset}}-{{split}}.log",
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' qrels --raw '{input.raw}' {params.member} --format {params.fmt} --out '{output}'"
        " > {log} 2>&1"


rule answers:
    input:
        raw=_raw("answers"),
        queries=f"{RESULTS}/data/{{dataset}}/queries-{{split}}.parquet",
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/answers-{{split}}.parquet",
    params:
        member=_member("answers"),
        fmt=_format("answers"),
    log:
        f"{LOGS}/answers/{{dataset}}-{{split}}.log",
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' answers --raw '{input.raw}' {params.member} --format {params.fmt}"
        " --queries '{input.queries}' --out '{output}' > {log} 2>&1"


rule train_pool:
    input:
        raw=_raw("train_pool"),
        script=script("data.py"),
    output:
        f"{RESULTS}/data/{{dataset}}/train-pool.parquet",
    params:
        member=_member("train_pool"),
        fmt=_format("train_pool"),
    log:
        f"{LOGS}/train_pool/{{dataset}}.log",
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' pool --raw '{input.raw}' {params.member} --format {params.fmt} --out '{output}'"
        " > {log} 2>&1"
