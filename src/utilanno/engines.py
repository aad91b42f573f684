"""LLM engines behind one interface: `chat(conversations, sampling, guides) -> [Generation]`.

`guides` is None or one regular expression (or None) per conversation: the output shape to enforce.

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

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

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
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 512
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> Sampling:
        return cls(**{k: cfg[k] for k in ("temperature", "top_p", "top_k", "max_tokens", "seed") if k in cfg})


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


def answer_token_ids(tokenizer, conversation: list[dict], answer: str) -> tuple[list[int], list[int]]:
    """The prompt's ids (chat template with the generation prompt) and the answer's ids, tokenized apart.

    Neither part gets extra special tokens: the template already holds them (as `chat` and vLLM do it).
    """
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"the answer to score must be a non-empty string, got {answer!r}")
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    prompt = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if not prompt:
        raise ValueError("the conversation renders to no tokens: the first answer token has no context")
    if not ids:
        raise ValueError(f"the answer {answer!r} tokenizes to no tokens")
    return prompt, ids


def _check_pairs(conversations: list[list[dict]], answers: list[str]) -> None:
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


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        batch_size: int = 8,
        device: str | None = None,
        threads: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.eos.discard(None)
        self.batch_size = batch_size
        self._pieces: list[str] | None = None

    def chat(self, conversations, sampling, guides=None):
        guides = guides or [None] * len(conversations)
        out: list[Generation] = []
        for start in range(0, len(conversations), self.batch_size):
            end = start + self.batch_size
            out += self._batch(conversations[start:end], sampling, guides[start:end])
        return out

    def _batch(self, conversations, sampling, guides):
        torch = self.torch
        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        # The chat template already holds every special token: tokenize without adding more (as vLLM does).
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        kwargs = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos),
        }
        if sampling.temperature > 0:
            torch.manual_seed(sampling.seed)
            kwargs.update(
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else None,
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if any(guides):
            if self._pieces is None:  # each token's text, to test continuations against a pattern
                self._pieces = [self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
            width = enc["input_ids"].shape[1]
            kwargs["logits_processor"] = [RegexGuide(self.tokenizer, guides, width, self.eos, self._pieces)]
        with torch.inference_mode():
            generated = self.model.generate(**enc, **kwargs)
        new = generated[:, enc["input_ids"].shape[1] :].tolist()
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        out = []
        for ids, n_prompt in zip(new, prompt_lengths, strict=True):
            cut = next((i + 1 for i, t in enumerate(ids) if t in self.eos), len(ids))
            ids = ids[:cut]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            out.append(Generation(text, int(n_prompt), len(ids)))
        return out

    def answer_logprobs(self, conversations, answers):
        _check_pairs(conversations, answers)
        pairs = [answer_token_ids(self.tokenizer, c, a) for c, a in zip(conversations, answers, strict=True)]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        for k, (prompt, ids) in enumerate(pairs):
            if limit and len(prompt) + len(ids) > limit:
                raise ValueError(
                    f"conversation {k}: {len(prompt)} prompt + {len(ids)} answer tokens exceed the model's "
                    f"{limit} positions"
                )
        out: list[AnswerScore] = []
        for start in range(0, len(pairs), self.batch_size):
            out += self._score(pairs[start : start + self.batch_size])
        return out

    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[AnswerScore]:
        """One padded forward pass. Rows are padded on the left, so every answer ends the row and only the
        logits of the last (longest answer + 1) positions are computed (not a vocabulary-wide row per prompt
        token); position ids count real tokens only, so padding leaves every value unchanged."""
        torch = self.torch
        seqs = [prompt + ids for prompt, ids in pairs]
        width = max(len(s) for s in seqs)
        longest = max(len(ids) for _, ids in pairs)
        input_ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        keep = longest + 1  # the logits at position t predict the token at t + 1
        kwargs = {"logits_to_keep": keep} if self._keeps_logits() else {}
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                **kwargs,
            ).logits[:, -keep:-1]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            targets = input_ids[:, width - longest :].to(self.device)
            picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).double().cpu()
        return [
            AnswerScore(float(picked[row, longest - len(ids) :].sum()), len(ids), len(prompt))
            for row, (prompt, ids) in enumerate(pairs)
        ]

    def _keeps_logits(self) -> bool:
        import inspect

        return "logits_to_keep" in inspect.signature(self.model.forward).parameters


class RegexGuide:
    """Structured output for the transformers engine: at each step keep only the best-scoring token that keeps
    the generated text a prefix of a `pattern` match (end-of-sequence only once it fully matches), as vLLM's
    guided decoding does. Meant for small vocabularies and CPU runs; on GPUs use vLLM."""

    def __init__(self, tokenizer, patterns: list[str | None], width: int, eos: set[int], pieces: list[str]):
        import regex

        self.patterns = [regex.compile(p) if p else None for p in patterns]
        self.tokenizer, self.width, self.eos, self.pieces = tokenizer, width, eos, pieces

    def _ok(self, pattern, text: str, token: int) -> bool:
        if token in self.eos:
            return pattern.fullmatch(text) is not None
        if token >= len(self.pieces):
            return False
        return pattern.fullmatch(text + self.pieces[token], partial=True) is not None

    def __call__(self, input_ids, scores):
        import torch

        for row, pattern in enumerate(self.patterns):
            if pattern is None:
                continue
            text = self.tokenizer.decode(input_ids[row, self.width :], skip_special_tokens=True)
            ranked = torch.argsort(scores[row], descending=True).tolist()
            chosen = next((t for t in ranked if self._ok(pattern, text, t)), min(self.eos))
            best = scores[row, chosen].clone()
            scores[row] = float("-inf")
            scores[row, chosen] = best
        return scores


class VllmEngine(Engine):
    name = "vllm"

    def __init__(
        self,
        model: str,
        gpus: int = 1,
        dtype: str = "auto",
        max_model_len: int = 16384,
        gpu_memory_utilization: float = 0.9,
        seed: int = 0,
        enforce_eager: bool = False,
    ):
        from vllm import LLM

        self.llm = LLM(
            model=model,
            tensor_parallel_size=max(1, gpus),
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            seed=seed,
            enforce_eager=enforce_eager,
        )
        self.max_model_len = max_model_len

    def close(self, timeout: float = 60.0) -> None:
        """Stop the engine-core and worker processes now, waiting up to `timeout` s for them to exit.

        Left to interpreter exit, vLLM's finaliser gives them 5 s, then kills them and leaks their shared
        memory.

        The client's output thread is joined too: `shutdown` only signals it. A daemon thread still ending
        when the interpreter finalises is stopped with pthread_exit, and if it is then freeing the last
        engine output (prompt log-probabilities are torch tensors) torch's destructor cannot take the GIL
        and the job aborts after its output was published ("terminate called without an active
        exception", exit -6: 3 of about 33 REPLUG runs under load; both core dumps taken show this stack).
        """
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is None:
            return
        core.shutdown(timeout=timeout)
        thread = getattr(core, "output_queue_thread", None)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("vLLM's output thread did not stop within %.0f s", timeout)

    def _open(self):
        if self.llm is None:
            raise RuntimeError("the vllm engine is closed")
        return self.llm

    def chat(self, conversations, sampling, guides=None):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs = dict(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
        )
        guides = guides or [None] * len(conversations)
        params = [
            SamplingParams(**kwargs, structured_outputs=StructuredOutputsParams(regex=g))
            if g
            else SamplingParams(**kwargs)
            for g in guides
        ]
        outputs = self._open().chat(conversations, params, use_tqdm=False)
        return [
            Generation(o.outputs[0].text, len(o.prompt_token_ids), len(o.outputs[0].token_ids))
            for o in outputs
        ]

    def answer_logprobs(self, conversations, answers):
        """The prompt log-probabilities of the concatenated ids (`prompt_logprobs=0`: the actual token's
        only; raw model log-probabilities, before any sampling transform); one generated token is discarded.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        _check_pairs(conversations, answers)
        tokenizer = self._open().get_tokenizer()
        pairs = [answer_token_ids(tokenizer, c, a) for c, a in zip(conversations, answers, strict=True)]
        for k, (prompt, ids) in enumerate(pairs):
            if len(prompt) + len(ids) >= self.max_model_len:  # room for the one generated token
                raise ValueError(
                    f"conversation {k}: {len(prompt)} prompt + {len(ids)} answer tokens do not fit "
                    f"max_model_len {self.max_model_len}"
                )
        if not pairs:
            return []
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=prompt + ids) for prompt, ids in pairs], params, use_tqdm=False
        )
        out = []
        for (prompt, ids), o in zip(pairs, outputs, strict=True):
            per_position = o.prompt_logprobs  # None first (no context), then {token id: Logprob} per position
            total = sum(per_position[len(prompt) + j][t].logprob for j, t in enumerate(ids))
            out.append(AnswerScore(float(total), len(ids), len(prompt)))
        return out


