"""The capacity planner (utilanno.capacity, scripts/capacity.py): disk by hand, temporaries, job counts
against a dry run, and errors that name the key."""

from __future__ import annotations

import copy
import importlib.util
import json

import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO, TINY, job_counts, snakemake

from utilanno import capacity
from utilanno.errors import ConfigError

# By hand, from the published counts (BEIR paper Table 1; CQADupStack as the sum of its twelve subforums):
# passages of MS MARCO and of the fourteen BEIR corpora the paper grid evaluates on.
MSMARCO = 8_841_823
NQ_DPR = 21_015_324  # DPR's psgs_w100 (ir_datasets dpr-w100 count), App. C's corpus
BEIR = {
    "trec-covid": 171_332,
    "nfcorpus": 3_633,
    "nq": 2_681_468,
    "hotpotqa": 5_233_329,
    "fiqa": 57_638,
    "arguana": 8_674,
    "webis-touche2020": 382_545,
    "quora": 522_931,
    "dbpedia-entity": 4_635_922,
    "scidocs": 25_657,
    "fever": 5_416_568,
    "climate-fever": 5_416_593,
    "scifact": 5_183,
    "cqadupstack": 457_199,
}
DIM, FP16 = 768, 2  # RetroMAE and Contriever are BERT-base: 768-dim vectors, float16 on disk


