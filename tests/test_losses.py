"""The paper's losses against hand computations, sentence-transformers, and a two-process gloo run.

Every loss is checked twice against oracles written here in plain Python from the definitions (PAPER-SPEC
C.3, D), never by calling the code under test or torch's own loss functions: its value, and its gradient with
respect to the scores against the closed form of the derivative.
"""

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


def softmax(xs):
    """Plain-Python softmax; an entry of -inf gets probability 0."""
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def grad_of(loss_fn, scores):
    """d loss / d scores by autograd, as nested lists."""
    x = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    loss_fn(x).backward()
    return x.grad.tolist()


def assert_grad(actual, expected, tol=1e-9):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a == pytest.approx(e, abs=tol), (actual, expected)


# Three queries, groups of two (columns 2i, 2i+1 are query i's own): scores with no symmetry to hide a bug.
Z = [
    [1.3, -0.4, 0.7, 2.1, -1.2, 0.05],
    [0.2, 1.7, -0.9, 0.6, 1.1, -0.3],
    [-0.5, 0.8, 1.9, -1.4, 0.35, 1.0],
]
Y3 = [[1, 1], [0, 0], [0, 1]]  # query 1 has no positive in its group


def own_positive_columns(i, labels, g=2):
    return {i * g + k for k in range(g) if labels[i][k]}


def test_single_positive_gradient_is_softmax_minus_onehot_over_batch():
    b, g = 3, 2
    expected = [[(p - (j == i * g)) / b for j, p in enumerate(softmax(Z[i]))] for i in range(b)]
    actual = grad_of(lambda x: losses.single_positive(x, group_size=g), Z)
    for a, e in zip(actual, expected, strict=True):
        assert_grad(a, e)
    # with an offset (this rank's queries sit after `offset` groups of the gathered passages)
    shifted = [[(p - (j == (i + 1) * g)) / 2 for j, p in enumerate(softmax(Z[i]))] for i in range(2)]
    actual = grad_of(lambda x: losses.single_positive(x, group_size=g, offset=1), Z[:2])
    for a, e in zip(actual, shifted, strict=True):
        assert_grad(a, e)


def test_jointlh_gradient_closed_form():
    """L_i = -sum_{j pos} log P_i(j): dL_i/dz_ij = n_i P_i(j) - y_ij, averaged over queries with positives."""
    kept = [i for i in range(3) if any(Y3[i])]
    expected = []
    for i in range(3):
        pos = own_positive_columns(i, Y3)
        if i not in kept:
            expected.append([0.0] * 6)
            continue
        expected.append([(len(pos) * p - (j in pos)) / len(kept) for j, p in enumerate(softmax(Z[i]))])
    actual = grad_of(lambda x: losses.joint_lh(x, torch.tensor(Y3)), Z)
    for a, e in zip(actual, expected, strict=True):
        assert_grad(a, e)


def test_summarg_gradient_closed_form():
    """L_i = -log sum_{j pos} P_i(j): dL_i/dz_ij = P_i(j) - 1[j pos] P_i(j) / sum_pos P_i, averaged over kept
    queries; a query without a positive gets no gradient."""
    kept = [i for i in range(3) if any(Y3[i])]
    expected = []
    for i in range(3):
        pos = own_positive_columns(i, Y3)
        probs = softmax(Z[i])
        if i not in kept:
            expected.append([0.0] * 6)
            continue
        mass = sum(probs[j] for j in pos)
        expected.append([(p - (j in pos) * p / mass) / len(kept) for j, p in enumerate(probs)])
    actual = grad_of(lambda x: losses.summarg(x, torch.tensor(Y3)), Z)
    for a, e in zip(actual, expected, strict=True):
        assert_grad(a, e)
    # the value, by the same definition
    value = sum(-math.log(sum(softmax(Z[i])[j] for j in own_positive_columns(i, Y3))) for i in kept) / 2
    x = torch.tensor(Z, dtype=torch.float64)
    assert losses.summarg(x, torch.tensor(Y3)).item() == pytest.approx(value, rel=1e-12)
    assert losses.joint_lh(x, torch.tensor(Y3)).item() == pytest.approx(
        sum(-math.log(softmax(Z[i])[j]) for i in kept for j in own_positive_columns(i, Y3)) / 2, rel=1e-12
    )


