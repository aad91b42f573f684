"""One optimizer step's forward and backward (PAPER-SPEC D.5, E): the global loss over the cross-device
batch from each process's embeddings, optionally with gradient caching."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from utilanno.train import losses
from utilanno.train.settings import Settings


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_const(t: torch.Tensor) -> torch.Tensor:
    rank, world = _dist()
    if world == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def compute_loss(s: Settings, q: torch.Tensor, p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The global loss of one step from local embeddings: q [b, d], p [b*g, d], labels [b, g]."""
    Q, P, Y = losses.gather_with_grad(q), losses.gather_with_grad(p), _gather_const(labels)
    if s.loss == "replug_kl":
        return losses.replug(
            losses.in_batch_scores(Q, P),
            Y,
            s.group_size,
            temperature=s.temperature,
            student_temperature=s.replug_student_temperature,
            teacher_temperature=s.replug_teacher_temperature,
            contrastive_weight=s.replug_contrastive_weight,
            kl_reduction=s.replug_kl_reduction,
        )
    scores = losses.in_batch_scores(Q, P, s.temperature)
    if s.loss in ("singlelh", "rand1lh"):
        return losses.single_positive(scores, s.group_size)
    return losses.LOSSES[s.loss](scores, Y)


def local_batch(s: Settings, world: int) -> int:
    """Queries per process per step: global_batch split evenly over the processes, else per_device_batch."""
    if s.global_batch is None:
        return s.per_device_batch
    if s.global_batch % world:
        raise ValueError(
            f"training.global_batch {s.global_batch} does not split evenly over {world} processes"
            f" (training.gpus): use a multiple of {world}"
        )
    return s.global_batch // world


def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def forward_backward(
    model: torch.nn.Module,
    s: Settings,
    q_in: dict,
    p_in: dict,
    labels: torch.Tensor,
    scale=lambda loss: loss,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """Forward and backward of one step over this process's queries (q_in: B queries, p_in: B x group_size
    passages, labels [B, g]); the parameters' .grad hold the gradient of the global loss x world size (see
    the module docstring). Returns the loss, detached. `scale` is the loss scaler's (fp16).

    With `s.mini_batch` < B, gradient caching (GradCache; Gao et al. 2021): embed every mini-batch without a
    graph, take the loss and its gradient with respect to the embeddings, then re-encode each mini-batch with
    a graph and backpropagate its slice of that gradient. Each mini-batch's two passes draw the same dropout
    masks (the random state is replayed), so the gradient equals that of encoding the mini-batches with a
    graph and taking the loss over all of them; only one mini-batch's activations are alive at a time."""
    world = _dist()[1]
    device = labels.device
    b, g = labels.shape
    mini = s.mini_batch or b

    def encode(lo: int, hi: int):
        q = {k: v[lo:hi] for k, v in q_in.items()}
        p = {k: v[lo * g : hi * g] for k, v in p_in.items()}
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            qe, pe = model(q, p)
        return qe.float(), pe.float()

    if mini >= b:
        q_emb, p_emb = encode(0, b)
        loss = compute_loss(s, q_emb, p_emb, labels)
        scale(loss * world).backward()
        return loss.detach()
    chunks = [(lo, min(lo + mini, b)) for lo in range(0, b, mini)]
    states, qs, ps = [], [], []
    with torch.no_grad():
        for lo, hi in chunks:
            states.append(_rng_state(device))
            qe, pe = encode(lo, hi)
            qs.append(qe)
            ps.append(pe)
    after = _rng_state(device)
    q_emb, p_emb = torch.cat(qs).requires_grad_(True), torch.cat(ps).requires_grad_(True)
    loss = compute_loss(s, q_emb, p_emb, labels)
    scale(loss * world).backward()
    q_grad, p_grad = q_emb.grad, p_emb.grad
    for k, (lo, hi) in enumerate(chunks):
        _set_rng_state(states[k], device)
        last = k == len(chunks) - 1
        # DistributedDataParallel reduces gradients across processes once, after the last mini-batch
        sync = model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
        with sync:
            qe, pe = encode(lo, hi)
            ((qe * q_grad[lo:hi]).sum() + (pe * p_grad[lo * g : hi * g]).sum()).backward()
    _set_rng_state(after, device)
    return loss.detach()