def cli():
    """scripts/capacity.py's click command (scripts are files, not modules)."""
    spec = importlib.util.spec_from_file_location("capacity_cli", REPO / "scripts" / "capacity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def paper():
    return capacity.load_config(REPO / "config.yaml")


def paper_embeddings_by_hand(config) -> float:
    """Every experiment encodes MS MARCO (dev, DL19 and DL20 share it); the experiments without their own
    `evaluate:` list (the main tables) also encode the fourteen BEIR corpora."""
    exps = config["experiments"].values()
    full = [e for e in exps if "evaluate" not in e]
    on_msmarco = [e for e in exps if "msmarco" in e.get("evaluate", ["msmarco"])]
    on_nq = [e for e in exps if "nq" in e.get("evaluate", [])]  # Table 9's three
    beir_passages = sum(BEIR.values())
    assert 24_000_000 < beir_passages < 26_000_000  # "25M passages" of the issue
    by_hand = len(on_msmarco) * MSMARCO + len(full) * beir_passages + len(on_nq) * NQ_DPR
    return by_hand * DIM * FP16


def test_paper_grid_embedding_disk_matches_a_hand_computation(paper):
    config = copy.deepcopy(paper)
    config["evaluation"]["keep_embeddings"] = True
    est = capacity.estimate(config)
    by_hand = paper_embeddings_by_hand(config)
    # 42 x 13.6 GB (MS MARCO) + 25 x 38.4 GB (BEIR) + 3 x 32.3 GB (NQ)
    assert len(config["experiments"]) == 45 and 1.55e12 < by_hand < 1.7e12
    corpus = {r.rule: r for r in est.rows}["encode_corpus"]
    assert corpus.temp == 0
    # the planner adds the ids files (docid + newline per passage) and .npy headers: within 2%
    assert by_hand <= corpus.kept <= 1.02 * by_hand
    assert est.kept >= by_hand  # kept disk holds them


def test_without_keep_embeddings_kept_excludes_them_and_peak_holds_the_largest_set(paper):
    keep = copy.deepcopy(paper)
    keep["evaluation"]["keep_embeddings"] = True
    drop = copy.deepcopy(paper)
    drop["evaluation"]["keep_embeddings"] = False
    on, off = capacity.estimate(keep), capacity.estimate(drop)
    rows = {r.rule: r for r in off.rows}
    assert rows["encode_corpus"].kept == 0
    embeddings = rows["encode_corpus"].temp + rows["search"].temp  # corpus and query embeddings
    assert paper_embeddings_by_hand(drop) <= embeddings
    assert off.kept == pytest.approx(on.kept - embeddings, rel=1e-9)
    assert off.temp >= embeddings
    # the largest set that must exist at once: the NQ corpus's embeddings (21M passages: mining's or an NQ
    # experiment's), larger than one experiment's MS MARCO ones
    (what, largest), *_ = off.largest_temp
    assert "on nq" in what
    assert NQ_DPR * DIM * FP16 <= largest <= 1.02 * NQ_DPR * DIM * FP16
    assert off.peak == pytest.approx(off.kept + largest)
    assert off.kept < off.peak < off.kept + off.temp
    # three sets at once: the three largest
    three = capacity.estimate(drop, concurrency=3)
    sizes = sorted((b for _, b in three.temp_sets), reverse=True)[:3]
    assert three.peak == pytest.approx(three.kept + sum(sizes))
    # what the job writes but keeps either way does not change
    assert on.total("gpu_hours") == pytest.approx(off.total("gpu_hours"))


def test_tiny_plan_job_counts_match_a_dry_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no tables of an earlier run: sizes from the tiny world's parameters
    est = capacity.estimate(capacity.load_config(TINY))
    proc = snakemake("-n", "--configfile", str(TINY), "--directory", str(tmp_path), "--cores", "1")
    expected = job_counts(proc.stdout)
    expected.pop("all")
    assert est.job_counts() == expected
    assert est.total("gpu_hours") == 0  # the tiny config runs on CPU
    assert est.kept > 0 and est.total("tokens_in") > 0


def test_cli_prints_the_plan_and_json(tmp_path, monkeypatch):
    main = cli()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--configfile", str(TINY)])
    assert result.exit_code == 0, result.output
    for text in ("encode_corpus", "kept (what survives", "peak", "GPU-hours", "LLM tokens", "total"):
        assert text in result.output
    result = CliRunner().invoke(main, ["--configfile", str(TINY), "--format", "json", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["concurrency"] == 2 and len(data["largest_temporary_sets"]) == 2
    assert data["totals"]["peak_bytes"] >= data["totals"]["kept_bytes"]


def test_a_config_without_datasets_overrides_the_paper_grid(tmp_path):
    over = tmp_path / "over.yaml"
    over.write_text("evaluation: {keep_embeddings: true}\nannotation: {msmarco: {shards: 8}}\n")
    config = capacity.load_config(over)
    assert config["evaluation"]["keep_embeddings"] is True and config["annotation"]["msmarco"]["shards"] == 8
    assert len(config["experiments"]) == 45  # the rest is the paper grid, as the Snakefile merges it


def test_sizes_come_from_tables_already_built(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = capacity.load_config(TINY)
    folder = tmp_path / config["results"] / "data" / "beir-scifact"
    folder.mkdir(parents=True)
    pl.DataFrame({"docid": [f"d{i}" for i in range(1234)], "title": "", "text": "x"}).write_parquet(
        folder / "corpus.parquet"
    )
    est = capacity.estimate(config)
    assert est.sizes["beir-scifact"].passages == 1234
    assert "tables under" in est.sizes["beir-scifact"].source


def test_missing_rates_file_names_it(tmp_path):
    main = cli()
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="rates file '.*nope.yaml' not found"):
        capacity.load_rates(missing)
    result = CliRunner().invoke(main, ["--configfile", str(TINY), "--rates", str(missing)])
    assert result.exit_code == 1
    assert "nope.yaml' not found" in result.output


def test_rates_file_missing_a_key_names_it(tmp_path):
    rates = yaml.safe_load(capacity.DEFAULT_RATES.read_text())
    del rates["gpu"]["peak_tflops"]
    rates["utilisation"]["train"] = "fast"
    path = tmp_path / "rates.yaml"
    path.write_text(yaml.safe_dump(rates))
    with pytest.raises(ConfigError, match="missing key 'gpu.peak_tflops'"):
        capacity.load_rates(path)
    rates["gpu"]["peak_tflops"] = 100
    path.write_text(yaml.safe_dump(rates))
    with pytest.raises(ConfigError, match="key 'utilisation.train' must be a number"):
        capacity.load_rates(path)


def test_unknown_dataset_without_size_names_the_key(paper, tmp_path):
    config = copy.deepcopy(paper)
    config["sources"]["my-corpus"] = {"url": "https://example.org/my.tsv"}
    config["datasets"]["mycorpus"] = {
        "corpus": {"source": "my-corpus", "format": "msmarco-tsv"},
        "queries": {"test": {"source": "my-corpus", "format": "msmarco-tsv"}},
    }
    with pytest.raises(ConfigError, match=r"config key 'datasets\.mycorpus': no size known for passages"):
        capacity.estimate(config)
    # a --sizes file fills it in
    sizes = tmp_path / "sizes.yaml"
    sizes.write_text(yaml.safe_dump({"datasets": {"mycorpus": {"passages": 1000, "queries": {"test": 10}}}}))
    est = capacity.estimate(config, sizes=capacity.load_sizes([sizes]))
    assert est.sizes["mycorpus"].passages == 1000 and "--sizes" in est.sizes["mycorpus"].source


def test_unknown_model_names_the_key(paper):
    config = copy.deepcopy(paper)
    config["backbones"]["retromae"]["model"] = "someone/unknown-encoder"
    with pytest.raises(
        ConfigError, match=r"config key 'backbones\.retromae\.model'.*someone/unknown-encoder"
    ):
        capacity.estimate(config)


def test_paper_calibration_is_reported(paper):
    est = capacity.estimate(paper)
    names = [c["name"] for c in est.calibration]
    assert any("UtilSel" in n for n in names) and any("REPLUG" in n for n in names)
    for c in est.calibration:  # the assumed utilisations land near the paper's GPU-hours
        assert 0.5 < c["ratio"] < 2.0


@pytest.mark.slow
def test_judge_tokens_per_window_track_the_annotations_as_in_a_tiny_run(tiny_work, monkeypatch):
    """The Hybrid Test's judge sees a window of the pool with a reference answer, as RelSel sees a window of
    the annotation pool. The tiny world's made-up words tokenize into more tokens per character than the
    planner's English rate, so absolute counts differ; the judge-to-RelSel ratio of prompt tokens per window
    must not: the planner's (an upper bound: it assumes the pooled retrievers share no passage) is at least
    the measured one and within 30% of it."""
    monkeypatch.chdir(tiny_work)
    msmarco_only = capacity.load_config(tiny_work / "tiny.yaml")  # RelSel's row sums runs: MS MARCO's alone
    del msmarco_only["annotation"]["own"], msmarco_only["experiments"]["tiny-own-relsel"]
    est = capacity.estimate(msmarco_only)
    rows = {r.rule: r for r in est.rows}
    results = tiny_work / "results-tiny"
    judged = [json.loads(line) for line in (results / "hybrid/tiny-bert/judge/shard-0.jsonl").open()]
    relsel = json.loads((results / "annotate/msmarco/tiny-qwen2/relsel/stats.json").read_text())
    windows = sum(len(r["windows"]) for r in judged)
    measured = (sum(r["prompt_tokens"] for r in judged) / windows) / (
        relsel["prompt_tokens"] / sum(relsel["statuses"].values())
    )
    cfg = capacity.load_config(tiny_work / "tiny.yaml")
    planned_windows = cfg["hybrid"]["queries"] * 2  # 4 retrievers x depth 5 = 20 passages: windows of 16, 5
    assert windows == planned_windows  # the tiny retrievers disagree enough to fill both windows
    relsel_windows = cfg["tiny_world"]["train_queries"] * 2  # 31 passages: windows of 16, 16
    planned = (rows["hybrid_judge"].tokens_in / planned_windows) / (
        rows["annotate:relsel"].tokens_in / relsel_windows
    )
    assert measured <= planned <= 1.3 * measured, (planned, measured)
    assert rows["hybrid_judge"].jobs == cfg["hybrid"]["shards"]
