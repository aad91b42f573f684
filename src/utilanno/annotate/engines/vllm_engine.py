"""The vLLM engine: offline `vllm.LLM` with the model's chat template, prefix caching, tensor parallel over
the job's GPUs, optional structured output."""

from __future__ import annotations

import logging

from .base import AnswerScore, Engine, Generation, answer_token_ids, check_pairs, template_kwargs

log = logging.getLogger(__name__)


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
        chat_template_kwargs: dict | None = None,
    ):
        from vllm import LLM

        self.chat_template_kwargs = template_kwargs(chat_template_kwargs)
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
            min_p=sampling.min_p,
        )
        guides = guides or [None] * len(conversations)
        params = [
            SamplingParams(**kwargs, structured_outputs=StructuredOutputsParams(regex=g))
            if g
            else SamplingParams(**kwargs)
            for g in guides
        ]
        outputs = self._open().chat(
            conversations, params, use_tqdm=False, chat_template_kwargs=self.chat_template_kwargs or None
        )
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

        check_pairs(conversations, answers)
        tokenizer = self._open().get_tokenizer()
        pairs = [
            answer_token_ids(tokenizer, c, a, self.chat_template_kwargs)
            for c, a in zip(conversations, answers, strict=True)
        ]
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
