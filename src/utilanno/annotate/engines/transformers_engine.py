"""The transformers engine: batched `generate` on CPU or GPU; greedy output equals vLLM's on the same
weights."""

from __future__ import annotations

import logging

from .base import AnswerScore, Engine, Generation, answer_token_ids, check_pairs, template_kwargs

log = logging.getLogger(__name__)


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        batch_size: int = 8,
        device: str | None = None,
        threads: int | None = None,
        chat_template_kwargs: dict | None = None,
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
        self.chat_template_kwargs = template_kwargs(chat_template_kwargs)
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
            self.tokenizer.apply_chat_template(
                c, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
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
            if sampling.min_p > 0:
                kwargs["min_p"] = sampling.min_p
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
        check_pairs(conversations, answers)
        pairs = [
            answer_token_ids(self.tokenizer, c, a, self.chat_template_kwargs)
            for c, a in zip(conversations, answers, strict=True)
        ]
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