# -- REPLUG (PAPER-SPEC C.3; RetroMAE's distillation path) --------------------------------------------------
# Two queries, groups of three: raw in-batch dot products [2, 6] and the teacher's answer log-likelihoods.
R_SCORES = [
    [3.0, 1.0, -0.5, 0.2, 2.5, -1.0],
    [0.4, -2.0, 1.5, 2.2, 0.1, -0.3],
]
R_UTIL = [[-2.0, -4.5, -3.0], [-7.0, -1.0, -1.5]]


def kl_by_hand(scores, util, tau_s=1.0, tau_t=1.0, reduction="mean", g=3):
    """sum_i KL(U_i || R_i) over the own groups, / (B*g) ('mean') or / B ('batchmean')."""
    total = 0.0
    for i, (row, t) in enumerate(zip(scores, util, strict=True)):
        own = row[i * g : i * g + g]
        u = softmax([x / tau_t for x in t])
        r = softmax([x / tau_s for x in own])
        total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(u, r, strict=True) if a > 0)
    return total / (len(scores) * g if reduction == "mean" else len(scores))


def ce_by_hand(scores, tau=1.0, g=3):
    return sum(lse([x / tau for x in row]) - row[i * g] / tau for i, row in enumerate(scores)) / len(scores)


def replug_grad_by_hand(scores, util, tau=1.0, tau_s=1.0, tau_t=1.0, w=0.01, reduction="mean", g=3):
    """(R - U) / (tau_s * D) on the own group + w (softmax(s/tau) - onehot(i*g)) / (tau * B) everywhere."""
    b = len(scores)
    d = b * g if reduction == "mean" else b
    out = []
    for i, row in enumerate(scores):
        ce = [w * (p - (j == i * g)) / (tau * b) for j, p in enumerate(softmax([x / tau for x in row]))]
        u = softmax([x / tau_t for x in util[i]])
        r = softmax([x / tau_s for x in row[i * g : i * g + g]])
        for k in range(g):
            ce[i * g + k] += (r[k] - u[k]) / (tau_s * d)
        out.append(ce)
    return out


def replug_loss(x, util=R_UTIL, **kw):
    return losses.replug(x, torch.tensor(util, dtype=torch.float64), 3, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"teacher_temperature": 4.0},
        {"student_temperature": 0.5, "temperature": 2.0},
        {"teacher_temperature": 0.3, "student_temperature": 3.0, "contrastive_weight": 0.5},
        {"kl_reduction": "batchmean", "contrastive_weight": 1e-4},
        {"contrastive_weight": 1.0},
    ],
)
def test_replug_value_and_gradient_by_hand(kw):
    tau, tau_s, tau_t = (
        kw.get(k, 1.0) for k in ("temperature", "student_temperature", "teacher_temperature")
    )
    w, red = kw.get("contrastive_weight", 0.01), kw.get("kl_reduction", "mean")
    x = torch.tensor(R_SCORES, dtype=torch.float64)
    expected = kl_by_hand(R_SCORES, R_UTIL, tau_s, tau_t, red) + w * ce_by_hand(R_SCORES, tau)
    assert replug_loss(x, **kw).item() == pytest.approx(expected, rel=1e-12)
    actual = grad_of(lambda s: replug_loss(s, **kw), R_SCORES)
    for a, e in zip(actual, replug_grad_by_hand(R_SCORES, R_UTIL, tau, tau_s, tau_t, w, red), strict=True):
        assert_grad(a, e, tol=1e-12)


def test_replug_defaults_are_retromae_kl_mean_plus_a_hundredth_of_the_contrastive_loss():
    x = torch.tensor(R_SCORES, dtype=torch.float64)
    expected = kl_by_hand(R_SCORES, R_UTIL) + 0.01 * ce_by_hand(R_SCORES)
    assert replug_loss(x).item() == pytest.approx(expected, rel=1e-12)
    # the numbers themselves, worked by hand to 6 digits, so that the oracle's helpers are pinned too:
    # query 0: R = softmax(3, 1, -0.5) = (.857982, .116115, .025909), U = softmax(-2, -4.5, -3) =
    #   (.689674, .056612, .253716), KL = -.150605 - .040669 + .578885 = .387611;
    # query 1: R = softmax(2.2, .1, -.3) = (.830191, .101662, .068146), U = softmax(-7, -1, -1.5) =
    #   (.001541, .621507, .376963), KL = -.009692 + 1.125235 + .644794 = 1.760337; mean over 2 x 3: .357991
    # CE: (ln 37.18209 - 3 + ln 16.979851 - 2.2) / 2 = (.615829 + .632026) / 2 = .623928
    assert kl_by_hand(R_SCORES, R_UTIL) == pytest.approx(0.357991, abs=1e-5)
    assert kl_by_hand(R_SCORES, R_UTIL, reduction="batchmean") == pytest.approx(3 * 0.357991, abs=3e-5)
    assert ce_by_hand(R_SCORES) == pytest.approx(0.623928, abs=1e-5)
    assert replug_loss(x).item() == pytest.approx(0.357991 + 0.01 * 0.623928, abs=1e-5)


