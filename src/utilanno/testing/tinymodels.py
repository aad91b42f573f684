"""Small local models, so the workflow and its tests run without a model hub.

Tiny random models (a BERT encoder and a Qwen2 chat LLM) built from scratch in seconds: their outputs are
meaningless, but they exercise every code path (tokenization, batching, chat templates, generation) the real
models take, deterministically for a given seed. Exports of real small models are in `realmodels`.

Tokenizers are saved under their model-specific classes (`BertTokenizer`, `Qwen2Tokenizer`) rather than the
generic backend, because transformers 5 rebuilds those classes from `tokenizer.json`'s vocabulary with its own
pipeline, and older transformers (as pinned by vLLM) do not know the generic v5 class at all. The raw
tokenizers are therefore trained with exactly the normalizer and pre-tokenizer those classes use.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2's chat format without the default system prompt: prompts are then exactly what the caller wrote.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# The pre-tokenizer regex of Qwen2Tokenizer; the BPE merges must be learnt on the same pieces it produces.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_SUBJECTS = (
    "the retriever, a dense encoder, the annotator, the language model, a human assessor, "
    "the reranker, the search engine, a student, the teacher model, the query encoder, the passage, "
    "an answer, the benchmark, the pipeline, a judge"
).split(", ")
_VERBS = (
    "ranks, retrieves, labels, scores, reads, selects, annotates, summarizes, compares, generates, "
    "filters, encodes, evaluates, rewrites, cites"
).split(", ")
_OBJECTS = (
    "relevant passages, useful evidence, the top documents, every candidate, noisy labels, "
    "short answers, long documents, the question, positive examples, hard negatives, the corpus, "
    "utility judgments, pseudo labels, search results, the context window"
).split(", ")
_TAILS = (
    "for open domain question answering, with a large language model, before fine tuning, "
    "on the development set, using contrastive learning, in a single pass, at inference time, "
    "without human supervision, from wikipedia, with high recall, in 2025, under a budget of 100, "
    "for retrieval augmented generation, across 14 datasets, quickly and cheaply"
).split(", ")
_PUNCT = (".", ".", ".", "?", "!", ";")


def builtin_corpus(n_sentences: int = 400) -> list[str]:
    """A fixed pseudo-English corpus, so tokenizers are reproducible without shipping or fetching text."""
    rng = random.Random(20250101)
    sentences = []
    for _ in range(n_sentences):
        sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        if rng.random() < 0.3:
            sentence = sentence.capitalize()
        sentences.append(sentence + rng.choice(_PUNCT))
    # Words made of the tiny world's syllables, so its text tokenizes into few pieces per word.
    from utilanno.testing.tinyworld import SYLLABLES

    for _ in range(n_sentences):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(8)]
        ids = " ".join(f"[{i}]" for i in range(1, 17))
        sentences.append(" ".join(words) + f" {ids} > [2], [3].")
    return sentences


def _training_text(vocab_corpus: Iterable[str] | None) -> list[str]:
    return builtin_corpus() if vocab_corpus is None else [str(t) for t in vocab_corpus]


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def fresh_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _bert_words(texts: Iterable[str]) -> list[str]:
    """Words as transformers' BertTokenizer sees them: lowercased, accents stripped, punctuation split off."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return [w for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))]


