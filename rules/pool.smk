# Candidate pools: human positive + hard negatives per training query, seeded order, windows, shards.


rule pool:
    input:
        pool=lambda wc: f"{PLAN.data_dir(wc.dataset)}/train-pool.parquet",
        corpus=lambda wc: f"{PLAN.data_dir(PLAN.corpus_owner(wc.dataset))}/corpus.parquet",
        script=script("annotate.py"),
    output:
        expand(f"{RESULTS}/pool/{{{{dataset}}}}/shard-{{k}}.parquet", k=range(config["annotation"]["shards"])),
    params:
        outs=lambda wc, output: " ".join(f"--out '{o}'" for o in output),
        opts=lambda wc: (
            f"--negatives {config['annotation']['negatives']} --window {config['annotation']['window']}"
            f" --overlap {config['annotation']['overlap']} --order {config['annotation']['order']}"
            f" --seed {config['seed']}"
        ),
    log:
        f"{LOGS}/pool/{{dataset}}.log",
    benchmark:
        f"{BENCH}/pool/{{dataset}}.tsv"
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    conda:
        "../envs/data.yaml"
    container:
        config["containers"]["data"]
    shell:
        "python '{input.script}' pool --input '{input.pool}' --corpus '{input.corpus}' {params.outs} {params.opts}"
        " > {log} 2>&1"