def test_replug_is_kl_of_teacher_against_student_not_the_reverse():
    """KL(U || R) = sum U log(U / R); the reverse KL(R || U) differs on these numbers."""
    x = torch.tensor(R_SCORES, dtype=torch.float64)
    u = softmax(R_UTIL[0])
    r = softmax(R_SCORES[0][:3])
    reverse = sum(b * (math.log(b) - math.log(a)) for a, b in zip(u, r, strict=True))
    forward = sum(a * (math.log(a) - math.log(b)) for a, b in zip(u, r, strict=True))
    assert abs(forward - reverse) > 0.05
    only0 = losses.replug_kl(x[:1, :3], torch.tensor(R_UTIL[:1], dtype=torch.float64), reduction="batchmean")
    assert only0.item() == pytest.approx(forward, rel=1e-12)


def test_replug_contrastive_weight_zero_is_the_pure_kl_and_touches_only_own_groups():
    x = torch.tensor(R_SCORES, dtype=torch.float64, requires_grad=True)
    loss = replug_loss(x, contrastive_weight=0.0, student_temperature=2.0)
    assert loss.item() == pytest.approx(kl_by_hand(R_SCORES, R_UTIL, tau_s=2.0), rel=1e-12)
    loss.backward()
    assert torch.all(x.grad[0, 3:] == 0) and torch.all(x.grad[1, :3] == 0)
    assert torch.all(x.grad[0, :3] != 0) and torch.all(x.grad[1, 3:] != 0)


def test_replug_temperature_limits():
    x = torch.tensor(R_SCORES, dtype=torch.float64)
    # a very hot teacher is uniform: KL = sum_k (1/g) (log(1/g) - log R_k)
    g = 3
    uniform = 0.0
    for i, row in enumerate(R_SCORES):
        r = softmax(row[i * g : i * g + g])
        uniform += sum((1 / g) * (math.log(1 / g) - math.log(p)) for p in r)
    hot = replug_loss(x, teacher_temperature=1e9, contrastive_weight=0.0, kl_reduction="batchmean")
    assert hot.item() == pytest.approx(uniform / 2, rel=1e-6)
    # a very cold teacher is one-hot on the top utility: KL = -log R_top
    cold_expected = (-math.log(softmax(R_SCORES[0][:3])[0]) - math.log(softmax(R_SCORES[1][3:])[1])) / 2
    cold = replug_loss(x, teacher_temperature=1e-6, contrastive_weight=0.0, kl_reduction="batchmean")
    assert cold.item() == pytest.approx(cold_expected, rel=1e-9)
    # the student temperature divides the student's scores, only them
    assert replug_loss(x, student_temperature=2.0, contrastive_weight=0.0).item() == pytest.approx(
        replug_loss(x / 2, contrastive_weight=0.0).item(), rel=1e-12
    )
    # the teacher temperature divides the utilities, only them
    assert replug_loss(x, teacher_temperature=0.5, contrastive_weight=0.0).item() == pytest.approx(
        replug_loss(x, util=[[2 * v for v in row] for row in R_UTIL], contrastive_weight=0.0).item(),
        rel=1e-12,
    )
    for bad in ({"teacher_temperature": 0.0}, {"student_temperature": 0.0}, {"student_temperature": -1.0}):
        with pytest.raises(ValueError, match="^REPLUG temperatures must be positive$"):
            replug_loss(x, **bad)
    with pytest.raises(
        ValueError, match=r"^unknown KL reduction 'sum' \(expected one of \('mean', 'batchmean'\)\)$"
    ):
        replug_loss(x, kl_reduction="sum")
    with pytest.raises(ValueError, match="^the contrastive weight must be >= 0$"):
        replug_loss(x, contrastive_weight=-0.1)


