"""Contrastive losses of the paper (PAPER-SPEC D), on in-batch scores.

Notation: B queries, each with a group of g passages; `scores` is [B, B*g], s(q_i, p_j) / tau over every
passage of the (cross-device gathered) batch. Query i's own group is columns i*g .. i*g+g-1; passages in
other queries' groups are always negatives. `labels` is [B, g]: 1 for a positive of the query's own group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_scores(q: torch.Tensor, p: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """s(q, d) = <E(q), E(d)> / tau for every query against every passage: [B, d] x [B*g, d] -> [B, B*g]."""
    return q @ p.T / temperature


def _own_block(labels: torch.Tensor, n_columns: int, offset: int = 0) -> torch.Tensor:
    """[B, g] group labels -> [B, n_columns] with each row's labels at its own group's columns."""
    b, g = labels.shape
    full = labels.new_zeros((b, n_columns))
    cols = (torch.arange(b, device=labels.device)[:, None] + offset) * g + torch.arange(
        g, device=labels.device
    )
    return full.scatter(1, cols, labels)


def single_positive(scores: torch.Tensor, group_size: int, offset: int = 0) -> torch.Tensor:
    """SingleLH / Rand1LH (D.1): InfoNCE with the first passage of each query's group as its positive.

    L = -(1/B) sum_i log softmax(z_i)[i*g]
    """
    b = scores.shape[0]
    target = (torch.arange(b, device=scores.device) + offset) * group_size
    return F.cross_entropy(scores, target)


def joint_lh(scores: torch.Tensor, labels: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """JointLH (D.2): L_i = -sum_{j: y_ij = 1} log P_i(j), averaged over queries with a positive (PAPER-SPEC:
    the code averages over rows whose loss is non-zero, i.e. rows with positives)."""
    y = _own_block(labels.to(scores.dtype), scores.shape[1], offset)
    per_query = -(y * F.log_softmax(scores, dim=1)).sum(dim=1)
    keep = y.sum(dim=1) > 0
    if not keep.any():
        return scores.sum() * 0.0  # zero, with a gradient graph
    return per_query[keep].mean()


def summarg(scores: torch.Tensor, labels: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """SumMargLH (D.3; v2's Disj-InfoNCE): L_i = -log sum_{j: y_ij = 1} P_i(j)
    = logsumexp_j z_ij - logsumexp_{j: y_ij = 1} z_ij, averaged over queries with a positive in their group;
    queries without one are skipped, and an all-empty batch gives a zero loss that still has a gradient."""
    y = _own_block(labels.to(torch.bool), scores.shape[1], offset)
    keep = y.any(dim=1)
    if not keep.any():
        return scores.sum() * 0.0
    positives = scores.masked_fill(~y, float("-inf"))
    per_query = torch.logsumexp(scores, dim=1) - torch.logsumexp(positives, dim=1)
    return per_query[keep].mean()


def own_group(scores: torch.Tensor, group_size: int, offset: int = 0) -> torch.Tensor:
    """[B, B*g] in-batch scores -> [B, g]: each query's scores on its own group (columns i*g .. i*g+g-1)."""
    b = scores.shape[0]
    cols = (torch.arange(b, device=scores.device)[:, None] + offset) * group_size + torch.arange(
        group_size, device=scores.device
    )
    return scores.gather(1, cols)


KL_REDUCTIONS = ("mean", "batchmean")


def replug_kl(
    group_scores: torch.Tensor,
    utility: torch.Tensor,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """REPLUG's KL(U || R) over each query's own group (PAPER-SPEC C.3), RetroMAE's distillation path.

        U_i = softmax(f_u / tau_t)  (f_u: LLM log-likelihood of the answer given query and passage i)
        R_i = softmax(s(q, d_i) / tau_s)
        KL(U || R) = sum_i U_i (log U_i - log R_i), summed over queries, divided by
            B * g for reduction 'mean' (torch's KLDivLoss(reduction="mean"), RetroMAE's choice), or
            B     for 'batchmean' (the mathematical KL averaged over queries).

    `group_scores` [B, g] are raw dot products and `utility` [B, g] the teacher's log-likelihoods (constants).
    A teacher entry of -inf (or a very negative one) has U_i = 0 and contributes exactly 0, as 0 log 0 = 0;
    torch's kl_div with log targets would give NaN there. d loss / d s = (R - U) / (tau_s * denominator).

    Reference (read, not copied): staoxiao/RetroMAE src/bi_encoder/modeling.py, BiEncoderModel.forward:
    `input = F.log_softmax(student_score / self.temperature)`, `target = F.softmax(teacher_score)` (no teacher
    temperature), `self.kl = nn.KLDivLoss(reduction="mean")`.
    """
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"unknown KL reduction {reduction!r} (expected one of {KL_REDUCTIONS})")
    if student_temperature <= 0 or teacher_temperature <= 0:
        raise ValueError("REPLUG temperatures must be positive")
    teacher = utility.detach().to(group_scores.dtype)
    if torch.isnan(teacher).any() or (teacher == float("inf")).any():
        raise ValueError("REPLUG utilities must be finite or -inf")
    if not torch.isfinite(teacher).any(dim=1).all():
        raise ValueError("a REPLUG group has no passage with a finite utility")
    u = torch.softmax(teacher / teacher_temperature, dim=1)
    log_r = F.log_softmax(group_scores / student_temperature, dim=1)
    total = (torch.xlogy(u, u) - u * log_r).sum()
    denominator = group_scores.numel() if reduction == "mean" else group_scores.shape[0]
    return total / denominator


def replug(
    scores: torch.Tensor,
    utility: torch.Tensor,
    group_size: int,
    temperature: float = 1.0,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    contrastive_weight: float = 0.01,
    kl_reduction: str = "mean",
    offset: int = 0,
) -> torch.Tensor:
    """The REPLUG training loss: replug_kl over each query's own group + contrastive_weight x SingleLH.

        L = KL(U || R) + w * CE,   CE = -(1/B) sum_i log softmax(s_i / tau)[i*g]

    `scores` [B, B*g] are the raw in-batch dot products of every query against every (gathered) passage;
    the KL sees only the query's own group (scores / tau_s), the cross-entropy all of them (scores / tau, the
    training temperature of the other losses), with the first passage of each group as the target: in
    RetroMAE's data that is the train_qrels positive; the trainer puts the query's top-utility passage there
    (see trainer.group_for). w = 0 is the pure KL.

    Reference (read, not copied): staoxiao/RetroMAE src/bi_encoder/modeling.py, BiEncoderModel.forward
    (`loss = kl_loss + self.contrastive_loss_weight * loss`, the loss being cross-entropy over the
    cross-device gathered scores with target `arange(B) * group_size`); default weight 1e-4 in RetroMAE
    src/bi_encoder/arguments.py (RetrieverTrainingArguments.contrastive_loss_weight), 0.01 in
    Trustworthy-Information-Access/Utility-Focused-LLM-Annotation bi-encode/arguments.py (run.sh does not
    override it).
    """
    if contrastive_weight < 0:
        raise ValueError("the contrastive weight must be >= 0")
    kl = replug_kl(
        own_group(scores, group_size, offset), utility, student_temperature, teacher_temperature, kl_reduction
    )
    if contrastive_weight == 0:
        return kl
    return kl + contrastive_weight * single_positive(scores / temperature, group_size, offset)


LOSSES = {
    "singlelh": single_positive,
    "rand1lh": single_positive,
    "jointlh": joint_lh,
    "summarg": summarg,
    "replug_kl": replug,
}


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """All ranks' tensors concatenated; this rank's slice keeps its autograd graph (the others are constants),
    so every rank computes the global loss and backpropagates into its own embeddings (PAPER-SPEC D.5)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    parts[dist.get_rank()] = t
    return torch.cat(parts)
