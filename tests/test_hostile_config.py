"""Config values never reach the shell as code: strings are quoted by Snakemake, names are restricted.

The strings below end a hand-written '...' quote, start command substitutions and chain commands. Used as
the results folder (so every input, output, log and model path), a prompt path and a source path, they must
reach the jobs literally; as a name (a key that becomes a wildcard or path part) they are rejected with the
key named. A canary file appears if any of them ever runs.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml
from conftest import REPO, TINY, snakemake

from utilanno import config as cfg
from utilanno.errors import ConfigError

pytestmark = pytest.mark.slow

CANARIES = ("CANARY1", "CANARY2", "CANARY3", "CANARY4")
HOSTILE = 'it\'s "q" $(touch CANARY1) `touch CANARY2`; touch CANARY3 && touch CANARY4 #'


def test_hostile_strings_reach_the_jobs_literally(tmp_path):
    conf = yaml.safe_load(TINY.read_text())
    conf["results"] = f"res {HOSTILE}"
    prompts = tmp_path / f"prompts {HOSTILE}"
    prompts.mkdir()
    shutil.copy2(REPO / "prompts" / "relsel.yaml", prompts / "relsel.yaml")
    conf["annotation"]["msmarco"]["prompts"] = {"relsel": str(prompts / "relsel.yaml")}
    qrels = tmp_path / f"raw {HOSTILE}" / "qrels.train.tsv"  # a local `path:` source, filled below
    conf["sources"]["msmarco-qrels-train"] = {"path": str(qrels)}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    where = ["--configfile", str(tmp_path / "tiny.yaml"), "--directory", str(tmp_path), "--cores", "2"]
    results = tmp_path / conf["results"]

    snakemake(f"{conf['results']}/tinyworld/msmarco/qrels.train.tsv", *where)
    qrels.parent.mkdir()
    shutil.copy2(results / "tinyworld/msmarco/qrels.train.tsv", qrels)
    targets = [
        # pool, model, LLM JSON, prompt
        f"{conf['results']}/annotate/msmarco/tiny-qwen2/relsel/shard-0.jsonl",
        f"{conf['results']}/data/msmarco/qrels-train.trec",  # download from the hostile `path:`
    ]
    snakemake(*targets, *where)

    for target in targets:
        assert (tmp_path / target).stat().st_size > 0, target
    assert "relsel" in (results / "logs/relsel/msmarco/tiny-qwen2/shard-0.log").read_text()
    found = [p for p in tmp_path.rglob("CANARY*")] + [p for p in REPO.glob("CANARY*")]
    assert not found, f"a config value ran as shell code: {found}"


@pytest.mark.parametrize(
    "where",
    [
        ("sources",),
        ("datasets",),
        ("llms",),
        ("backbones",),
        ("experiments",),
        ("evaluation", "groups"),
        ("evaluation", "measures"),
        ("evaluation", "encode_shards"),
        ("rag", "datasets"),
    ],
    ids=lambda w: ".".join(w),
)
def test_hostile_names_are_rejected_naming_the_key(where):
    conf = yaml.safe_load(TINY.read_text())
    node = conf
    for key in where:
        node = node.setdefault(key, {})
    value = copy.deepcopy(next(iter(node.values()))) if node else 1
    node[HOSTILE] = value
    with pytest.raises(ConfigError) as err:
        cfg.validate(conf)
    assert f"config key '{'.'.join(where)}': {HOSTILE!r} is not valid" in str(err.value)