def test_replug_minus_infinity_teacher_entries_have_zero_mass_and_finite_gradient():
    inf = float("-inf")
    util = [[-2.0, inf, -3.0], [inf, -1.0, inf]]
    x = torch.tensor(R_SCORES, dtype=torch.float64, requires_grad=True)
    loss = replug_loss(x, util=util)
    expected = kl_by_hand(R_SCORES, util) + 0.01 * ce_by_hand(R_SCORES)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    for a, e in zip(x.grad.tolist(), replug_grad_by_hand(R_SCORES, util), strict=True):
        assert_grad(a, e, tol=1e-12)
    # a very negative finite log-probability is the same as -inf
    very = [[-2.0, -1e6, -3.0], [-1e6, -1.0, -1e6]]
    assert replug_loss(x, util=very).item() == pytest.approx(loss.item(), rel=1e-12)
    # float32, as in training: still finite
    x32 = torch.tensor(R_SCORES, requires_grad=True)
    l32 = losses.replug(x32, torch.tensor(util), 3)
    l32.backward()
    assert math.isfinite(l32.item()) and torch.isfinite(x32.grad).all()
    assert l32.item() == pytest.approx(expected, rel=1e-5)


def test_replug_rejects_groups_without_a_finite_utility_and_nan():
    x = torch.tensor(R_SCORES, dtype=torch.float64)
    inf = float("-inf")
    with pytest.raises(ValueError, match="^a REPLUG group has no passage with a finite utility$"):
        replug_loss(x, util=[[inf, inf, inf], [-1.0, -2.0, -3.0]])
    with pytest.raises(ValueError, match="^REPLUG utilities must be finite or -inf$"):
        replug_loss(x, util=[[float("nan"), -1.0, -2.0], [-1.0, -2.0, -3.0]])
    with pytest.raises(ValueError, match="^REPLUG utilities must be finite or -inf$"):
        replug_loss(x, util=[[float("inf"), -1.0, -2.0], [-1.0, -2.0, -3.0]])


def test_replug_with_an_offset_reads_the_queries_own_group():
    """Query 1 alone (offset 1): its group is columns 3..5, its contrastive target column 3."""
    x = torch.tensor(R_SCORES[1:], dtype=torch.float64)
    u = torch.tensor(R_UTIL[1:], dtype=torch.float64)
    own_first = [R_SCORES[1][3:] + R_SCORES[1][:3]]  # kl_by_hand reads query 0's group at columns 0..2
    expected = kl_by_hand(own_first, R_UTIL[1:]) + 0.01 * (lse(R_SCORES[1]) - R_SCORES[1][3])
    assert losses.replug(x, u, 3, offset=1).item() == pytest.approx(expected, rel=1e-12)


def test_replug_teacher_gets_no_gradient():
    x = torch.tensor(R_SCORES, dtype=torch.float64, requires_grad=True)
    u = torch.tensor(R_UTIL, dtype=torch.float64, requires_grad=True)
    losses.replug(x, u, 3).backward()
    assert u.grad is None and x.grad is not None


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


def test_in_batch_scores_by_hand():
    q = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    p = torch.tensor([[3.0, 0.0], [1.0, 1.0], [-2.0, 4.0]], dtype=torch.float64)
    dots = [[3.0, 3.0, 6.0], [1.5, -0.5, -5.0]]
    assert losses.in_batch_scores(q, p).tolist() == dots
    for got, row in zip(losses.in_batch_scores(q, p, temperature=0.05).tolist(), dots, strict=True):
        assert got == pytest.approx([v / 0.05 for v in row], rel=1e-12)


def test_jointlh_and_summarg_with_an_offset_read_the_queries_own_group():
    """Query 1 alone (offset 1, groups of two): its own group is columns 2 and 3 of the gathered passages."""
    x = S.detach()[1:]
    only_second = torch.tensor([[0, 1]])
    assert losses.joint_lh(x, only_second, offset=1).item() == pytest.approx(lse([0, 1, 3, 2]) - 2.0)
    assert losses.summarg(x, only_second, offset=1).item() == pytest.approx(lse([0, 1, 3, 2]) - 2.0)
    both = torch.tensor([[1, 1]])
    assert losses.summarg(x, both, offset=1).item() == pytest.approx(lse([0, 1, 3, 2]) - lse([3, 2]))
    assert losses.joint_lh(x, both, offset=1).item() == pytest.approx(2 * lse([0, 1, 3, 2]) - 5.0)
    assert losses.own_group(S.detach(), 2, offset=0).tolist() == [[2.0, 1.0], [3.0, 2.0]]
    assert losses.own_group(x, 2, offset=1).tolist() == [[3.0, 2.0]]


