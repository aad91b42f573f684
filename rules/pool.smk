# Candidate pools: human positive + hard negatives per training query, seeded order, windows, shards.


rule pool:
    input:
        pool=lambda wc: f"{PLAN.data_dir(wc.dataset)}/train-pool.parquet",
        corpus=lambda wc: f"{PLAN.data_dir(PLAN.corpus_owner(wc.dataset))}/corpus.parquet",
        script=script("annotate.py"),
    output:
        expand(f"{RESULTS}/pool/{{{{dataset}}}}/shard-{{k}}.parquet", k=range(config["annotation"]["shards"])),
    log:
        f"{LOGS}/pool/{{dataset}}.log",
    benchmark:
        f"{BENCH}/pool/{{dataset}}.tsv"
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        outs=lambda wc, output: cli(out=list(output)),
        opts=cli(
            **{k: config["annotation"][k] for k in ("negatives", "window", "overlap", "order")},
            seed=config["seed"],
        ),
    shell:
        "python {input.script:q} pool --input {input.pool:q} --corpus {input.corpus:q} {params.outs:q} {params.opts:q}"
        " > {log:q} 2>&1"