def _train_wordpiece(texts: Sequence[str], vocab_size: int) -> dict[str, int]:
    """Learn a WordPiece vocabulary with tokenizers' BPE trainer, reproducibly.

    `WordPieceTrainer` numbers its `##` pieces in hash-map order, which changes the merges it picks on ties
    from one process to the next (huggingface/tokenizers#1794), so the same corpus gave different
    vocabularies. Plain BPE without a continuing-subword prefix is deterministic; so inside each word every
    character after the first is swapped for a private-use stand-in, the BPE is trained on that, and pieces
    that start with a stand-in become `##` pieces again.
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    words = _bert_words(texts)
    # Every ASCII letter and digit both opens and continues words, so any ASCII word encodes without [UNK].
    ascii_chars = set(string.ascii_lowercase + string.digits)
    used = {c for w in words for c in w} | ascii_chars | set(string.punctuation)
    inner = sorted({c for w in words for c in w[1:]} | ascii_chars)
    free = (chr(cp) for cp in range(0xF0000, 0x10FFFE) if chr(cp) not in used)
    stand_in = dict(zip(inner, free, strict=False))
    if len(stand_in) < len(inner):
        raise ValueError("vocab_corpus uses too many distinct characters for a tiny tokenizer")
    original = {v: k for k, v in stand_in.items()}
    marked = [w[0] + "".join(stand_in[c] for c in w[1:]) for w in words]

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = BpeTrainer(
        vocab_size=max(vocab_size - len(BERT_SPECIAL_TOKENS), 1),
        initial_alphabet=sorted(used) + sorted(original),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(marked, trainer=trainer)

    vocab = {token: i for i, token in enumerate(BERT_SPECIAL_TOKENS)}
    for piece, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        text = "".join(original.get(c, c) for c in piece)
        vocab.setdefault("##" + text if piece[0] in original else text, len(vocab))
    return vocab


def build_tiny_bert_tokenizer(vocab_corpus: Iterable[str] | None = None, vocab_size: int = 2048):
    """A BERT-style WordPiece tokenizer trained here, so the encoder needs no downloaded vocabulary."""
    from transformers import BertTokenizer

    vocab = _train_wordpiece(_training_text(vocab_corpus), vocab_size)
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)


def build_tiny_bert(
    out_dir: str | Path,
    vocab_corpus: Iterable[str] | None = None,
    seed: int = 0,
    vocab_size: int = 2048,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 2,
    intermediate_size: int = 128,
) -> Path:
    """Save a random 2-layer BERT encoder and its tokenizer: a stand-in for the retrievers' encoders in tests
    (other dimensions: BERT-base's 768 / 12 / 12 / 3072 for GPU throughput checks).

    With `vocab_corpus`, the vocabulary is trained on it, so test data tokenizes without [UNK].
    """
    import torch
    from transformers import BertConfig, BertModel

    out = fresh_dir(out_dir)
    tokenizer = build_tiny_bert_tokenizer(vocab_corpus, vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    _seeded(seed)
    with torch.no_grad():
        model = BertModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # transformers 5 writes only tokenizer.json; tools that read BERT vocabularies directly want vocab.txt.
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (out / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    return out


def _train_bytelevel_bpe(texts: Sequence[str], vocab_size: int) -> tuple[dict[str, int], list[tuple]]:
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    # Same normalizer and pre-tokenizer as transformers' Qwen2Tokenizer.
    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return vocab, merges


def build_tiny_qwen2_tokenizer(vocab_corpus: Iterable[str] | None = None, vocab_size: int = 1024):
    """A byte-level BPE tokenizer with ChatML, so chat prompts render and round-trip like Qwen2's."""
    from transformers import Qwen2Tokenizer

    vocab, merges = _train_bytelevel_bpe(_training_text(vocab_corpus), vocab_size)
    # Special tokens go after the learnt vocabulary, as in Qwen2 (ids do not depend on the corpus size).
    for token in CHATML_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=4096,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_qwen2(
    out_dir: str | Path,
    vocab_corpus: Iterable[str] | None = None,
    seed: int = 0,
    vocab_size: int = 1024,
) -> Path:
    """Save a random 2-layer Qwen2 chat model: a stand-in for the annotating LLMs in tests.

    head_dim is 32 because vLLM's CPU attention kernels accept only some head sizes (32, 64, 80, ...).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = fresh_dir(out_dir)
    tokenizer = build_tiny_qwen2_tokenizer(vocab_corpus, vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        # Wider than the usual 0.02: a random model then answers differently per prompt instead of emitting
        # one token regardless of its input, which makes greedy-equality checks between engines meaningful.
        initializer_range=0.4,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    _seeded(seed)
    with torch.no_grad():
        model = Qwen2ForCausalLM(config).eval()
    # Qwen2-Instruct stops on either token; a random model rarely emits them, so max_new_tokens bounds it.
    model.generation_config = GenerationConfig(
        bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def parameter_count(model_dir: str | Path) -> int:
    """Parameters stored in a saved folder, read from safetensors headers so nothing is loaded."""
    from safetensors import safe_open

    total = 0
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for key in fh.keys():
                n = 1
                for dim in fh.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def describe(model_dir: str | Path) -> dict:
    """What a built folder holds, for the build log: read from its files, without loading the model."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    info = {
        "architecture": ",".join(config.get("architectures") or [config.get("model_type", "?")]),
        "parameters": parameter_count(model_dir),
        "model_vocab_size": config.get("vocab_size"),
        "dtype": config.get("dtype") or config.get("torch_dtype"),
    }
    tok_file = model_dir / "tokenizer.json"
    if tok_file.is_file():
        tok = json.loads(tok_file.read_text(encoding="utf-8"))
        vocab = tok["model"].get("vocab") or {}
        if isinstance(vocab, dict):
            pieces = set(vocab)
        else:  # Unigram stores [piece, score] pairs
            pieces = {v[0] if isinstance(v, list) else v for v in vocab}
        info["tokenizer_size"] = len(pieces | {t["content"] for t in tok.get("added_tokens", [])})
    return info
