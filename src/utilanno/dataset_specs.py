"""A dataset's raw tables as config names them: the `beir:` shortcut expanded, every table listed."""

from __future__ import annotations


def expand_beir(ds: dict) -> dict:
    """The `beir:` shortcut -> explicit corpus/queries/qrels tables of a BEIR folder in a zip."""
    if "beir" not in ds:
        return ds
    b = ds["beir"]
    folder, split = b["folder"].strip("/"), b["split"]
    out = {k: v for k, v in ds.items() if k != "beir"}
    out["corpus"] = {"source": b["source"], "member": f"{folder}/corpus.jsonl", "format": "beir-corpus"}
    out["queries"] = {
        split: {
            "source": b["source"],
            "member": f"{folder}/queries.jsonl",
            "format": "beir-queries",
            "judged_only": True,
        }
    }
    out["qrels"] = {
        split: {"source": b["source"], "member": f"{folder}/qrels/{split}.tsv", "format": "beir-qrels"}
    }
    return out


def iter_tables(dname: str, ds: dict):
    """(config key, table spec) for every raw table of a dataset, after expanding `beir:`."""
    ds = expand_beir(ds)
    if "corpus" in ds:
        yield f"datasets.{dname}.corpus", ds["corpus"]
    for kind in ("queries", "qrels", "answers"):
        for split, table in ds.get(kind, {}).items():
            yield f"datasets.{dname}.{kind}.{split}", table
    if "train_pool" in ds:
        yield f"datasets.{dname}.train_pool", ds["train_pool"]
