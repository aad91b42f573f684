"""The config schema: the paper grid and the tiny config validate; mistakes fail early, naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from utilanno import config as cfg
from utilanno.errors import ConfigError
from utilanno.plan import Plan

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config.yaml"
TINY = REPO / "tests" / "config" / "tiny.yaml"


def raw(path=TINY) -> dict:
    return yaml.safe_load(path.read_text())


def test_paper_grid_validates_and_covers_the_paper():
    c = cfg.load(PAPER)
    assert (
        len(c["sources"]) == 30
    )  # + QnA train answers for REPLUG, + the titled passages, + DPR's 3 NQ files
    beir = [d for d in c["datasets"] if d.startswith("beir-")]
    assert len([d for d in beir if "cqadupstack" not in d]) == 13
    assert len([d for d in beir if "cqadupstack" in d]) == 12
    assert set(c["evaluation"]["groups"]["cqadupstack"]) == {d for d in beir if "cqadupstack" in d}
    # the BEIR average: 14 datasets, CQADupStack counted once; evaluated as 25 datasets, inner group first
    assert len(c["evaluation"]["groups"]["beir"]) == 14 and "cqadupstack" in c["evaluation"]["groups"]["beir"]
    plan = Plan(c)
    assert list(plan.eval_groups("bm25")) == ["cqadupstack", "beir"]
    hybrid = {"msmarco-hybrid-retromae"}  # the Hybrid Test's set of its backbone
    assert set(plan.eval_datasets("retromae-human")) == {"msmarco", "dl19", "dl20", *beir, *hybrid}
    assert list(plan.eval_groups("retromae-relsel")) == []
    exps = c["experiments"]
    for bb in ("retromae", "contriever"):  # Tables 2, 3 and 12
        for name in (
            "human",
            "replug",
            "utilsel",
            "utilrank",
            "utilsel-cl20",
            "utilrank-cl100",
            "replug-cl20",
        ):
            assert f"{bb}-{name}" in exps
    assert exps["retromae-utilsel"]["sampling"] == "pos_all" and exps["retromae-utilsel"]["loss"] == "summarg"
    assert exps["retromae-utilsel-cl20"]["curriculum"] == {"epochs": 1, "stage1_sampling": "pos_one"}
    assert {e["labels"] for e in exps.values()} >= {f"utilrank@{k}" for k in (10, 20, 30, 40, 50)}
    assert list(c["annotation"]) == ["msmarco", "nq", "nq-dpr"]  # App. C: NQ mined + DPR's own pools
    assert c["annotation"]["msmarco"]["negatives"] == 30 and c["annotation"]["msmarco"]["window"] == 16
    assert c["training"]["learning_rate"] == 3e-5 and c["training"]["epochs"] == 2


def test_tiny_config_validates():
    c = cfg.load(TINY)
    assert c["tiny_world"]["beir"] == ["scifact", "nq", "hotpotqa", "cqadupstack"]


def test_defaults_are_filled():
    c = cfg.validate(
        {
            "sources": {"s": {"url": "https://x.org/a.tsv"}},
            "datasets": {
                "d": {
                    "corpus": {"source": "s", "format": "msmarco-tsv"},
                    "train_pool": {"source": "s", "format": "tevatron"},
                }
            },
            "annotation": {"main": {"annotator": "m", "dataset": "d"}},
            "llms": {"m": {"model": "x"}},
        }
    )
    assert c["results"] == "results" and c["seed"] == 42
    assert c["training"]["passage_max_len"] == 140
    assert c["llms"]["m"]["sampling"]["temperature"] == 0.0
    run = c["annotation"]["main"]
    assert run["prompts"]["utilsel"] == "prompts/utilsel.yaml"
    assert run["pool_source"] == "train_pool" and run["steps"] == [
        "relsel",
        "pseudo_answer",
        "utilsel",
        "utilrank",
    ]


def _walk(schema, path="", required=()):
    """Every property in the schema, with whether its parent lists it as required."""
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}.{key}".lstrip("."), sub, key in schema.get("required", ())
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")
    for name, sub in schema.get("$defs", {}).items():
        yield from _walk(sub, f"$defs.{name}")


def test_every_key_has_a_description_and_a_default_unless_required():
    """A key without a default is required, or says why not (x-no-default)."""
    schema = cfg.load_schema()
    missing = []
    for key, sub, required in _walk(schema):
        if not sub.get("description"):
            missing.append(f"{key}: no description")
        if not required and "default" not in sub and "x-no-default" not in sub:
            missing.append(f"{key}: no default")
    assert not missing, "\n".join(missing)


def mistake(mutate):
    c = raw()
    mutate(c)
    with pytest.raises(ConfigError) as err:
        cfg.validate(c)
    return str(err.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(resluts="x"), "unknown key 'resluts' (did you mean 'results'?)"),
        (
            lambda c: c["training"].update(learning_rate="fast"),
            "'training.learning_rate': expected a number, got str",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(order="random"),
            "'annotation.msmarco.order': expected one of ['shuffle', 'positive_first']",
        ),
        (
            lambda c: c["experiments"]["tiny-human"].pop("loss"),
            "'experiments.tiny-human': missing required key(s) 'loss'",
        ),
        (
            lambda c: c["sources"]["beir-nq"].update(md5="abc"),
            "'sources.beir-nq.md5': 'abc' is not valid; expected 32 lower-case hex",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(shards=0),
            "'annotation.msmarco.shards': expected a value >= 1, got 0",
        ),
        (
            lambda c: c["experiments"]["tiny-human"].update(backbone="bert"),
            "'experiments.tiny-human.backbone': 'bert' is not defined in 'backbones'",
        ),
        (
            lambda c: c["datasets"]["msmarco"]["qrels"]["dev"].update(source="msmarco-qrels-dev"),
            "'datasets.msmarco.qrels.dev.source': 'msmarco-qrels-dev' is not defined in 'sources'",
        ),
        (
            lambda c: c["sources"]["beir-nq"].update(url="https://x.org/nq.zip"),
            "'sources.beir-nq': give exactly one of 'url' or 'path'",
        ),
        (
            lambda c: c["experiments"]["tiny-utilrank"].update(labels="utilrank@0"),
            "'experiments.tiny-utilrank.labels': 'utilrank@0' is not valid",
        ),
        (
            lambda c: c["datasets"]["msmarco"]["corpus"].update(fromat="x"),
            "unknown key 'datasets.msmarco.corpus.fromat' (did you mean 'format'?)",
        ),
        (
            lambda c: c["datasets"]["dl19"]["corpus"].update(dataset="dl19"),
            "a dataset cannot take its corpus from itself",
        ),
        (
            lambda c: c["evaluation"]["datasets"].append("beir-fiqa"),
            "'evaluation.datasets.4': 'beir-fiqa' is not defined in 'datasets'",
        ),
        (
            lambda c: c["sources"].update(x={"url": "ftp://x.org/a"}),
            "'sources.x.url': 'ftp://x.org/a' is not valid",
        ),
        (
            lambda c: c["rag"]["generators"].append("gpt4"),
            "'rag.generators.1': 'gpt4' is not defined in 'llms'",
        ),
        (
            lambda c: c["rag"]["datasets"].update({"beir-scifact": {"split": "test"}}),
            "'rag.datasets.beir-scifact.split': dataset 'beir-scifact' has no answers for split 'test'",
        ),
        (
            lambda c: c["rag"]["datasets"]["beir-nq"].update(top_k=500),
            "'rag.datasets.beir-nq.top_k': 500 passages, but runs hold only the top evaluation.depth = 100",
        ),
        (
            lambda c: c["rag"]["datasets"]["msmarco"].update(split="train"),
            "RAG reads the retriever's runs, which hold the evaluation split ['dev'], not 'train'",
        ),
        (
            lambda c: c["evaluation"].update(datasets=["msmarco"]),
            "'rag.datasets.beir-nq': RAG reads the retrieval runs of 'beir-nq', which is not evaluated",
        ),
        (
            lambda c: c["rag"]["datasets"]["msmarco"].update(metrics="bleu"),
            "'rag.datasets.msmarco.metrics': expected one of ['em_f1', 'rouge_bleu']",
        ),
        (
            lambda c: c["rag"]["datasets"]["msmarco-top3"].update(dataset="msmarc"),
            "'rag.datasets.msmarco-top3.dataset': 'msmarc' is not defined in 'datasets' (did you mean",
        ),
        (
            lambda c: c["experiments"].update(bm25=c["experiments"]["tiny-human"]),
            "config key 'experiments.bm25': the name is reserved",
        ),
        (
            lambda c: c["experiments"].update({"x-stage1": c["experiments"]["tiny-human"]}),
            "config key 'experiments.x-stage1': the name is reserved",
        ),
        (lambda c: c["training"].update(gpus=1.5), "'training.gpus': expected an integer, got float 1.5"),
        # a float that looks like a count still fails here, not in the job's int option
        (lambda c: c["training"].update(gpus=2.0), "'training.gpus': expected an integer, got float 2.0"),
        (
            lambda c: c["annotation"]["msmarco"].update(shards=True),
            "'annotation.msmarco.shards': expected an integer, got bool",
        ),
        (
            lambda c: c["evaluation"]["measures"].update(msmarco=["RR@10", "MRR@10x"]),
            "'evaluation.measures.msmarco.1': 'MRR@10x' is not an ir_measures measure",
        ),
        (
            lambda c: c["evaluation"]["measures"].update(msmarco=["nDCG@"]),
            "'evaluation.measures.msmarco.0': 'nDCG@' is not an ir_measures measure",
        ),
        (
            lambda c: c["evaluation"]["measures"].update(msmarc=["RR@10"]),
            "'evaluation.measures.msmarc': 'msmarc' is not defined in 'datasets'",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(dataset="dl19"),
            "'annotation.msmarco.pool_source': dataset 'dl19' has no 'train_pool' to take candidates from",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(pool_source="mine"),
            "'annotation.msmarco.pool_source': dataset 'msmarco' has no 'mine' to take candidates from",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(steps=["relsel", "utilsel"]),
            "'annotation.msmarco.steps': utilsel reads pseudo_answer, which must be listed",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(steps=["relsel", "pseudo_answer", "utilsel"]),
            "'experiments.tiny-utilrank.labels': 'utilrank@10' needs the utilrank step, which its"
            " annotation run",
        ),
        (
            lambda c: c["annotation"]["msmarco"].update(annotator=None),
            "'experiments.tiny-utilsel.annotator': labels 'utilsel' need an annotator, and the run has none",
        ),
        (
            lambda c: c["experiments"]["tiny-human"].pop("annotation"),
            "'experiments.tiny-human.annotation': the config has several annotation runs (msmarco, own);"
            " name one",
        ),
        (
            lambda c: c["experiments"]["tiny-human"].update(annotation="msmarc"),
            "'experiments.tiny-human.annotation': 'msmarc' is not defined in 'annotation' (did you mean"
            " 'msmarco'?)",
        ),
        (
            lambda c: c["datasets"]["own"]["mine"].update(dense=["tiny-utilsl"]),
            "'datasets.own.mine.dense.0': 'tiny-utilsl' is neither an experiment nor a backbone (did you mean"
            " 'tiny-utilsel'?)",
        ),
        (
            lambda c: c["datasets"]["own"]["mine"].update(dense=["tiny-own-relsel"]),
            "'datasets.own.mine.dense.0': experiment 'tiny-own-relsel' trains on the candidates it would"
            " mine (annotation run 'own'): a cycle",
        ),
        (
            lambda c: (
                c["datasets"]["own"]["mine"].update(dense=["tiny-utilsel"]),
                c["backbones"].update({"tiny-utilsel": {"model": "x/y"}}),
            ),
            "'datasets.own.mine.dense.0': 'tiny-utilsel' names both an experiment and a backbone",
        ),
        (
            lambda c: c["datasets"]["own"].pop("qrels"),
            "'evaluation.measures.own': nDCG@10, R@20 need qrels, and 'own' is evaluated on a split with gold"
            " answers only",
        ),
        (
            lambda c: c["experiments"]["tiny-human"].update(recipe="retromea"),
            "'experiments.tiny-human.recipe': 'retromea' is not defined in 'training.recipes' (did you mean"
            " 'retromae'?)",
        ),
        (
            lambda c: c["training"].update(recipes={"nq": {"lerning_rate": 1e-5}}),
            "unknown key 'training.recipes.nq.lerning_rate' (did you mean 'learning_rate'?)",
        ),
        (
            lambda c: c["annotation"].update({"bad/run": {}}),
            "'annotation': 'bad/run' is not valid",
        ),
        (
            lambda c: c["evaluation"]["groups"].update(dl19=["dl20"]),
            "'evaluation.groups.dl19': a group cannot share its name with a dataset",
        ),
        (
            lambda c: c["evaluation"]["groups"].update(outer=["inner", "msmarco"], inner=["dl19", "outer"]),
            "'evaluation.groups.inner': contains itself via inner -> outer -> inner",
        ),
        (
            lambda c: c["evaluation"].update(encoding={"datasets": {"dl19": {"passage_max_len": 256}}}),
            "'evaluation.encoding.datasets.dl19.passage_max_len': dl19 searches the corpus of msmarco",
        ),
        (
            lambda c: c["evaluation"].update(encoding={"datasets": {"beir-nope": {"query_max_len": 64}}}),
            "'evaluation.encoding.datasets.beir-nope': 'beir-nope' is not defined in 'datasets'",
        ),
        (
            lambda c: c["evaluation"].update(encoding={"beir": {"passage_text": "title"}}),
            "'evaluation.encoding.beir.passage_text'",
        ),
        (
            lambda c: c["datasets"]["msmarco"]["corpus"].update(format="beir-corpus"),
            "'datasets.msmarco.corpus.titles': titles join an msmarco-tsv corpus only",
        ),
        (
            lambda c: c["rag"].update(bertscore_layer=None),
            "'rag.bertscore_layer': set the layer BERTScore compares, or rag.bertscore_model_type",
        ),
        (
            lambda c: c["rag"].update(bertscore_rescale_with_baseline=True),
            "'rag.bertscore_rescale_with_baseline': needs rag.bertscore_model_type",
        ),
        (
            lambda c: c["evaluation"]["measures"].update(dl19=["nDCG@10", "Top20"]),
            "'evaluation.measures.dl19': Top20 (top-k answer accuracy) needs gold answers",
        ),
        (lambda c: c["hybrid"].update(judge="gpt-5"), "'hybrid.judge': 'gpt-5' is not defined in 'llms'"),
        (
            lambda c: c["hybrid"]["pools"].update(contriever=["tiny-human"]),
            "'hybrid.pools.contriever': a pool is named by its backbone",
        ),
        (
            lambda c: c["hybrid"]["pools"]["tiny-bert"].append("tiny-nope"),
            "'hybrid.pools.tiny-bert.4': 'tiny-nope' is not defined in 'experiments'",
        ),
        (
            lambda c: c["experiments"]["tiny-human"].update(evaluate=["dl19"]),
            "'hybrid.pools.tiny-bert.0': tiny-human is not evaluated on msmarco (no dev run to pool)",
        ),
        (lambda c: c["hybrid"].update(dataset="dl19"), "'hybrid.dataset': dl19 has no QA answers"),
        (
            lambda c: c["training"].update(gpus=3, global_batch=128),
            "'training.global_batch': 128 queries do not split evenly over training.gpus = 3 processes",
        ),
        (lambda c: c["training"].update(mini_batch=0), "'training.mini_batch': expected a value >= 1, got 0"),
        (lambda c: c["hybrid"].update(overlap=16), "'hybrid.overlap': 16 must be smaller than hybrid.window"),
        (
            lambda c: c["hybrid"].update(measures=["RR@10", "MRR@ten"]),
            "'hybrid.measures.1': 'MRR@ten' is not an ir_measures measure",
        ),
        (
            lambda c: c["evaluation"]["groups"].update(pair=["dl19", "dl19"]),
            "'evaluation.groups.pair': a member is listed twice",
        ),
        (
            lambda c: c["evaluation"]["groups"].update(pair=["dl19", "nosuch"]),
            "'evaluation.groups.pair.1': 'nosuch' is not defined in 'datasets'",
        ),
        (
            lambda c: c["backbones"]["tiny-bert"].update(model="/no/such/model/folder"),
            "'backbones.tiny-bert.model': model folder '/no/such/model/folder' does not exist",
        ),
        (
            lambda c: c["llms"]["tiny-qwen2"].update(model="{results}/models/tiny-gpt"),
            "'llms.tiny-qwen2.model': '{results}/models/tiny-gpt' is under the built models, but the",
        ),
        (
            lambda c: c["datasets"].update({"bad name": {"beir": {"source": "beir-nq", "folder": "nq"}}}),
            "'datasets': 'bad name'",
        ),
        (
            lambda c: c["llms"]["tiny-qwen2"].update(engine="llamacpp"),
            "'llms.tiny-qwen2.engine': expected one of ['vllm', 'transformers', 'openai']",
        ),
        (
            lambda c: c["datasets"]["dl19"].update(corpus={"source": "dl19-qrels"}),
            "'datasets.dl19.corpus': missing required key 'format'",
        ),
        (
            lambda c: c["report"]["stand_ins"].update({"tiny-bret": "retromae"}),
            "'report.stand_ins.tiny-bret': 'tiny-bret' is no backbone, LLM, dataset or RAG set here",
        ),
        (
            lambda c: c["report"]["stand_ins"].update({"tiny-bert": "retro mae"}),
            "'report.stand_ins.tiny-bert'",
        ),
        (lambda c: c["report"].update(gpu_price_per_hour=-1), "'report.gpu_price_per_hour'"),
        (
            lambda c: c["datasets"]["beir-scifact"].update(mine={"split": "dev"}),
            "'datasets.beir-scifact.mine.split': beir-scifact has no queries for split 'dev'",
        ),
        (
            lambda c: c["datasets"]["beir-scifact"].update(
                mine={"split": "test", "candidates": 50, "depth": 20}
            ),
            "'datasets.beir-scifact.mine.depth': must be at least candidates (50)",
        ),
        (
            lambda c: (
                c["datasets"]["beir-scifact"].update(mine={"split": "test"}),
                c["annotation"]["msmarco"].update(dataset="beir-scifact", pool_source="mine"),
            ),
            "'experiments.tiny-human.labels': its annotation run 'msmarco' annotates mined candidates,"
            " which have no human labels",
        ),
        (
            lambda c: (
                c["datasets"]["beir-scifact"].update(mine={"split": "test"}),
                c["annotation"]["msmarco"].update(dataset="beir-scifact", pool_source="mine"),
            ),
            "'experiments.tiny-utilsel-cl50.human_fraction': its annotation run 'msmarco' annotates mined",
        ),
    ],
)
def test_mistakes_name_the_key_and_what_was_expected(mutate, expected):
    assert expected in mistake(mutate)


def test_all_problems_are_reported_at_once():
    def two(c):
        c["training"]["epochs"] = "two"
        c["annotation"]["msmarco"]["window"] = 1

    msg = mistake(two)
    assert "2 problem(s)" in msg and "training.epochs" in msg and "annotation.msmarco.window" in msg


def test_the_single_annotation_block_of_old_configs_gets_a_migration_hint():
    msg = mistake(lambda c: c.update(annotation={"dataset": "msmarco", "annotator": "tiny-qwen2"}))
    assert "config key 'annotation': holds named annotation runs now" in msg and "msmarco: {dataset:" in msg


def test_load_rejects_non_mapping_and_bad_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        cfg.load(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg.load(tmp_path / "bad.yaml")


def test_a_named_recipe_overrides_only_its_keys_and_only_for_its_experiments():
    c = raw()
    c["training"]["recipes"] = {
        "nq": {"learning_rate": 1e-5, "epochs": 40, "group_size": 8, "passage_max_len": 156}  # App. C
    }
    c["experiments"]["tiny-utilsel"]["recipe"] = "nq"
    jobs = Plan(cfg.validate(c)).trainings()
    nq, paper = jobs["tiny-utilsel"]["settings"], jobs["tiny-human"]["settings"]
    assert (nq["learning_rate"], nq["epochs"], nq["group_size"], nq["passage_max_len"]) == (1e-5, 40, 8, 156)
    assert (paper["learning_rate"], paper["epochs"], paper["group_size"], paper["passage_max_len"]) == (
        1e-4,
        2,
        8,
        64,
    )  # tests/config/tiny.yaml's training
    assert nq["query_max_len"] == paper["query_max_len"] == 16  # not in the recipe: training's


def test_validation_does_not_alias_defaults():
    a = cfg.validate(copy.deepcopy(raw()))
    b = cfg.validate(copy.deepcopy(raw()))
    a["training"]["recipes"]["retromae"]["epochs"] = 99
    assert b["training"]["recipes"]["retromae"]["epochs"] == 4


def test_plan_paths():
    plan = Plan(cfg.load(TINY))
    assert plan.downloads == "results-tiny/downloads"
    assert plan.source_file("beir-nq") == "results-tiny/downloads/beir-nq/nq.zip"
    assert plan.corpus_owner("dl19") == "msmarco"
    targets = plan.data_targets()
    assert "results-tiny/data/dl19/qrels-test.trec" in targets
    assert "results-tiny/data/dl19/corpus.parquet" not in targets  # shares MS MARCO's
    assert "results-tiny/data/beir-nq/answers-test.parquet" in targets
    paper = Plan(cfg.load(PAPER))
    assert paper.source_filename("tevatron-msmarco-train") == "train-tevatron.jsonl"
    assert paper.source_file("dl19-qrels") == "downloads/dl19-qrels/2019qrels-pass.txt"
    assert paper.table("beir-cqadupstack-tex", "qrels", "test")["member"] == "cqadupstack/tex/qrels/test.tsv"


def test_a_hub_id_is_not_mistaken_for_a_missing_folder():
    c = raw()
    c["backbones"]["tiny-bert"]["model"] = "facebook/contriever"
    c["llms"]["tiny-qwen2"]["model"] = "gpt2"
    cfg.validate(c)


def test_late_errors_stop_the_dry_run_before_any_job(tmp_path):
    """What common.smk does with a config error: snakemake -n fails, naming the key, and schedules nothing."""
    from conftest import snakemake

    c = raw()
    c["evaluation"]["measures"]["msmarco"] = ["RR@10", "nDCG@cut"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(c))
    proc = snakemake(
        "-n", "--configfile", str(tmp_path / "bad.yaml"), "--directory", str(tmp_path), check=False
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key 'evaluation.measures.msmarco.1': 'nDCG@cut' is not an ir_measures measure" in out
    assert "Job stats" not in out


def test_evaluation_encodes_as_the_authors_did():
    """MS MARCO dev and TREC DL at the training lengths (run.sh); BEIR at 512 with `title text` (RetroMAE's
    BEIR script through BEIR's SentenceBERT); overrides per dataset, passage keys from the corpus owner."""
    c = raw(PAPER)
    c["evaluation"]["encoding"] = {
        "datasets": {"msmarco": {"passage_max_len": 200}, "dl20": {"query_max_len": 64}}
    }
    c["evaluation"]["encoding"]["datasets"]["beir-arguana"] = {"query_max_len": 300}
    plan = Plan(cfg.validate(c))
    train = {"query_max_len": None, "passage_max_len": None, "passage_text": "sep"}
    assert Plan(cfg.load(PAPER)).encoding("msmarco") == train
    assert plan.encoding("dl19") == {**train, "passage_max_len": 200}
    assert plan.encoding("dl20") == {**train, "query_max_len": 64, "passage_max_len": 200}
    beir = {"query_max_len": 512, "passage_max_len": 512, "passage_text": "space"}
    assert plan.encoding("beir-scifact") == beir
    assert plan.encoding("beir-arguana") == {**beir, "query_max_len": 300}
