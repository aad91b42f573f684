"""The OpenAI-compatible engine: chat completions over HTTP, concurrent, each request retried with
back-off."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from .base import Engine, Generation

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
