"""LLM engines: the OpenAI-compatible HTTP client against a local fake server, and the transformers engine on
a tiny random Qwen2 chat model."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from utilanno.annotate import engines
from utilanno.annotate.engines import Generation, OpenAIEngine, Sampling, openai_engine

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ---------------------------------------------------------------------------------------------------------
# A fake OpenAI-compatible server on loopback


class FakeOpenAI:
    """POST /v1/chat/completions echoes the last user message; `statuses` queues error codes first."""

    def __init__(self):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body})
                    fake.headers.append(dict(self.headers))
                    status = fake.statuses.pop(0) if fake.statuses else 200
                if self.path != "/v1/chat/completions":
                    status = 404
                if status != 200:
                    self._send(status, {"error": {"message": f"status {status}"}})
                    return
                last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
                # later conversations answer sooner, so that replies come back out of order
                delay = body["messages"][0].get("delay", 0)
                if delay:
                    threading.Event().wait(delay)
                usage = {"prompt_tokens": len(body["messages"]), "completion_tokens": len(last)}
                self._send(
                    200,
                    {
                        "choices": [{"message": {"role": "assistant", "content": f"echo: {last}"}}],
                        "usage": usage,
                    },
                )

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def sleeps(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(openai_engine.time, "sleep", calls.append)
    return calls


def _conv(text, **extra):
    return [{"role": "system", "content": "sys", **extra}, {"role": "user", "content": text}]


def test_openai_request_body_and_result(server, sleeps):
    engine = OpenAIEngine("my-model", server.base_url + "/", concurrency=2, retries=2)
    sampling = Sampling(temperature=0.3, top_p=0.9, top_k=20, max_tokens=77, seed=4)
    out = engine.chat([_conv("hello")], sampling, [engines.guide_pattern("selection", 3)])
    assert out == [Generation("echo: hello", 2, 5)]
    assert len(server.requests) == 1
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["model"] == "my-model"
    assert body["messages"] == _conv("hello")
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 77
    assert body["seed"] == 4
    assert "Authorization" not in server.headers[0]
    assert server.headers[0]["Content-Type"] == "application/json"
    assert sleeps == []


def test_openai_api_key_header(server, sleeps, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    OpenAIEngine("m", server.base_url).chat([_conv("x")], Sampling())
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_openai_keeps_order_with_concurrency(server, sleeps):
    n = 8
    convs = [_conv(f"message {i}", delay=0.02 * (n - i)) for i in range(n)]
    out = OpenAIEngine("m", server.base_url, concurrency=n).chat(convs, Sampling())
    assert [g.text for g in out] == [f"echo: message {i}" for i in range(n)]
    assert len(server.requests) == n
    assert OpenAIEngine("m", server.base_url, concurrency=3).chat([], Sampling()) == []


@pytest.mark.parametrize("code", [500, 503, 429])
def test_openai_retries_server_errors(server, sleeps, code):
    server.statuses = [code]
    out = OpenAIEngine("m", server.base_url, retries=3).chat([_conv("again")], Sampling())
    assert out[0].text == "echo: again"
    assert len(server.requests) == 2
    assert server.requests[0]["body"] == server.requests[1]["body"]
    assert sleeps == [1]


def test_openai_gives_up_after_retries(server, sleeps):
    server.statuses = [500, 500, 500]
    with pytest.raises(RuntimeError, match="giving up after 2 retries"):
        OpenAIEngine("m", server.base_url, retries=2).chat([_conv("x")], Sampling())
    assert len(server.requests) == 3
    assert sleeps == [1, 2]


@pytest.mark.parametrize("code", [400, 401, 404])
def test_openai_client_error_is_not_retried(server, sleeps, code):
    server.statuses = [code]
    with pytest.raises(RuntimeError, match=f"HTTP {code}"):
        OpenAIEngine("m", server.base_url, retries=5).chat([_conv("x")], Sampling())
    assert len(server.requests) == 1
    assert sleeps == []


def test_openai_connection_refused_is_retried(sleeps, monkeypatch):
    import socket

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match="giving up after 1 retries"):
        OpenAIEngine("m", f"http://127.0.0.1:{port}/v1", retries=1, timeout=5).chat([_conv("x")], Sampling())
    assert sleeps == [1]


# ---------------------------------------------------------------------------------------------------------
# Sampling and create


def test_sampling_from_config():
    s = Sampling.from_config(
        {
            "temperature": 0.6,
            "top_p": 0.95,
            "top_k": 20,
            "min_p": 0,
            "max_tokens": 4096,
            "seed": 3,
            "n": 2,
            "stop": ["x"],
        }
    )
    assert s == Sampling(temperature=0.6, top_p=0.95, top_k=20, max_tokens=4096, seed=3)
    assert Sampling.from_config({}) == Sampling()
    assert Sampling() == Sampling(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=512, seed=0)


def test_create_errors():
    with pytest.raises(ValueError, match="unknown engine"):
        engines.create({"engine": "llamacpp", "model": "m"})
    with pytest.raises(ValueError, match="base_url"):
        engines.create({"engine": "openai", "model": "m"})
    with pytest.raises(ValueError, match="base_url"):
        engines.create({"engine": "openai", "model": "m", "base_url": ""})


def test_create_openai():
    engine = engines.create({"engine": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1/"})
    assert isinstance(engine, OpenAIEngine)
    assert engine.model == "m" and engine.base_url == "http://127.0.0.1:1/v1"


def test_base_engine_is_abstract():
    with pytest.raises(NotImplementedError):
        engines.Engine().chat([], Sampling())


@pytest.mark.parametrize("n", [1, 3, 16, 31])
def test_guide_pattern_selection(n):
    import re

    p = engines.guide_pattern("selection", n)
    assert re.fullmatch(p, "My selection:[].")
    assert re.fullmatch(p, "My selection:[[1]].")
    assert re.fullmatch(p, f"My selection:[[{n}],[1]].")
    assert not re.fullmatch(p, "My selection:[[0]].")
    assert not re.fullmatch(p, f"My selection:[[{n + 1}]].")
    assert not re.fullmatch(p, "My selection:[[1],].")
    assert not re.fullmatch(p, "My selection:[[01]].")
    if n >= 10:
        assert re.fullmatch(p, "My selection:[[10],[1]].")


@pytest.mark.parametrize("n", [1, 3, 16, 31])
def test_guide_pattern_ranking(n):
    import re

    p = engines.guide_pattern("ranking", n)
    assert re.fullmatch(p, f"[{n}] > [1]")
    assert re.fullmatch(p, "[1]")
    assert not re.fullmatch(p, "[1] > ")
    assert not re.fullmatch(p, f"[{n + 1}]")
    assert not re.fullmatch(p, "[0]")
    assert not re.fullmatch(p, "")


def test_guide_pattern_unknown_kind():
    with pytest.raises(ValueError):
        engines.guide_pattern("answer", 3)


# ---------------------------------------------------------------------------------------------------------
# TransformersEngine on a tiny random Qwen2


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    from utilanno.testing import tinymodels

    return str(tinymodels.build_tiny_qwen2(tmp_path_factory.mktemp("models") / "qwen2"))


@pytest.fixture(scope="module")
def tiny_engine(tiny_qwen2):
    import torch

    engine = engines.TransformersEngine(tiny_qwen2, dtype="float32", batch_size=1, device="cpu", threads=1)
    assert torch.get_num_threads() == 1
    return engine


CONVERSATIONS = [
    [{"role": "user", "content": "the retriever ranks passages"}],
    [{"role": "user", "content": "a"}],
    [
        {"role": "user", "content": "You are the relevance judger, select the passages about the query."},
        {"role": "assistant", "content": "Yes, I am the relevance judger."},
        {"role": "user", "content": "[1] a passage\nSearch Query: q?."},
    ],
    [{"role": "user", "content": "the annotator selects 3 passages"}],
]


def test_transformers_greedy_is_deterministic(tiny_engine):
    sampling = Sampling(max_tokens=10)
    a = tiny_engine.chat(CONVERSATIONS, sampling)
    b = tiny_engine.chat(CONVERSATIONS, sampling, [None] * len(CONVERSATIONS))
    assert [g.text for g in a] == [g.text for g in b]
    assert len(a) == len(CONVERSATIONS)
    for g in a:
        assert isinstance(g.text, str)
        assert g.prompt_tokens > 0
        assert 0 < g.completion_tokens <= 10
    # longer conversations have longer prompts
    assert a[2].prompt_tokens > a[1].prompt_tokens


def test_transformers_batch_size_does_not_change_outputs(tiny_engine):
    sampling = Sampling(max_tokens=10)
    tiny_engine.batch_size = 1
    try:
        one = tiny_engine.chat(CONVERSATIONS, sampling)
        tiny_engine.batch_size = 3
        three = tiny_engine.chat(CONVERSATIONS, sampling)
    finally:
        tiny_engine.batch_size = 1
    assert [g.text for g in one] == [g.text for g in three]
    assert [g.prompt_tokens for g in one] == [g.prompt_tokens for g in three]
    assert [g.completion_tokens for g in one] == [g.completion_tokens for g in three]


def test_transformers_prompt_tokens_match_the_chat_template(tiny_engine):
    tok = tiny_engine.tokenizer
    out = tiny_engine.chat(CONVERSATIONS[:2], Sampling(max_tokens=2))
    for conv, g in zip(CONVERSATIONS[:2], out, strict=True):
        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert g.prompt_tokens == len(tok(text, add_special_tokens=False)["input_ids"])


def test_transformers_sampling_is_seeded(tiny_engine):
    sampling = Sampling(temperature=1.0, top_p=0.95, top_k=20, max_tokens=8, seed=11)
    a = tiny_engine.chat(CONVERSATIONS[:2], sampling)
    b = tiny_engine.chat(CONVERSATIONS[:2], sampling)
    assert [g.text for g in a] == [g.text for g in b]


def test_create_transformers(tiny_qwen2):
    llm = {"engine": "transformers", "model": tiny_qwen2, "dtype": "float32", "batch_size": 2}
    engine = engines.create(llm, threads=1)
    assert isinstance(engine, engines.TransformersEngine)
    assert engine.batch_size == 2
    assert engine.tokenizer.padding_side == "left"
    out = engine.chat(CONVERSATIONS[:1], Sampling(max_tokens=3))
    assert len(out) == 1 and out[0].completion_tokens > 0


def test_transformers_guided_output_follows_the_pattern(tiny_engine):
    import regex

    sampling = Sampling(max_tokens=24)
    guides = [
        engines.guide_pattern("selection", 3),
        None,
        engines.guide_pattern("ranking", 2),
        engines.guide_pattern("selection", 12),
    ]
    free = tiny_engine.chat(CONVERSATIONS, sampling)
    tiny_engine.batch_size = 3
    try:
        guided = tiny_engine.chat(CONVERSATIONS, sampling, guides)
    finally:
        tiny_engine.batch_size = 1
    assert guided[1].text == free[1].text  # an unguided conversation in the same batch is not affected
    for g, pattern in zip(guided, guides, strict=True):
        if pattern is None:
            continue
        assert regex.fullmatch(pattern, g.text, partial=True), g.text
        if g.completion_tokens < sampling.max_tokens:  # stopped by itself: only at a complete match
            assert regex.fullmatch(pattern, g.text), g.text
    assert guided[0].text.startswith("My selection:[") or len(guided[0].text) < len("My selection:[")
    again = tiny_engine.chat(CONVERSATIONS, sampling, guides)
    assert [g.text for g in again] == [g.text for g in guided]