OPENAI_NO_SCORES = (
    "the openai engine cannot score answers: the chat API gives no log-probabilities of a given text (echoed "
    "prompt log-probabilities are a legacy completions feature that servers implement differently or not at "
    "all, and the chat template is applied out of sight); score with the vllm or transformers engine on the "
    "same model"
)


class OpenAIEngine(Engine):
    """Chat completions over HTTP; requests run concurrently, each retried with back-off."""

    name = "openai"

    def __init__(
        self, model: str, base_url: str, concurrency: int = 8, retries: int = 5, timeout: float = 600
    ):
        self.model, self.base_url = model, base_url.rstrip("/")
        self.concurrency, self.retries, self.timeout = concurrency, retries, timeout
        self.api_key = os.environ.get("OPENAI_API_KEY", "")

    def chat(self, conversations, sampling, guides=None):  # endpoints differ in guided decoding: not used
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, sampling), conversations))

    def answer_logprobs(self, conversations, answers):
        raise NotImplementedError(OPENAI_NO_SCORES)

    def _one(self, messages, sampling) -> Generation:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                f"{self.base_url}/chat/completions", json.dumps(body).encode(), headers
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    data = json.loads(resp.read())
                usage = data.get("usage") or {}
                return Generation(
                    data["choices"][0]["message"].get("content") or "",
                    int(usage.get("prompt_tokens", 0)),
                    int(usage.get("completion_tokens", 0)),
                )
            except urllib.error.HTTPError as err:
                if err.code < 500 and err.code != 429:
                    raise RuntimeError(f"{self.base_url}: HTTP {err.code}: {err.read()[:300]!r}") from None
                failure = err
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                failure = err
            if attempt < self.retries:
                time.sleep(min(60, 2**attempt))
        raise RuntimeError(f"{self.base_url}: giving up after {self.retries} retries: {failure}")


def create(llm: dict, gpus: int | None = None, threads: int | None = None) -> Engine:
    """An engine from an `llms.<name>` config entry."""
    engine = llm.get("engine", "vllm")
    if engine == "transformers":
        return TransformersEngine(
            llm["model"], llm.get("dtype", "auto"), llm.get("batch_size", 8), threads=threads
        )
    if engine == "vllm":
        return VllmEngine(
            llm["model"],
            gpus if gpus is not None else llm.get("gpus", 1),
            llm.get("dtype", "auto"),
            llm.get("max_model_len", 16384),
            llm.get("gpu_memory_utilization", 0.9),
            llm.get("sampling", {}).get("seed", 0),
            enforce_eager=llm.get("enforce_eager", False),
        )
    if engine == "openai":
        if not llm.get("base_url"):
            raise ValueError("the openai engine needs 'base_url'")
        return OpenAIEngine(llm["model"], llm["base_url"])
    raise ValueError(f"unknown engine {engine!r}")
