"""LLM engines behind one interface (see `base`): vLLM, transformers and any OpenAI-compatible endpoint."""

from __future__ import annotations

from .base import AnswerScore, Engine, Generation, Sampling, answer_token_ids, guide_pattern, template_kwargs
from .openai_engine import OPENAI_NO_SCORES, OpenAIEngine, OpenAIEngineError, usage_cost
from .transformers_engine import RegexGuide, TransformersEngine
from .vllm_engine import VllmEngine

__all__ = [
    "OPENAI_NO_SCORES",
    "AnswerScore",
    "Engine",
    "Generation",
    "OpenAIEngine",
    "OpenAIEngineError",
    "RegexGuide",
    "Sampling",
    "TransformersEngine",
    "VllmEngine",
    "answer_token_ids",
    "create",
    "guide_pattern",
    "template_kwargs",
    "usage_cost",
]


def create(llm: dict, gpus: int | None = None, threads: int | None = None) -> Engine:
    """An engine from an `llms.<name>` config entry (its `chat_template_kwargs` go to every engine)."""
    engine = llm.get("engine", "vllm")
    if engine == "transformers":
        return TransformersEngine(
            llm["model"],
            llm.get("dtype", "auto"),
            llm.get("batch_size", 8),
            threads=threads,
            chat_template_kwargs=llm.get("chat_template_kwargs"),
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
            chat_template_kwargs=llm.get("chat_template_kwargs"),
        )
    if engine == "openai":
        if not llm.get("base_url"):
            raise ValueError("the openai engine needs 'base_url'")
        return OpenAIEngine(
            llm["model"],
            llm["base_url"],
            concurrency=llm.get("concurrency", 8),
            retries=llm.get("max_retries", 5),
            timeout=llm.get("timeout", 600),
            server=llm.get("server", "vllm"),
            api_key_env=llm.get("api_key_env", "OPENAI_API_KEY"),
            backoff=llm.get("retry_backoff", 1.0),
            jitter=0.25,
            chat_template_kwargs=llm.get("chat_template_kwargs"),
        )
    raise ValueError(f"unknown engine {engine!r}")
