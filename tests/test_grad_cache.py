"""Gradient caching (GradCache) in the trainer's step (utilanno.train.step.forward_backward): the gradient of
a cached step equals the uncached one, for every loss, with dropout on, over two gloo processes, and the
random state after the step is the one a resumed run expects."""

from __future__ import annotations

import json
import random
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp

from utilanno.testing import tinymodels
from utilanno.train.encoder import Encoder
from utilanno.train.settings import Settings
from utilanno.train.step import compute_loss, forward_backward, local_batch

torch.set_num_threads(1)
B, G = 16, 4  # the global batch of 16 queries, groups of 4 passages
LOSSES = ["singlelh", "rand1lh", "jointlh", "summarg", "replug_kl"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """The tiny random BERT (dropout 0.1), and a copy of it without dropout."""
    d = tmp_path_factory.mktemp("gradcache")
    tinymodels.build_tiny_bert(d / "dropout")
    cfg = json.loads((d / "dropout/config.json").read_text())
    assert cfg["hidden_dropout_prob"] > 0 and cfg["attention_probs_dropout_prob"] > 0
    shutil.copytree(d / "dropout", d / "plain")
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (d / "plain/config.json").write_text(json.dumps(cfg))
    return d


def settings(loss: str, mini_batch: int | None = None) -> Settings:
    sampling = "human" if loss in ("singlelh", "rand1lh") else "pos_all"
    return Settings(loss=loss, sampling=sampling, group_size=G, per_device_batch=B, mini_batch=mini_batch)


def make_batch(encoder: Encoder, loss: str, seed: int = 0):
    """Queries and passages of different lengths (padding matters), labels as each loss reads them."""
    rng = random.Random(seed)
    queries = [" ".join(rng.choices(WORDS, k=rng.randint(1, 7))) for _ in range(B)]
    passages = [" ".join(rng.choices(WORDS, k=rng.randint(3, 25))) for _ in range(B * G)]
    if loss == "replug_kl":  # answer log-likelihoods, one of them -inf
        labels = [[rng.uniform(-8.0, -0.5) for _ in range(G)] for _ in range(B)]
        labels[3][2] = float("-inf")
    elif loss in ("singlelh", "rand1lh"):
        labels = [[1.0] + [0.0] * (G - 1) for _ in range(B)]
    else:  # several positives, and one query without any
        labels = [[float(rng.random() < 0.4) for _ in range(G)] for _ in range(B)]
        labels[0], labels[5] = [0.0] * G, [1.0] * G
    return encoder.tokenize(queries, 16), encoder.tokenize(passages, 32), torch.tensor(labels)


def flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def cached_grad(model, s, q_in, p_in, labels, seed=7) -> tuple[torch.Tensor, float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = forward_backward(model, s, q_in, p_in, labels)
    return flat_grad(model), loss.item(), torch.get_rng_state()


def graph_grad(model, s, q_in, p_in, labels, chunk: int, seed=7) -> tuple[torch.Tensor, float, torch.Tensor]:
    """The reference without caching: encode chunk by chunk with a graph (the dropout masks a cached step
    draws), then one loss over the whole batch and one backward."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    qs, ps = [], []
    for lo in range(0, B, chunk):
        hi = min(lo + chunk, B)
        q, p = model({k: v[lo:hi] for k, v in q_in.items()}, {k: v[lo * G : hi * G] for k, v in p_in.items()})
        qs.append(q)
        ps.append(p)
    loss = compute_loss(s, torch.cat(qs), torch.cat(ps), labels)
    loss.backward()
    return flat_grad(model), loss.item(), torch.get_rng_state()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("loss", LOSSES)
def test_cached_gradient_with_dropout_equals_the_uncached_one(bert, loss):
    model = Encoder(bert / "dropout")
    model.train()
    q_in, p_in, labels = make_batch(model, loss)
    ours, our_loss, our_rng = cached_grad(model, settings(loss, mini_batch=4), q_in, p_in, labels)
    ref, ref_loss, ref_rng = graph_grad(model, settings(loss), q_in, p_in, labels, chunk=4)
    assert ref.abs().max() > 0
    assert relative_error(ours, ref) <= 1e-5
    assert our_loss == pytest.approx(ref_loss, rel=1e-6)
    assert torch.equal(our_rng, ref_rng)  # the next step draws what an uncached run would: resume is exact
    # dropout is on: another seed gives another gradient (the test would notice masks that do not match)
    other, _, _ = cached_grad(model, settings(loss, mini_batch=4), q_in, p_in, labels, seed=8)
    assert relative_error(other, ref) > 1e-3


# Against one forward over the whole batch, fp32 differs by rounding alone: the CPU kernels block a matrix
# product differently for 1, 4 or 16 queries (measured here: up to 8e-5 relative on the tiny BERT, and
# 8e-14 with the same model in float64). Exactness is checked in float64, the fp32 step within rounding.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-4}


@pytest.mark.parametrize(
    "mini,dtype",
    [(1, torch.float64), (5, torch.float64), (5, torch.float32)],
    ids=["1-fp64", "5-fp64", "5-fp32"],
)
@pytest.mark.parametrize("loss", LOSSES)
def test_cached_gradient_without_dropout_equals_the_plain_full_batch(bert, loss, mini, dtype):
    """Without dropout the chunking is invisible: one forward over the 16 queries gives the same gradient
    (mini 5: chunks of 5, 5, 5 and 1)."""
    model = Encoder(bert / "plain").to(dtype)
    model.train()
    q_in, p_in, labels = make_batch(model, loss, seed=1)
    ours, our_loss, _ = cached_grad(model, settings(loss, mini_batch=mini), q_in, p_in, labels)
    plain, plain_loss, _ = cached_grad(model, settings(loss), q_in, p_in, labels)
    assert relative_error(ours, plain) <= TOLERANCE[dtype]
    assert our_loss == pytest.approx(plain_loss, rel=10 * TOLERANCE[dtype])


def _worker(rank, world, port, folder, loss, out):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        encoder = Encoder(folder).double()  # exactness, not kernel rounding (see TOLERANCE)
        encoder.train()
        model = torch.nn.parallel.DistributedDataParallel(encoder)
        q_in, p_in, labels = make_batch(encoder, loss, seed=2)
        half = B // world
        mine = slice(rank * half, (rank + 1) * half)
        s = Settings(
            loss=loss,
            sampling=settings(loss).sampling,
            group_size=G,
            global_batch=B,
            mini_batch=3,  # chunks of 3, 3 and 2 of the 8 queries of each process
        )
        assert local_batch(s, world) == half
        q = {k: v[mine] for k, v in q_in.items()}
        p = {k: v[rank * half * G : (rank + 1) * half * G] for k, v in p_in.items()}
        loss_value = forward_backward(model, s, q, p, labels[mine])
        out[rank] = (loss_value.item(), flat_grad(encoder))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("loss", ["summarg", "replug_kl"])
def test_two_gloo_processes_with_caching_equal_one_process_on_the_whole_batch(bert, loss):
    """2 processes x 8 queries, cross-device negatives, mini-batches of 3, DistributedDataParallel reducing
    once per step == one process over the 16 queries without caching (dropout off: its masks depend on the
    split)."""
    model = Encoder(bert / "plain").double()
    model.train()
    q_in, p_in, labels = make_batch(model, loss, seed=2)
    whole, whole_loss, _ = cached_grad(model, settings(loss), q_in, p_in, labels)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, port, str(bert / "plain"), loss, out), nprocs=2, join=True)
    for rank in range(2):
        loss_value, grad = out[rank]
        assert loss_value == pytest.approx(whole_loss, rel=1e-6)  # every process computes the global loss
        assert relative_error(grad, whole) <= 1e-9


def test_global_batch_splits_over_the_processes_or_says_why_not():
    s = Settings(loss="summarg", global_batch=128, per_device_batch=16)
    assert [local_batch(s, w) for w in (1, 2, 4, 8)] == [128, 64, 32, 16]
    assert local_batch(Settings(loss="summarg", per_device_batch=16), 8) == 16
    with pytest.raises(ValueError, match="global_batch 128 does not split evenly over 3 processes"):
        local_batch(s, 3)
    with pytest.raises(ValueError, match="mini_batch must be >= 1"):
        Settings(loss="summarg", mini_batch=0)


def test_a_bf16_autocast_step_on_cpu_tracks_the_fp32_gradient(bert):
    """precision bf16 runs the encoder under bf16 autocast (on CPUs too), the loss in fp32: the gradient
    follows fp32's within bf16's precision (8 bits of mantissa), cached or not, and differs from it (the
    autocast is really on)."""
    model = Encoder(bert / "plain")
    model.train()
    q_in, p_in, labels = make_batch(model, "summarg", seed=3)
    fp32, fp32_loss, _ = cached_grad(model, settings("summarg"), q_in, p_in, labels)
    for mini in (None, 4):
        model.zero_grad(set_to_none=True)
        loss = forward_backward(model, settings("summarg", mini), q_in, p_in, labels, amp=torch.bfloat16)
        bf16 = flat_grad(model)
        assert loss.dtype == torch.float32 and loss.item() == pytest.approx(fp32_loss, rel=2e-2)
        cosine = torch.nn.functional.cosine_similarity(bf16, fp32, dim=0).item()
        assert cosine > 0.99 and relative_error(bf16, fp32) > 1e-4, (cosine, relative_error(bf16, fp32))
