"""Training settings (PAPER-SPEC E): one dataclass, validated on construction; the plan builds it from the
config's `training:` block and the experiment, the trainer and its step read it."""

from __future__ import annotations

from dataclasses import dataclass

from utilanno.train import losses

HARD_LOSSES = ("singlelh", "rand1lh", "jointlh", "summarg")
SAMPLINGS = ("human", "first", "pos_one", "pos_all", "pos_avg")


@dataclass
class Settings:
    loss: str
    sampling: str = "pos_all"
    pooling: str = "cls"
    query_max_len: int = 32
    passage_max_len: int = 140
    group_size: int = 16
    per_device_batch: int = 16
    # Queries per optimizer step over all processes (None: per_device_batch x processes); each process takes
    # an equal share. mini_batch: queries per forward pass with gradient caching (None: the whole share).
    global_batch: int | None = None
    mini_batch: int | None = None
    learning_rate: float = 3e-5
    epochs: float = 2.0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    precision: str = "fp16"
    seed: int = 42
    checkpoint_every: int = 500
    # REPLUG (loss replug_kl) only: KL(softmax(f_u / teacher) || softmax(s / student)) over the query's group,
    # plus contrastive_weight x SingleLH (losses.replug); defaults: RetroMAE's, weight from the authors' code
    replug_teacher_temperature: float = 1.0
    replug_student_temperature: float = 1.0
    replug_contrastive_weight: float = 0.01
    replug_kl_reduction: str = "mean"

    def __post_init__(self):
        if self.loss not in (*HARD_LOSSES, "replug_kl"):
            raise ValueError(f"unknown loss {self.loss!r}")
        if (
            self.temperature <= 0
            or self.replug_teacher_temperature <= 0
            or self.replug_student_temperature <= 0
        ):
            raise ValueError("temperatures must be positive")
        if self.replug_contrastive_weight < 0:
            raise ValueError("replug_contrastive_weight must be >= 0")
        if self.replug_kl_reduction not in losses.KL_REDUCTIONS:
            raise ValueError(
                f"unknown replug_kl_reduction {self.replug_kl_reduction!r}"
                f" (expected one of {losses.KL_REDUCTIONS})"
            )
        for key in ("global_batch", "mini_batch"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r} (expected one of {SAMPLINGS})")
        if self.loss in ("singlelh", "rand1lh") and self.sampling not in ("human", "first", "pos_one"):
            # SingleLH/Rand1LH score the group's first passage, the one drawn positive, as its only positive
            raise ValueError(
                f"loss {self.loss} needs sampling 'human', 'first' or 'pos_one' (one positive in front)"
            )
