"""Dense search: faiss equals numpy brute force, sharded equals one shard, ties break by docid."""

from __future__ import annotations

import numpy as np
import pytest

from utilanno.evaluate import dense as index

pytest.importorskip("faiss")


def brute_force(q, p, ids, depth):
    s = q.astype(np.float32) @ p.astype(np.float32).T
    rows = []
    for i in range(len(q)):
        order = sorted(range(len(ids)), key=lambda j: (-s[i, j], ids[j]))[:depth]
        rows += [(f"q{i}", ids[j], s[i, j]) for j in order]
    return rows


def write(tmp_path, name, emb, ids):
    index.save_embeddings(emb, ids, tmp_path / f"{name}.npy", tmp_path / f"{name}.ids")
    return tmp_path / f"{name}.npy", tmp_path / f"{name}.ids"


@pytest.mark.parametrize("shards", [1, 3, 201])
def test_search_equals_numpy_brute_force(tmp_path, shards):
    rng = np.random.default_rng(0)
    p = rng.normal(size=(200, 16)).astype(np.float16)
    q = rng.normal(size=(7, 16)).astype(np.float16)
    ids = [f"d{i:03d}" for i in range(200)]
    parts = []
    for k in range(shards):
        a, b = index.shard_rows(200, k, shards)
        parts.append(write(tmp_path, f"p{k}", p[a:b], ids[a:b]))
    qn, qi = write(tmp_path, "q", q, [f"q{i}" for i in range(7)])
    got = index.search(parts, qn, qi, depth=10)
    want = brute_force(q, p, ids, 10)
    assert got["qid"].to_list() == [r[0] for r in want]
    assert got["docid"].to_list() == [r[1] for r in want]
    assert got["score"].to_numpy() == pytest.approx(np.array([r[2] for r in want]), rel=1e-5)


def test_ties_break_by_docid_whichever_shard_holds_them(tmp_path):
    p = np.ones((6, 4), dtype=np.float16)
    ids = ["e", "b", "f", "a", "d", "c"]
    parts = [write(tmp_path, "p0", p[:3], ids[:3]), write(tmp_path, "p1", p[3:], ids[3:])]
    qn, qi = write(tmp_path, "q", np.ones((1, 4), dtype=np.float16), ["q"])
    got = index.search(parts, qn, qi, depth=4)
    assert got["docid"].to_list() == ["a", "b", "c", "d"]


def test_depth_larger_than_corpus_and_approximate_factory(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.normal(size=(50, 8)).astype(np.float16)
    parts = [write(tmp_path, "p", p, [str(i) for i in range(50)])]
    qn, qi = write(tmp_path, "q", p[:3], ["a", "b", "c"])
    got = index.search(parts, qn, qi, depth=100)
    assert got.group_by("qid").len()["len"].to_list() == [50, 50, 50]
    hnsw = index.search(parts, qn, qi, depth=5, factory="HNSW16")
    assert hnsw.height == 15


def test_shard_rows_cover_the_corpus_once():
    for n in (0, 1, 7, 100):
        for shards in (1, 3, 8):
            ranges = [index.shard_rows(n, k, shards) for k in range(shards)]
            assert [r for a, b in ranges for r in range(a, b)] == list(range(n))
    with pytest.raises(ValueError, match="not in 0..2"):
        index.shard_rows(10, 3, 3)


def test_mismatched_ids_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2), dtype=np.float16))
    (tmp_path / "x.ids").write_text("a\nb\n")
    with pytest.raises(ValueError, match="do not match the 2 ids"):
        index.load_embeddings(tmp_path / "x.npy", tmp_path / "x.ids")


def test_beir_self_hit_is_skipped_and_depth_others_remain(tmp_path):
    """BEIR (exact_search.py): fetch depth + 1, skip the passage whose id is the query's, keep `depth`."""
    rng = np.random.default_rng(2)
    p = rng.normal(size=(40, 8)).astype(np.float16)
    ids = [f"d{i:02d}" for i in range(40)]
    parts = [write(tmp_path, "p0", p[:25], ids[:25]), write(tmp_path, "p1", p[25:], ids[25:])]
    # query d30 is passage d30 itself (its own top hit); query x is not in the corpus
    qn, qi = write(tmp_path, "q", np.stack([p[30], p[3]]), ["d30", "x"])
    want = {q: [r[1] for r in brute_force(v[None], p, ids, 6)] for q, v in (("d30", p[30]), ("x", p[3]))}
    assert want["d30"][0] == "d30"
    got = index.search(parts, qn, qi, depth=5, drop_self_hits=True)
    by_q = {q: got.filter(got["qid"] == q)["docid"].to_list() for q in ("d30", "x")}
    assert by_q["d30"] == want["d30"][1:6]  # five others: the sixth-best passage moves up
    assert by_q["x"] == want["x"][:5]
    assert got.filter(got["qid"] == "d30")["score"].to_list() == sorted(
        got.filter(got["qid"] == "d30")["score"].to_list(), reverse=True
    )
