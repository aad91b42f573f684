"""The paper's losses against hand computations, sentence-transformers, and a two-process gloo run."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from utilanno.train import losses

torch.set_num_threads(1)


def lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


# Two queries, groups of two: columns 0,1 belong to query 0, columns 2,3 to query 1.
S = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 1.0, 3.0, 2.0]], requires_grad=True)


def test_single_positive_by_hand():
    expected = ((lse([2, 1, 0.5, -1]) - 2.0) + (lse([0, 1, 3, 2]) - 3.0)) / 2
    assert losses.single_positive(S, group_size=2).item() == pytest.approx(expected)


def test_summarg_by_hand():
    labels = torch.tensor([[1, 1], [0, 1]])
    expected = ((lse([2, 1, 0.5, -1]) - lse([2, 1])) + (lse([0, 1, 3, 2]) - 2.0)) / 2
    assert losses.summarg(S, labels).item() == pytest.approx(expected)


def test_summarg_skips_queries_without_positive_and_is_zero_with_grad_when_all_empty():
    one = losses.summarg(S, torch.tensor([[1, 0], [0, 0]]))
    assert one.item() == pytest.approx(lse([2, 1, 0.5, -1]) - 2.0)
    empty = losses.summarg(S, torch.zeros(2, 2, dtype=torch.long))
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()
    assert S.grad is not None and torch.all(S.grad == 0)
    S.grad = None


def test_jointlh_by_hand():
    labels = torch.tensor([[1, 1], [0, 1]])
    q0 = (lse([2, 1, 0.5, -1]) - 2.0) + (lse([2, 1, 0.5, -1]) - 1.0)
    q1 = lse([0, 1, 3, 2]) - 2.0
    assert losses.joint_lh(S, labels).item() == pytest.approx((q0 + q1) / 2)
    assert losses.joint_lh(S, torch.tensor([[0, 0], [0, 1]])).item() == pytest.approx(q1)


def test_summarg_equals_single_positive_with_one_positive_first():
    torch.manual_seed(0)
    scores = torch.randn(4, 4 * 3)
    first = torch.zeros(4, 3, dtype=torch.long)
    first[:, 0] = 1
    assert losses.summarg(scores, first).item() == pytest.approx(losses.single_positive(scores, 3).item())
    assert losses.joint_lh(scores, first).item() == pytest.approx(losses.single_positive(scores, 3).item())


def test_replug_kl_by_hand():
    r = torch.tensor([[1.0, 0.0, -1.0]])
    u = torch.tensor([[-0.5, -2.0, -3.0]])
    pu = torch.softmax(u, 1)[0].tolist()
    pr = torch.softmax(r, 1)[0].tolist()
    expected = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pu, pr, strict=True))
    assert losses.replug_kl(r, u).item() == pytest.approx(expected, rel=1e-5)  # float32
    assert losses.replug_kl(u, u).item() == pytest.approx(0.0, abs=1e-7)


def test_single_positive_equals_sentence_transformers_mnrl():
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import dot_score

    torch.manual_seed(1)
    b, g, d = 4, 3, 8
    q, p = torch.randn(b, d), torch.randn(b, g, d)
    ours = losses.single_positive(losses.in_batch_scores(q, p.reshape(b * g, d)), group_size=g)
    mnrl = MultipleNegativesRankingLoss(model=None, scale=1.0, similarity_fct=dot_score)
    theirs = mnrl.compute_loss_from_embeddings([q] + [p[:, k] for k in range(g)], labels=None)
    assert st is not None and ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def _worker(rank, world, port, q, p, labels, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    b = q.shape[0] // world
    mine = slice(rank * b, (rank + 1) * b)
    local_q = q[mine].clone().requires_grad_(True)
    local_p = p[mine].clone().requires_grad_(True)
    scores = losses.in_batch_scores(
        losses.gather_with_grad(local_q), losses.gather_with_grad(local_p.flatten(0, 1))
    )
    loss = losses.summarg(scores, losses.gather_with_grad(labels[mine]))
    loss.backward()
    out[rank] = torch.cat([loss.detach().reshape(1), local_q.grad.flatten(), local_p.grad.flatten()])
    dist.destroy_process_group()


def test_two_processes_with_cross_device_negatives_equal_one_process():
    torch.manual_seed(2)
    b, g, d = 4, 3, 5
    q, p = torch.randn(b, d), torch.randn(b, g, d)
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]])
    qq, pp = q.clone().requires_grad_(True), p.clone().requires_grad_(True)
    whole = losses.summarg(losses.in_batch_scores(qq, pp.flatten(0, 1)), labels)
    whole.backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, port, q, p, labels, out), nprocs=2, join=True)
    for rank in range(2):
        loss, rest = out[rank][0], out[rank][1:]
        assert loss.item() == pytest.approx(whole.item(), rel=1e-6)  # every rank computes the global loss
        n = 2 * d
        grad_q, grad_p = rest[:n].reshape(2, d), rest[n:].reshape(2, g, d)
        # each rank's gradient is the full-batch gradient of its slice (no averaging across ranks here)
        torch.testing.assert_close(grad_q, qq.grad[2 * rank : 2 * rank + 2])
        torch.testing.assert_close(grad_p, pp.grad[2 * rank : 2 * rank + 2])
