"""The OpenAI-compatible engine: chat completions through the official `openai` SDK.

- Retries are ours, not the SDK's (`max_retries=0` on the client), so the policy is explicit and testable:
  connection errors, timeouts and HTTP 408/409/429/5xx are retried up to `max_retries` times, the k-th retry
  after `backoff * 2**(k-1)` seconds (at most `max_backoff`; a longer `Retry-After` from the server is
  honoured up to that cap), stretched by up to `jitter` (a fraction) at random so that concurrent requests
  rejected together do not come back together. Other HTTP errors (400, 401, 404, ...) fail at once.
- At most `concurrency` requests are in flight; results come back in the order of the conversations. The
  first request that fails for good fails the call: requests not yet sent are cancelled, requests waiting
  to retry give up.
- Every request is deterministic as far as the server allows: the sampling settings are sent explicitly
  (greedy by default) with the seed, never left to the server's defaults (a vLLM server takes its defaults
  from the model's generation_config.json, e.g. Qwen2.5's repetition_penalty 1.05, which the offline
  engine does not apply).
- `server` says what the endpoint accepts beyond the OpenAI API:
  - `vllm`: `top_k`, `min_p`, `repetition_penalty` and regex structured output
    (`structured_outputs: {"regex": ...}`, vLLM >= 0.11) go in the request body through `extra_body`, and
    so do the `llms:` entry's `chat_template_kwargs` (e.g. `{"enable_thinking": true}` for Qwen3), only
    when there are any.
  - `openai` (the plain API, hosted models): it has no `top_k`, no `min_p`, no regex-guided decoding
    (`response_format` takes JSON schemas only, whose output is JSON, not the prompt's format) and no
    chat template variables (the template is applied out of sight), so a `top_k` > 0, a `min_p` > 0, a guide
    or `chat_template_kwargs` are refused with a clear error instead of being silently dropped; without them
    the request holds only OpenAI API fields.
- Token usage is recorded per call (`Generation.prompt_tokens` / `completion_tokens`, from the server's
  `usage`) and summed in `engine.usage`; `usage_cost` prices it from the `llms:` entry.
- The API key is read from the environment variable named by `api_key_env` (default OPENAI_API_KEY) and
  handed to the SDK only: it is not an attribute of the engine, not in its repr, in no log record and in no
  error message. Without a key no Authorization header is sent (a local vLLM server needs none).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import urllib.parse
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from utilanno.errors import EngineError

from .base import Engine, Generation, Sampling, template_kwargs

log = logging.getLogger(__name__)

OPENAI_NO_SCORES = (
    "the openai engine cannot score answers: the chat API gives no log-probabilities of a given text (echoed "
    "prompt log-probabilities are a legacy completions feature that servers implement differently or not at "
    "all, and the chat template is applied out of sight); score with the vllm or transformers engine on the "
    "same model"
)
SERVERS = ("vllm", "openai")
RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx
_NO_KEY = "no-key"  # the SDK insists on a key; with this placeholder the Authorization header is omitted


class OpenAIEngineError(EngineError):
    """A request failed for good (after its retries, or at once for a client error)."""


class _Cancelled(Exception):
    """Another request of the same call failed: stop retrying."""


def redact_url(url: str) -> str:
    """`url` without user name and password (they must not reach logs or messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def usage_cost(llm: dict, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The price of this many tokens under the `llms:` entry's `price_per_million_input` / `_output`
    (in whatever currency they are given); None when the entry sets neither price. An unset price of the
    two counts as 0 (e.g. free input tokens)."""
    pin, pout = llm.get("price_per_million_input"), llm.get("price_per_million_output")
    if pin is None and pout is None:
        return None
    return (prompt_tokens * (pin or 0.0) + completion_tokens * (pout or 0.0)) / 1e6


class OpenAIEngine(Engine):
    """Chat completions over an OpenAI-compatible HTTP API (see the module's docstring)."""

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        concurrency: int = 8,
        retries: int = 5,
        timeout: float = 600,
        *,
        server: str = "vllm",
        api_key_env: str = "OPENAI_API_KEY",
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        jitter: float = 0.0,
        chat_template_kwargs: dict | None = None,
    ):
        import openai

        if server not in SERVERS:
            raise ValueError(f"the openai engine's server must be one of {SERVERS}, got {server!r}")
        self.chat_template_kwargs = template_kwargs(chat_template_kwargs)
        if self.chat_template_kwargs and server == "openai":
            raise ValueError(
                f"chat_template_kwargs {self.chat_template_kwargs} need a server that renders the chat"
                " template with them; the plain OpenAI API (server: openai) does not take them. Use a vLLM"
                " server (server: vllm) or drop chat_template_kwargs for this LLM"
            )
        if concurrency < 1 or retries < 0 or timeout <= 0 or backoff < 0 or jitter < 0:
            raise ValueError(
                f"the openai engine needs concurrency >= 1, retries >= 0, timeout > 0, backoff >= 0 and"
                f" jitter >= 0; got {concurrency}, {retries}, {timeout}, {backoff}, {jitter}"
            )
        self.model, self.base_url = model, base_url.rstrip("/")
        self.where = redact_url(self.base_url)
        self.concurrency, self.retries, self.timeout = concurrency, retries, timeout
        self.server, self.api_key_env = server, api_key_env
        self.backoff, self.max_backoff, self.jitter = backoff, max_backoff, jitter
        has_key = bool(os.environ.get(api_key_env))
        # The key lives in the SDK client only; `_headers` omits Authorization when there is none.
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(api_key_env) or _NO_KEY,
            max_retries=0,
            timeout=timeout,
        )
        self._headers = None if has_key else {"Authorization": openai.omit}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._warned_usage = False

    def __repr__(self) -> str:
        return (
            f"OpenAIEngine(model={self.model!r}, base_url={self.where!r}, server={self.server!r},"
            f" concurrency={self.concurrency}, api_key_env={self.api_key_env!r})"
        )

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

    def answer_logprobs(self, conversations, answers):
        raise NotImplementedError(OPENAI_NO_SCORES)

    # -- requests -------------------------------------------------------------------------------------

    def request_kwargs(self, messages: list[dict], sampling: Sampling, guide: str | None) -> dict:
        """The keyword arguments of `chat.completions.create` for one conversation."""
        kwargs = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if self.server == "vllm":
            extra = {"top_k": sampling.top_k, "min_p": sampling.min_p, "repetition_penalty": 1.0}
            if guide:
                extra["structured_outputs"] = {"regex": guide}
            if self.chat_template_kwargs:
                extra["chat_template_kwargs"] = dict(self.chat_template_kwargs)
            kwargs["extra_body"] = extra
        else:
            if sampling.top_k is not None and sampling.top_k > 0:
                raise ValueError(
                    f"top_k = {sampling.top_k}, but the plain OpenAI API (server: openai) has no top_k;"
                    " drop it from the sampling settings or use a vLLM server (server: vllm)"
                )
            if sampling.min_p > 0:
                raise ValueError(
                    f"min_p = {sampling.min_p}, but the plain OpenAI API (server: openai) has no min_p;"
                    " drop it from the sampling settings or use a vLLM server (server: vllm)"
                )
            if guide:
                raise ValueError(
                    "structured_output needs regex-guided decoding, which the plain OpenAI API (server:"
                    " openai) does not offer (response_format takes JSON schemas only); use a vLLM server"
                    " (server: vllm) or set structured_output: false for this LLM"
                )
        if self._headers:
            kwargs["extra_headers"] = self._headers
        return kwargs

    def chat(self, conversations, sampling, guides=None):
        if not conversations:
            return []
        guides = guides or [None] * len(conversations)
        if len(guides) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(guides)} guides")
        requests = [self.request_kwargs(c, sampling, g) for c, g in zip(conversations, guides, strict=True)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai-engine")
        stop = threading.Event()
        futures = [self._pool.submit(self._one, kw, stop) for kw in requests]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                raise failed[0].exception()
            return [f.result() for f in futures]
        finally:
            stop.set()  # requests of a failed (or interrupted) call stop retrying
            for f in futures:
                f.cancel()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...)."""
        wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, min(self.max_backoff, retry_after))
        if self.jitter:
            wait *= 1 + self.jitter * random.random()
        return wait

    def _one(self, kwargs: dict, stop: threading.Event) -> Generation:
        import openai

        failure, retry_after = "", None
        for attempt in range(self.retries + 1):
            if stop.is_set():
                raise _Cancelled()
            if attempt:
                _pause(self.delay(attempt, retry_after), stop)
                if stop.is_set():
                    raise _Cancelled()
                with self._lock:
                    self.usage["retries"] += 1
            retry_after = None
            try:
                response = self._client.chat.completions.create(**kwargs)
            except openai.APIStatusError as err:
                status = err.status_code
                detail = _error_detail(err)
                if status not in RETRY_STATUS and status < 500:
                    hint = f" (is the key in ${self.api_key_env} right?)" if status in (401, 403) else ""
                    raise OpenAIEngineError(
                        f"{self.where}: HTTP {status}{hint}: {detail}; not retried"
                    ) from None
                failure = f"HTTP {status}: {detail}"
                retry_after = _retry_after(err)
            except openai.APITimeoutError:
                failure = f"no answer within {self.timeout:g} s (timeout)"
            except openai.APIConnectionError as err:
                cause = err.__cause__ or err.__context__
                failure = f"cannot connect ({type(cause).__name__ if cause else 'connection error'})"
            else:
                return self._generation(response)
            log.info(
                "%s: %s; %s",
                self.where,
                failure,
                f"retry {attempt + 1} of {self.retries}" if attempt < self.retries else "giving up",
            )
        raise OpenAIEngineError(
            f"{self.where}: giving up after {self.retries} retries: {failure}"
            + (" (is the server running?)" if failure.startswith(("cannot connect", "no answer")) else "")
        )

    def _generation(self, response) -> Generation:
        if not response.choices:
            raise OpenAIEngineError(f"{self.where}: the server answered with no choices")
        text = response.choices[0].message.content or ""
        usage = response.usage
        prompt, completion = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else (0, 0)
        with self._lock:
            self.usage["requests"] += 1
            self.usage["prompt_tokens"] += prompt
            self.usage["completion_tokens"] += completion
            warn = usage is None and not self._warned_usage
            self._warned_usage |= warn
        if warn:
            log.warning("%s reports no token usage: token counts (and costs) are recorded as 0", self.where)
        return Generation(text, prompt, completion)


def _pause(seconds: float, stop: threading.Event) -> None:
    """Wait before a retry; a failed or interrupted call (`stop`) ends the wait at once."""
    stop.wait(seconds)


def _error_detail(err) -> str:
    """The server's error message (short), never the request (whose headers hold the key)."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return str(message)[:300]
    return str(getattr(err, "message", "") or type(err).__name__)[:300]


def _retry_after(err) -> float | None:
    try:
        value = err.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None
