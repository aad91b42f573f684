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


def replug_kl(
    group_scores: torch.Tensor, utility: torch.Tensor, utility_temperature: float = 1.0
) -> torch.Tensor:
    """REPLUG (C.3): KL(U || R) per query over its own candidate group, averaged over queries.

        U = softmax(f_u / t) over the group (f_u: LLM log-likelihood of the answer given query and passage)
        R = softmax(s(q, d)) over the same group
        KL(U || R) = sum_i U_i (log U_i - log R_i)
    `group_scores` and `utility` are [B, g].
    """
    log_r = F.log_softmax(group_scores, dim=1)
    log_u = F.log_softmax(utility / utility_temperature, dim=1)
    return F.kl_div(log_r, log_u, reduction="batchmean", log_target=True)


LOSSES = {
    "singlelh": single_positive,
    "rand1lh": single_positive,
    "jointlh": joint_lh,
    "summarg": summarg,
    "replug_kl": replug_kl,
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
