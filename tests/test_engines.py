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
# The openai engine (the official SDK) against a fake OpenAI-compatible server on loopback


class FakeOpenAI:
    """POST /v1/chat/completions echoes the last user message.

    `statuses` queues answers to give first: an HTTP status code, or (code, headers). `hang` delays every
    answer by that many seconds; `usage=False` leaves usage out. Requests in flight are counted."""

    def __init__(self):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.statuses: list = []
        self.hang = 0.0
        self.usage = True
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body})
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    answer = fake.statuses.pop(0) if fake.statuses else 200
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer(body, answer)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self, body, answer):
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                if self.path != "/v1/chat/completions":
                    status = 404
                if status != 200:
                    self._send(status, {"error": {"message": f"status {status}", "type": "x"}}, headers)
                    return
                last = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
                # later conversations answer sooner, so that replies come back out of order
                delay = body["messages"][0].get("delay", 0) + fake.hang
                if delay:
                    threading.Event().wait(delay)
                reply = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": f"echo: {last}"},
                        }
                    ],
                }
                if fake.usage:
                    n, m = len(body["messages"]), len(last)
                    reply["usage"] = {"prompt_tokens": n, "completion_tokens": m, "total_tokens": n + m}
                self._send(200, reply, {})

            def _send(self, status, payload, headers):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
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
    monkeypatch.setattr(openai_engine, "_pause", lambda seconds, stop: calls.append(seconds))
    return calls


def _conv(text, **extra):
    return [{"role": "system", "content": "sys", **extra}, {"role": "user", "content": text}]


def test_openai_request_body_and_result(server, sleeps):
    engine = OpenAIEngine("my-model", server.base_url + "/", concurrency=2, retries=2)
    sampling = Sampling(temperature=0.3, top_p=0.9, top_k=20, max_tokens=77, seed=4)
    guide = engines.guide_pattern("selection", 3)
    out = engine.chat([_conv("hello"), _conv("free")], sampling, [guide, None])
    assert out == [Generation("echo: hello", 2, 5), Generation("echo: free", 2, 4)]
    assert len(server.requests) == 2
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    body = {r["body"]["messages"][1]["content"]: r["body"] for r in server.requests}
    assert body["hello"] == {
        "model": "my-model",
        "messages": _conv("hello"),
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 77,
        "seed": 4,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        # vLLM's fields beyond the OpenAI API (extra_body): explicit, never the server's defaults
        "top_k": 20,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "structured_outputs": {"regex": guide},
    }
    assert "structured_outputs" not in body["free"] and body["free"]["top_k"] == 20
    assert "authorization" not in server.headers[0]  # no key in the environment: no header
    assert server.headers[0]["content-type"] == "application/json"
    assert engine.usage == {"requests": 2, "retries": 0, "prompt_tokens": 4, "completion_tokens": 9}
    assert sleeps == []
    engine.close()
    engine.close()  # idempotent


def test_openai_defaults_are_greedy_and_seeded(server, sleeps):
    OpenAIEngine("m", server.base_url).chat([_conv("x")], Sampling())
    body = server.requests[0]["body"]
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"]) == (0.0, 1.0, -1, 0)


def test_openai_plain_server_refuses_what_it_cannot_do(server, sleeps):
    engine = OpenAIEngine("m", server.base_url, server="openai")
    engine.chat([_conv("x")], Sampling(top_k=-1))
    body = server.requests[0]["body"]
    for key in ("top_k", "min_p", "repetition_penalty", "structured_outputs"):
        assert key not in body
    assert body["seed"] == 0 and body["temperature"] == 0.0
    with pytest.raises(ValueError, match="has no top_k"):
        engine.chat([_conv("x")], Sampling(top_k=20))
    with pytest.raises(ValueError, match="structured_output needs regex-guided decoding"):
        engine.chat([_conv("x")], Sampling(), [engines.guide_pattern("ranking", 4)])
    assert len(server.requests) == 1  # refused before anything was sent
    with pytest.raises(ValueError, match="server must be one of"):
        OpenAIEngine("m", server.base_url, server="tgi")