def test_jointlh_all_empty_is_zero_with_a_gradient():
    x = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    empty = losses.joint_lh(x, torch.zeros(3, 2, dtype=torch.long))
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()
    assert torch.all(x.grad == 0)


def test_the_loss_registry_names_the_papers_losses():
    assert losses.LOSSES == {
        "singlelh": losses.single_positive,
        "rand1lh": losses.single_positive,
        "jointlh": losses.joint_lh,
        "summarg": losses.summarg,
        "replug_kl": losses.replug,
    }


@pytest.fixture
def fake_process_group(monkeypatch):
    """torch.distributed as three ranks seen from rank 1: the others hold [[1, 2]] and [[5, 6]]."""
    state = {"initialized": True, "world": 3, "rank": 1, "gathered": []}
    others = {0: torch.tensor([[1.0, 2.0]]), 2: torch.tensor([[5.0, 6.0]])}

    def all_gather(parts, t):
        assert len(parts) == state["world"]
        state["gathered"].append(t)
        for r, part in enumerate(parts):
            part.copy_(others.get(r, t.detach()))  # a real all_gather returns detached copies

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(dist, "get_world_size", lambda: state["world"])
    monkeypatch.setattr(dist, "get_rank", lambda: state["rank"])
    monkeypatch.setattr(dist, "all_gather", all_gather)
    return state


def test_gather_with_grad_keeps_only_this_ranks_graph(fake_process_group):
    t = torch.tensor([[3.0, 4.0]], requires_grad=True)
    out = losses.gather_with_grad(t)
    assert out.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    (out * torch.tensor([[7.0, 7.0], [10.0, 100.0], [9.0, 9.0]])).sum().backward()
    assert t.grad.tolist() == [[10.0, 100.0]]  # the gradient of this rank's rows, nothing from the others
    assert len(fake_process_group["gathered"]) == 1


def test_gather_with_grad_is_the_identity_without_a_process_group(fake_process_group, monkeypatch):
    t = torch.tensor([[3.0, 4.0]], requires_grad=True)
    fake_process_group["world"] = 1
    assert losses.gather_with_grad(t) is t
    fake_process_group["world"], fake_process_group["initialized"] = 3, False
    assert losses.gather_with_grad(t) is t
    fake_process_group["initialized"] = True
    monkeypatch.setattr(dist, "is_available", lambda: False)
    assert losses.gather_with_grad(t) is t
    assert fake_process_group["gathered"] == []


def test_replug_kl_defaults_to_torchs_mean_and_computes_in_the_scores_precision():
    x = torch.tensor([row[:3] for row in R_SCORES], dtype=torch.float64)  # [2, 3]: query 0's group columns
    own = [R_SCORES[0][:3], R_SCORES[1][:3]]
    by_hand = kl_by_hand([own[0] + [0.0] * 3, [0.0] * 3 + own[1]], R_UTIL)  # each group at its own columns
    assert losses.replug_kl(x, torch.tensor(R_UTIL, dtype=torch.float64)).item() == pytest.approx(
        by_hand, rel=1e-12
    )
    # float32 utilities (exact on these numbers) are taken up to the scores' float64 before the softmax
    u32 = torch.tensor(R_UTIL, dtype=torch.float32)
    assert losses.replug_kl(x, u32).item() == pytest.approx(by_hand, rel=1e-14)


def test_index_tensors_follow_the_scores_device_not_the_default_one():
    """On a GPU the scores live on the GPU: the losses' own index tensors must be made on the scores' device.
    The CPU stand-in: make the default device `meta` (which has no data); indices created there instead of
    beside the scores fail or give garbage, and the values below change."""
    x = torch.tensor(Z, dtype=torch.float64)
    y = torch.tensor(Y3)
    r = torch.tensor(R_SCORES, dtype=torch.float64)
    u = torch.tensor(R_UTIL, dtype=torch.float64)

    def values():
        return [
            losses.single_positive(x, 2, offset=0).item(),
            losses.single_positive(x[:2], 2, offset=1).item(),
            losses.joint_lh(x, y).item(),
            losses.summarg(x, y).item(),
            losses.own_group(r, 3).tolist(),
            losses.replug(r, u, 3, contrastive_weight=0.5).item(),
        ]

    expected = values()
    with torch.device("meta"):
        assert values() == expected
