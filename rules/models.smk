# Models the workflow builds itself: tiny random models for tests and the tiny config, and the real small
# models exported from registry packages. Config entries point at them as "{results}/models/<name>".

MODEL_BUILDERS = PLAN.MODEL_BUILDERS  # folder name -> scripts/models.py command


localrules:
    build_model,


rule build_model:
    input:
        script=script("models.py"),
    output:
        directory(f"{RESULTS}/models/{{model}}"),
    log:
        f"{LOGS}/build_model/{{model}}.log",
    wildcard_constraints:
        model="|".join(MODEL_BUILDERS),
    conda:
        "../envs/llm.yaml"
    container:
        config["containers"]["llm"]
    params:
        builder=lambda wc: MODEL_BUILDERS[wc.model],
    shell:
        "python {input.script:q} {params.builder:q} {output:q} > {log:q} 2>&1"
