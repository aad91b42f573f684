"""Dense-retriever training (PAPER-SPEC D, E): a shared encoder, groups of `group_size` passages per query,
the paper's losses over every passage of the (cross-device) batch, AdamW with a linear schedule.

Determinism and resume: the query order of epoch e is a permutation seeded by (seed, e), and a query's group
in epoch e is drawn with a generator seeded by (seed, e, qid). The batches are therefore a function of the
step alone, and a checkpoint needs only the weights, optimizer, scheduler, scaler and step; a resumed run
sees exactly the batches an uninterrupted one would.

Distributed (torchrun): each rank encodes its slice of the global batch; queries, passages and labels are
gathered (the local slice keeps its gradient) and every rank computes the global loss. The loss is scaled by
the world size before backward, so DistributedDataParallel's averaging yields exactly the single-process
gradient of the global batch. The released code omits that factor (D.5); AdamW is nearly invariant to it.

REPLUG (losses.replug) mixes two terms, so there the bookkeeping changes their balance, not only the scale:
RetroMAE's distillation path (staoxiao/RetroMAE src/bi_encoder/modeling.py, BiEncoderModel.forward) takes the
KL on each rank's own queries before the all-gather (DDP's averaging makes it the KL mean of the global
batch) and the cross-entropy on the gathered batch without the world-size factor, so its effective gradient
is that of KL + (w / W) CE on W processes. Here it is KL + w CE on any W: `replug_contrastive_weight` w / 8
reproduces the released balance of an 8-GPU run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from utilanno.atomic import atomic_dir, atomic_path
from utilanno.progress import Progress
from utilanno.train import model_card
from utilanno.train.encoder import Encoder
from utilanno.train.labels import sample_group
from utilanno.train.queries import Query, load_pool_texts, load_queries  # noqa: F401  (re-exported)
from utilanno.train.settings import HARD_LOSSES, SAMPLINGS, Settings  # noqa: F401  (re-exported)
from utilanno.train.step import _dist, compute_loss, forward_backward, local_batch  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


def group_for(
    q: Query, s: Settings, epoch: int, avg_positives: float | None
) -> tuple[list[str], list[float]]:
    rng = random.Random(f"{s.seed}:{epoch}:{q.qid}")
    if q.utility is not None:
        # REPLUG: the top-utility passage first (the contrastive term's target, as RetroMAE's data puts the
        # train_qrels positive first), then g - 1 other candidates at random, each with its utility
        others = q.negatives
        n = s.group_size - 1
        docs = q.positives + (rng.sample(others, n) if len(others) >= n else rng.choices(others, k=n))
        return docs, [q.utility[d] for d in docs]
    docs, labels = sample_group(q.positives, q.negatives, s.group_size, s.sampling, rng, avg_positives)
    return docs, [float(y) for y in labels]


def fingerprint(settings: Settings, *files) -> str:
    """Identifies a training run: settings and the content of its inputs; a checkpoint of another run is
    never resumed."""
    h = hashlib.blake2b(json.dumps(asdict(settings), sort_keys=True).encode(), digest_size=12)
    for f in files:
        p = Path(f)
        for path in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if path.is_file():
                h.update(path.name.encode())
                h.update(hashlib.blake2b(path.read_bytes(), digest_size=16).digest())
    return h.hexdigest()


class Batches:
    """The global batches of every step, as a function of the step (see the module docstring)."""

    def __init__(self, queries: list[Query], global_batch: int, epochs: float, seed: int):
        if not queries:
            raise ValueError("no training queries with both a positive and a negative")
        self.queries = queries
        self.global_batch = global_batch
        self.seed = seed
        self.per_epoch = math.ceil(len(queries) / global_batch)
        self.total = max(1, math.ceil(epochs * self.per_epoch))
        self._perm: tuple[int, list[int]] | None = None

    def __call__(self, step: int) -> tuple[int, list[Query]]:
        epoch, k = divmod(step, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            order = list(range(len(self.queries)))
            random.Random(f"{self.seed}:order:{epoch}").shuffle(order)
            self._perm = (epoch, order)
        order = self._perm[1]
        idx = [order[(k * self.global_batch + i) % len(order)] for i in range(self.global_batch)]
        return epoch, [self.queries[i] for i in idx]


class Checkpoint:
    """One file, replaced atomically; rank 0 writes it, every rank reads it."""

    def __init__(self, folder: str | Path, fp: str):
        self.folder = Path(folder)
        self.path = self.folder / "state.pt"
        self.log = self.folder / "train-log.jsonl"
        self.fp = fp

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:  # weights only: a planted pickle cannot run code here
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            log.warning("checkpoint %s is not a weights-only checkpoint (%s); starting over", self.path, err)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fp:
            log.warning(
                "checkpoint %s belongs to another run (settings or inputs changed); starting over", self.path
            )
            return None
        return state

    def save(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save({**state, "fingerprint": self.fp}, tmp)

    def reset(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend)


def train(
    init_model: str | Path,
    labels_file: str | Path,
    pool_files: list,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    settings: Settings,
    stop_after: int | None = None,
) -> dict | None:
    """Train from `init_model` (a backbone or a stage-1 model) on one label set; publish a model folder that
    transformers loads (plus encoder.json, train-log.jsonl, training.json). Returns the summary on rank 0.

    `stop_after` ends the run after that many steps without publishing (tests of resume)."""
    _init_distributed()
    rank, world = _dist()
    device = _device()
    s = settings
    torch.manual_seed(s.seed)
    soft = s.loss == "replug_kl"
    texts, passages = load_pool_texts(pool_files)
    queries, counts = load_queries(labels_file, texts, soft)
    if not queries:  # e.g. an annotator that selected nothing: say what the label set held
        raise ValueError(
            f"{labels_file}: no training query with both a positive and a negative"
            f" ({counts['queries_in']} queries: {counts['no_positive']} without a positive,"
            f" {counts['no_negative']} without a negative, {counts['no_text']} without a text in the pools)"
        )
    avg_pos = sum(len(q.positives) for q in queries) / len(queries) if queries and not soft else None
    per_device = local_batch(s, world)
    batches = Batches(queries, per_device * world, s.epochs, s.seed)
    fp = fingerprint(s, init_model, labels_file, *pool_files) + f"-w{world}"
    ckpt = Checkpoint(checkpoint_dir, fp)

    encoder = Encoder(init_model, s.pooling).to(device)
    model = encoder
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            encoder, device_ids=[device.index] if device.type == "cuda" else None
        )
    # fused: one kernel over all tensors (the default per-tensor loop costs ~5x more per step on CPU)
    optimizer = torch.optim.AdamW(
        [p for p in encoder.parameters() if p.requires_grad],
        lr=s.learning_rate,
        weight_decay=s.weight_decay,
        fused=True,
    )
    warmup = int(s.warmup_ratio * batches.total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / max(1, warmup)
            if step < warmup
            else max(0.0, (batches.total - step) / max(1, batches.total - warmup))
        ),
    )
    # fp16 with a loss scaler on GPUs as the paper ran; bf16 autocast on GPUs and CPUs; fp16 on a CPU is fp32
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(s.precision)
    if device.type != "cuda" and amp is torch.float16:
        amp = None
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)

    start = 0
    state = ckpt.load()
    if state is not None:
        encoder.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start = state["step"]
        torch.set_rng_state(state["rng"])  # dropout continues as if never interrupted
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if rank == 0:
            log.info("resuming from step %d of %d (%s)", start, batches.total, ckpt.path)
    elif rank == 0:
        ckpt.reset()
    if world > 1:
        dist.barrier()
    if rank == 0:
        log.info(
            "training %s: %s queries (%s), %d steps of %d x %d queries x %d passages, world %d%s",
            Path(out_dir).name,
            len(queries),
            json.dumps(counts),
            batches.total,
            world,
            per_device,
            s.group_size,
            world,
            f", gradient caching in mini-batches of {s.mini_batch}"
            if (s.mini_batch or per_device) < per_device
            else "",
        )
        _truncate_log(ckpt.log, start)

    began, seen = time.perf_counter(), 0
    bar = Progress(f"train {Path(out_dir).name}", batches.total, "steps", initial=start, logger=log)
    model.train()
    for step in range(start, batches.total):
        epoch, batch = batches(step)
        mine = batch[rank * per_device : (rank + 1) * per_device]
        groups = [group_for(q, s, epoch, avg_pos) for q in mine]
        q_in = encoder.tokenize([q.text for q in mine], s.query_max_len)
        p_in = encoder.tokenize(
            [encoder.passage(*passages[d]) for docs, _ in groups for d in docs],
            s.passage_max_len,
        )
        labels = torch.tensor([y for _, y in groups], dtype=torch.float32, device=device)
        q_in = {k: v.to(device) for k, v in q_in.items()}
        p_in = {k: v.to(device) for k, v in p_in.items()}
        loss = forward_backward(model, s, q_in, p_in, labels, scaler.scale, amp)
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(encoder.parameters(), s.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)  # frees the gradients before the next forward pass
        seen += len(batch)
        done = step + 1
        if rank == 0:
            bar.update(1, loss=f"{loss.item():.4f}", lr=f"{lr:.3g}")
            with ckpt.log.open("a") as f:
                f.write(
                    json.dumps(
                        {
                            "step": done,
                            "epoch": epoch,
                            "loss": round(loss.item(), 6),
                            "lr": lr,
                            "grad_norm": round(float(grad_norm), 4),
                        }
                    )
                    + "\n"
                )
        # the last step publishes the model instead: a checkpoint there would be deleted at once
        if (done % s.checkpoint_every == 0 and done < batches.total) or done == stop_after:
            if rank == 0:
                ckpt.save(
                    {
                        "model": encoder.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(),
                        "step": done,
                        "rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    }
                )
            if world > 1:
                dist.barrier()
        if done == stop_after:
            return None
    wall = time.perf_counter() - began
    summary = None
    if rank == 0:
        curve = [json.loads(line) for line in ckpt.log.read_text().splitlines()]
        summary = {
            "settings": asdict(s),
            "init_model": str(init_model),
            "labels": str(labels_file),
            "counts": counts,
            "world_size": world,
            "steps": batches.total,
            "steps_per_epoch": batches.per_epoch,
            "resumed_from_step": start,
            "first_loss": curve[0]["loss"] if curve else None,
            "final_loss": curve[-1]["loss"] if curve else None,
            "wall_seconds": round(wall, 2),
            "queries_per_second": round(seen / wall, 2) if wall > 0 else None,
        }
        with atomic_dir(out_dir) as tmp:
            encoder.save(tmp, query_max_len=s.query_max_len, passage_max_len=s.passage_max_len)
            shutil.copy(ckpt.log, tmp / "train-log.jsonl")
            (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
            (tmp / "README.md").write_text(model_card.render(summary, Path(out_dir).name))
        shutil.rmtree(ckpt.folder, ignore_errors=True)
        log.info(
            "trained %s: loss %s -> %s in %.1f s", out_dir, summary["first_loss"], summary["final_loss"], wall
        )
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _truncate_log(path: Path, step: int) -> None:
    """A resumed run rewrites the steps after its checkpoint: drop their old lines."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))
