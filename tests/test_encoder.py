"""Batched encoding must equal encoding each text alone: the length batching only changes the padding."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from utilanno.testing import tinymodels  # noqa: E402
from utilanno.train.encoder import Encoder, encode, pad  # noqa: E402

torch.set_num_threads(1)

WORDS = "quokka retriever passage utility zygomorphic borogove annotation reykjavik tokyo relevance".split()


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    # character length and token length disagree on purpose: long words vs many short ones
    return [" ".join(rng.choice(WORDS + ["a", "b", "of"], size=rng.integers(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tinymodels.build_tiny_bert(tmp_path_factory.mktemp("bert") / "model", vocab_corpus=WORDS)


def one_by_one(enc: Encoder, items: list[str], max_len: int) -> np.ndarray:
    with torch.no_grad():
        return np.stack([enc.embed(enc.tokenize([t], max_len))[0].numpy() for t in items])


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_batched_encoding_equals_each_text_alone(bert_dir, pooling):
    enc = Encoder(bert_dir, pooling=pooling)
    items = texts(53)
    # 53 texts, batches of 4, chunks of 3 batches: partial batches and a partial last chunk
    got = encode(enc, items, max_len=24, batch_size=4, chunk_batches=3)
    want = one_by_one(enc, items, 24)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_truncation_and_input_order_are_kept(bert_dir):
    enc = Encoder(bert_dir, pooling="mean")
    items = texts(20, seed=1) + [" ".join(["quokka"] * 100)]
    got = encode(enc, items, max_len=8, batch_size=5)
    np.testing.assert_allclose(got, one_by_one(enc, items, 8), atol=2e-5)
    # the 100-word text was cut at 8 tokens: identical to its own 8-token prefix
    prefix = one_by_one(enc, [" ".join(["quokka"] * 6)], 8)
    np.testing.assert_allclose(got[-1], prefix[0], atol=2e-5)


def test_empty_input_gives_an_empty_matrix(bert_dir):
    enc = Encoder(bert_dir)
    assert encode(enc, [], max_len=8, batch_size=4).shape == (0, enc.model.config.hidden_size)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_equals_the_tokenizers_own_padding(bert_dir, side):
    enc = Encoder(bert_dir)
    enc.tokenizer.padding_side = side
    items = texts(7, seed=2)
    want = enc.tokenize(items, 16)
    tok = enc.tokenizer(items, max_length=16, truncation=True, padding=False)
    got = pad(enc, tok["input_ids"], tok["token_type_ids"])
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_passage_text_styles():
    from utilanno.train.encoder import passage_text

    assert passage_text("Title", "body", "[SEP]") == "Title [SEP] body"
    assert passage_text("", "body", "[SEP]") == "body"
    assert passage_text(None, "body", "[SEP]", "sep") == "body"
    # BEIR's SentenceBERT: (title + " " + text).strip(), so inner spacing stays and the ends are stripped
    assert passage_text("Title", "body ", "[SEP]", "space") == "Title body"
    assert passage_text("", "  body", "[SEP]", "space") == "body"
    assert passage_text(" T ", "b", "[SEP]", "space") == "T  b"
    with pytest.raises(ValueError, match="unknown passage text style 'tab'"):
        passage_text("T", "b", "[SEP]", "tab")


def test_max_len_is_capped_at_the_models_positions(bert_dir):
    enc = Encoder(bert_dir)
    limit = enc.model.config.max_position_embeddings
    assert enc.max_len(limit + 500) == limit
    assert enc.max_len(7) == 7


def test_corpus_and_queries_encode_with_the_evaluation_lengths(bert_dir, tmp_path):
    import polars as pl

    from utilanno.evaluate import dense

    title, body = "quokka", " ".join(["tokyo"] * 40)
    pl.DataFrame({"docid": ["d"], "title": [title], "text": [body]}).write_parquet(tmp_path / "c.parquet")
    pl.DataFrame({"qid": ["q"], "text": [body]}).write_parquet(tmp_path / "q.parquet")
    enc = Encoder(bert_dir)
    for style, max_len in [("space", 30), ("sep", None)]:
        dense.encode_corpus(
            bert_dir,
            tmp_path / "c.parquet",
            0,
            1,
            tmp_path / "c.npy",
            tmp_path / "c.ids",
            max_len=max_len,
            passage_text=style,
        )
        got, _ = dense.load_embeddings(tmp_path / "c.npy", tmp_path / "c.ids")
        text = f"{title} {body}" if style == "space" else f"{title} {enc.tokenizer.sep_token} {body}"
        want = one_by_one(enc, [text], max_len or 140)  # an untrained model: the trainer's default, 140
        np.testing.assert_allclose(got.astype(np.float32), want, atol=2e-3)
    dense.encode_queries(bert_dir, tmp_path / "q.parquet", tmp_path / "q.npy", tmp_path / "q.ids", max_len=9)
    got, _ = dense.load_embeddings(tmp_path / "q.npy", tmp_path / "q.ids")
    np.testing.assert_allclose(got.astype(np.float32), one_by_one(enc, [body], 9), atol=2e-3)
    # 9 tokens differ from the default 32: the length reached the encoder
    assert not np.allclose(got.astype(np.float32), one_by_one(enc, [body], 32), atol=2e-3)