def test_openai_api_key_header(server, sleeps, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    OpenAIEngine("m", server.base_url).chat([_conv("x")], Sampling())
    assert server.headers[0]["authorization"] == "Bearer sk-test"
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-other")
    OpenAIEngine("m", server.base_url, api_key_env="MY_JUDGE_KEY").chat([_conv("x")], Sampling())
    assert server.headers[1]["authorization"] == "Bearer sk-other"
    monkeypatch.setenv("MY_JUDGE_KEY", "")
    OpenAIEngine("m", server.base_url, api_key_env="MY_JUDGE_KEY").chat([_conv("x")], Sampling())
    assert "authorization" not in server.headers[2]


def test_openai_keeps_order_with_concurrency(server, sleeps):
    n = 8
    convs = [_conv(f"message {i}", delay=0.02 * (n - i)) for i in range(n)]
    out = OpenAIEngine("m", server.base_url, concurrency=n).chat(convs, Sampling())
    assert [g.text for g in out] == [f"echo: message {i}" for i in range(n)]
    assert len(server.requests) == n
    assert OpenAIEngine("m", server.base_url, concurrency=3).chat([], Sampling()) == []


def test_openai_concurrency_limit(server, sleeps):
    server.hang = 0.1
    engine = OpenAIEngine("m", server.base_url, concurrency=3)
    out = engine.chat([_conv(str(i)) for i in range(9)], Sampling())
    assert len(out) == 9
    assert server.max_in_flight == 3
    engine.close()


@pytest.mark.parametrize("code", [500, 503, 429, 408])
def test_openai_retries_server_errors(server, sleeps, code):
    server.statuses = [code]
    engine = OpenAIEngine("m", server.base_url, retries=3)
    out = engine.chat([_conv("again")], Sampling())
    assert out[0].text == "echo: again"
    assert len(server.requests) == 2
    assert server.requests[0]["body"] == server.requests[1]["body"]
    assert sleeps == [1]
    assert engine.usage["retries"] == 1 and engine.usage["requests"] == 1


def test_openai_429_then_200_really_waits(server):
    """No patched sleep: the stub answers 429, then 200; the engine waits its back-off and succeeds."""
    import time

    server.statuses = [429]
    engine = OpenAIEngine("m", server.base_url, retries=2, backoff=0.3)
    start = time.perf_counter()
    assert engine.chat([_conv("patience")], Sampling())[0].text == "echo: patience"
    assert time.perf_counter() - start >= 0.3
    assert len(server.requests) == 2


def test_openai_honours_retry_after_up_to_the_cap(server, sleeps):
    server.statuses = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"})]
    OpenAIEngine("m", server.base_url, retries=3, max_backoff=30).chat([_conv("x")], Sampling())
    assert sleeps == [7, 30]


def test_openai_backoff_schedule(server, sleeps):
    server.statuses = [500] * 6
    with pytest.raises(engines.OpenAIEngineError, match="giving up after 5 retries: HTTP 500: status 500"):
        OpenAIEngine("m", server.base_url, retries=5, backoff=0.5, max_backoff=5).chat(
            [_conv("x")], Sampling()
        )
    assert sleeps == [0.5, 1, 2, 4, 5]
    assert len(server.requests) == 6


def test_openai_jitter_stretches_the_delay_within_bounds(server):
    engine = OpenAIEngine("m", server.base_url, backoff=2, jitter=0.5)
    delays = [engine.delay(2) for _ in range(200)]
    assert all(4 <= d <= 6 for d in delays) and len(set(delays)) > 1
    assert OpenAIEngine("m", server.base_url, backoff=2).delay(3) == 8


def test_openai_gives_up_after_retries(server, sleeps):
    server.statuses = [500, 500, 500]
    with pytest.raises(RuntimeError, match="giving up after 2 retries"):
        OpenAIEngine("m", server.base_url, retries=2).chat([_conv("x")], Sampling())
    assert len(server.requests) == 3
    assert sleeps == [1, 2]


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_openai_client_error_is_not_retried(server, sleeps, code):
    server.statuses = [code]
    with pytest.raises(RuntimeError, match=f"HTTP {code}.*status {code}; not retried") as err:
        OpenAIEngine("m", server.base_url, retries=5).chat([_conv("x")], Sampling())
    assert ("$OPENAI_API_KEY" in str(err.value)) == (code == 401)
    assert len(server.requests) == 1
    assert sleeps == []


def test_openai_a_failed_request_fails_the_call_and_stops_the_rest(server, sleeps):
    server.statuses = [400]
    engine = OpenAIEngine("m", server.base_url, concurrency=1)
    with pytest.raises(engines.OpenAIEngineError, match="HTTP 400"):
        engine.chat([_conv(str(i)) for i in range(20)], Sampling())
    assert len(server.requests) <= 2  # the rest were cancelled before being sent
    assert engine.chat([_conv("next")], Sampling())[0].text == "echo: next"  # the engine still works


def test_openai_a_failed_call_wakes_requests_waiting_to_retry(server):
    """One request fails for good while another waits 30 s for its retry: the call fails at once and the
    waiting request gives up instead of sleeping on (close() does not wait for it either)."""
    import time

    server.statuses = [500, 400]  # whichever request comes first waits to retry, the other fails
    engine = OpenAIEngine("m", server.base_url, concurrency=2, retries=5, backoff=30)
    start = time.perf_counter()
    with pytest.raises(engines.OpenAIEngineError, match="HTTP 400"):
        engine.chat([_conv("a"), _conv("b")], Sampling())
    engine.close()
    assert time.perf_counter() - start < 10
    assert len(server.requests) == 2


def test_openai_connection_refused_is_retried(sleeps, monkeypatch):
    import socket

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = OpenAIEngine("m", f"http://127.0.0.1:{port}/v1", retries=1, timeout=5)
    with pytest.raises(
        RuntimeError, match="giving up after 1 retries: cannot connect.*is the server running"
    ):
        engine.chat([_conv("x")], Sampling())
    assert sleeps == [1]


def test_openai_timeout_is_retried(server, sleeps):
    server.hang = 1.0
    engine = OpenAIEngine("m", server.base_url, retries=1, timeout=0.2)
    with pytest.raises(RuntimeError, match=r"giving up after 1 retries: no answer within 0.2 s \(timeout\)"):
        engine.chat([_conv("x")], Sampling())
    assert len(server.requests) == 2 and sleeps == [1]


def test_openai_without_usage_counts_zero_and_warns_once(server, sleeps, caplog):
    server.usage = False
    out = OpenAIEngine("m", server.base_url).chat([_conv("a"), _conv("b")], Sampling())
    assert [(g.prompt_tokens, g.completion_tokens) for g in out] == [(0, 0), (0, 0)]
    assert sum("reports no token usage" in r.getMessage() for r in caplog.records) == 1


def test_openai_cannot_score_answers(server):
    with pytest.raises(NotImplementedError, match="cannot score answers"):
        OpenAIEngine("m", server.base_url).answer_logprobs([_conv("q")], ["a"])


def test_usage_cost():
    assert engines.usage_cost({"model": "m"}, 10**6, 10**6) is None
    llm = {"price_per_million_input": 2.0, "price_per_million_output": 8.0}
    assert engines.usage_cost(llm, 1000, 500) == pytest.approx(0.002 + 0.004)
    assert engines.usage_cost({"price_per_million_input": 0.5}, 3 * 10**6, 10**6) == pytest.approx(1.5)
    assert engines.usage_cost({"price_per_million_output": 0.5}, 10**6, 0) == 0


def test_redact_url():
    assert openai_engine.redact_url("http://u:secret@127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert openai_engine.redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


CANARY = "sk-canary-7f3c9e1d-never-log-me"


def test_openai_api_key_never_leaks(server, sleeps, monkeypatch, caplog, tmp_path):
    """The key reaches the server and nothing else: no log record (every logger at DEBUG: ours, the SDK's,
    the HTTP client's), no output file, no exception message or repr, not the engine's repr."""
    import logging

    from utilanno.annotate import steps

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "utilanno"):
        caplog.set_level(logging.DEBUG, logger=name)
    engine = OpenAIEngine("m", server.base_url, retries=2)
    server.statuses = [429, 500]

    def finish(gens):
        return {"raw": gens[0].text}

    tasks = [steps.Task(f"q{i}", [_conv(f"question {i}")], finish) for i in range(3)]
    out = tmp_path / "shard.jsonl"
    steps.run_shard("pseudo_answer", tasks, engine, "openai m", Sampling(), None, out, batch_queries=2)
    assert server.headers[0]["authorization"] == f"Bearer {CANARY}"  # the key was used

    errors = []
    for status in (401, 400):
        server.statuses = [status]
        with pytest.raises(RuntimeError) as err:
            engine.chat([_conv("x")], Sampling())
        errors.append(err.value)
    refused = OpenAIEngine("m", "http://127.0.0.1:9/v1", retries=0, timeout=2)
    with pytest.raises(RuntimeError) as err:
        refused.chat([_conv("x")], Sampling())
    errors.append(err.value)

    texts = [caplog.text, repr(engine), str(engine), repr(refused)]
    texts += [r.getMessage() + repr(r.args) for r in caplog.records]
    for e in errors:
        texts += [str(e), repr(e), repr(e.__cause__), repr(e.__context__), repr(vars(e))]
    texts += [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    texts += [repr(v) for k, v in vars(engine).items() if k != "_client"]
    assert any("Retrying" in t or "retry 1 of 2" in t for t in texts)  # the logs were captured
    for t in texts:
        assert CANARY not in t
    assert out.exists() and len(out.read_text().splitlines()) == 3


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
    assert (engine.server, engine.api_key_env, engine.concurrency, engine.retries) == (
        "vllm",
        "OPENAI_API_KEY",
        8,
        5,
    )
    llm = {
        "engine": "openai",
        "model": "m",
        "base_url": "http://127.0.0.1:1/v1",
        "server": "openai",
        "api_key_env": "JUDGE_KEY",
        "concurrency": 3,
        "max_retries": 2,
        "retry_backoff": 0.25,
        "timeout": 30,
        "price_per_million_input": 1.0,
    }
    engine = engines.create(llm)
    assert (engine.server, engine.api_key_env, engine.concurrency) == ("openai", "JUDGE_KEY", 3)
    assert (engine.retries, engine.backoff, engine.timeout) == (2, 0.25, 30)


def test_the_openai_keys_pass_config_validation():
    from pathlib import Path

    import yaml

    from utilanno import config

    tiny = yaml.safe_load((Path(__file__).parent / "config" / "tiny.yaml").read_text())
    judge = {
        "engine": "openai",
        "model": "judge",
        "base_url": "http://127.0.0.1:8000/v1",
        "server": "openai",
        "api_key_env": "JUDGE_KEY",
        "concurrency": 16,
        "max_retries": 3,
        "retry_backoff": 0.5,
        "timeout": 120,
        "price_per_million_input": 0.15,
        "price_per_million_output": 0.6,
    }
    tiny.setdefault("llms", {})["judge"] = dict(judge)
    checked = config.validate(tiny)
    assert {k: checked["llms"]["judge"][k] for k in judge} == judge
    new_keys = set(judge) - {"engine", "model", "base_url"}
    for name, entry in checked["llms"].items():  # no defaults filled in: the engine's defaults apply
        if name != "judge":
            assert not new_keys & set(entry), name
    for bad in ({"server": "tgi"}, {"api_key_env": "not a name"}, {"concurrency": 0}, {"api_key": "sk-x"}):
        tiny = yaml.safe_load((Path(__file__).parent / "config" / "tiny.yaml").read_text())
        tiny.setdefault("llms", {})["judge"] = {**judge, **bad}
        with pytest.raises(config.ConfigError):
            config.validate(tiny)


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
