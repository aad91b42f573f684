"""LLM engines behind one interface: `chat(conversations, sampling, guides) -> [Generation]`.

`guides` is None or one regular expression (or None) per conversation: the output shape to enforce.

Each engine renders a conversation with the model's chat template, given the `llms:` entry's
`chat_template_kwargs` as extra template variables (Qwen3's `enable_thinking`, PAPER-SPEC B.0), for generation
and for answer scoring alike.

`answer_logprobs(conversations, answers) -> [AnswerScore]` scores a given answer instead of generating one
(REPLUG utility, PAPER-SPEC C.3): log P(answer | conversation) under the model, summed over the answer's
tokens. The conversation is rendered with the chat template and the generation prompt, exactly as `chat`
sends it; the answer is the assistant's reply that follows. Only the answer's own tokens are scored, not the
end-of-turn token after them: P(a | q, d) is about the answer's content, and an end-of-turn term would add a
template-specific "the answer stops here" factor. Prompt and answer are tokenized separately and their ids
concatenated (`answer_token_ids`): tokenizing the joined text could merge characters across the boundary
into one token (then no exact answer span exists), and both local engines get the very same ids, so their
scores agree. (A model generating the answer after the generation prompt starts a fresh token there too.)

- `vllm`: offline `vllm.LLM` with the model's chat template, prefix caching (the long shared system turns
  of a prompt file), tensor parallel over the job's GPUs, optional structured output.
- `transformers`: batched `generate`, CPU or GPU; greedy output equals vLLM's on the same weights.
- `openai`: any OpenAI-compatible endpoint (a vLLM server, a hosted model).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

log = logging.getLogger(__name__)


def guide_pattern(kind: str, n: int) -> str:
    """The output shape a prompt asks for, as a regular expression over ids 1..n, for guided decoding."""
    ids = "|".join(str(i) for i in range(n, 0, -1))  # longest first
    if kind == "selection":
        return rf"My selection:\[(\[({ids})\](,\[({ids})\])*)?\]\."
    if kind == "ranking":
        return rf"\[({ids})\]( > \[({ids})\])*"
    raise ValueError(f"no output pattern for {kind!r}")


@dataclass
class Sampling:
    """Decoding settings. `min_p` (0 = off) drops tokens less likely than min_p times the most likely one;
    Qwen3's thinking mode asks for 0 explicitly (PAPER-SPEC B.0)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 512
    seed: int = 0
    min_p: float = 0.0

    FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "seed", "min_p")

    def __post_init__(self) -> None:
        self.min_p = float(self.min_p)  # `min_p: 0` in YAML and the default give one shard fingerprint
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be within [0, 1], got {self.min_p}")

    @classmethod
    def from_config(cls, cfg: dict) -> Sampling:
        return cls(**{k: cfg[k] for k in cls.FIELDS if k in cfg})


# Arguments of `apply_chat_template` that are not template variables: the engines set them (or vLLM refuses
# them), so a config cannot.
_ENGINE_TEMPLATE_ARGS = frozenset(
    {
        "conversation",
        "messages",
        "chat_template",
        "tokenize",
        "add_generation_prompt",
        "continue_final_message",
        "return_dict",
        "return_tensors",
        "tokenizer_kwargs",
        "padding",
        "truncation",
        "max_length",
    }
)


def template_kwargs(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """An `llms:` entry's `chat_template_kwargs` (None = none), checked: the extra variables its chat
    template is rendered with, e.g. Qwen3's `enable_thinking`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"chat_template_kwargs must be a mapping, got {type(value).__name__}: {value!r}")
    if not all(isinstance(k, str) for k in value):
        raise ValueError(f"chat_template_kwargs must map template variable names to values, got {value!r}")
    clash = sorted(k for k in value if k in _ENGINE_TEMPLATE_ARGS)
    if clash:
        raise ValueError(f"chat_template_kwargs cannot set {clash}: the engine sets them itself")
    return dict(value)


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


class AnswerScore(NamedTuple):
    """log P(answer | prompt) summed over the answer's `n_tokens` tokens; `prompt_tokens` before them."""

    logprob: float
    n_tokens: int
    prompt_tokens: int


def answer_token_ids(
    tokenizer, conversation: list[dict], answer: str, chat_template_kwargs: dict | None = None
) -> tuple[list[int], list[int]]:
    """The prompt's ids (chat template with the generation prompt and `chat_template_kwargs`, as `chat`
    renders it) and the answer's ids, tokenized apart.

    Neither part gets extra special tokens: the template already holds them (as `chat` and vLLM do it).
    """
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"the answer to score must be a non-empty string, got {answer!r}")
    text = tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
    )
    prompt = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if not prompt:
        raise ValueError("the conversation renders to no tokens: the first answer token has no context")
    if not ids:
        raise ValueError(f"the answer {answer!r} tokenizes to no tokens")
    return prompt, ids


def check_pairs(conversations: list[list[dict]], answers: list[str]) -> None:
    if len(conversations) != len(answers):
        raise ValueError(f"{len(conversations)} conversations but {len(answers)} answers: one answer each")


class Engine:
    """Use as a context manager (`with engines.create(...) as engine:`): `close` runs when the job is done."""

    name = "engine"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release what the engine holds beyond its Python objects (processes, devices); idempotent."""

    def chat(
        self, conversations: list[list[dict]], sampling: Sampling, guides: list[str | None] | None = None
    ) -> list[Generation]:
        raise NotImplementedError

    def answer_logprobs(self, conversations: list[list[dict]], answers: list[str]) -> list[AnswerScore]:
        """log P(answers[i] | conversations[i]) for each i (see the module's docstring)."""
        raise NotImplementedError(f"the {self.name} engine cannot score answers")
