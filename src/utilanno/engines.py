"""LLM engines behind one interface: `chat(conversations, sampling, guides) -> [Generation]`.

`guides` is None or one regular expression (or None) per conversation: the output shape to enforce.

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


class Engine:
    name = "engine"

    def chat(
        self, conversations: list[list[dict]], sampling: Sampling, guides: list[str | None] | None = None
    ) -> list[Generation]:
        raise NotImplementedError


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
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        return [
            Generation(o.outputs[0].text, len(o.prompt_token_ids), len(o.outputs[0].token_ids))
            for o in outputs
        ]


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
