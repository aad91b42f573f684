"""Mutation testing of the modules that decide published numbers, against their fast unit tests (DESIGN.md,
testing ladder item 7). Run on demand, like a benchmark:

    nice -n 19 .venv/bin/python benchmarks/mutation.py [MODULE ...] [--max-children 2] [--keep]
    .venv/bin/python benchmarks/mutation.py --summary [MODULE ...]

MODULE is a key of `MODULES` below (default: all of them). For each module this runs `mutmut run` (mutmut 3)
in a scratch copy of the project, `benchmarks/out/mutation/<module>/`, whose pyproject.toml gets a
`[tool.mutmut]` section that mutates that module's file(s) only and selects that module's fast test files
(mutmut reads its configuration from the pyproject.toml of the folder it runs in, so a scratch copy is how
one module at a time is mutated without touching the repository's pyproject.toml). mutmut copies the scratch
project again into `<scratch>/mutants/` and runs the tests there, one mutant at a time, only the tests that
call the mutated function (its own stats run), with `-x`; a mutant that makes a test fail is killed, one
that passes them all survived, one that exceeds its CPU-time budget is a timeout (counted as detected).

Each mutant runs in a fresh grandchild of a fork server that has imported nothing but pytest (polars and
torch start thread pools that do not survive a fork). Hypothesis runs derandomized and without its example database (a conftest.py at the scratch root), so a
mutant is judged by the same examples every time and never by a failure another mutant left in the database.

Every surviving mutant is listed with its diff. A survivor whose exact mutated line is in `EQUIVALENT`
(mutant name + the line it produces) is counted as equivalent (no behaviour change a test could observe),
with the one-line reason given there; anything else that survives is a test gap and is reported as such.
The score per module is (killed + timeout) / (mutants - equivalent), i.e. killed over behaviour-changing.
Each module's result goes to benchmarks/out/mutation/<module>/result.json (with sha256 fingerprints of the
mutated and the test files); `--summary` prints the table and the survivors of the latest results, marking
a result stale when those files changed since its run. benchmarks/mutation.md records the figure beside
this command.

Run it on an otherwise idle machine, never beside other jobs: mutmut 3.8.1's wall-clock timeout thread sends
SIGXCPU to the pids of mutant runs that have already ended (it keeps expired entries by design), and a pid
the kernel has handed to another process by then gets the signal. It killed a tiny-workflow job of a CI run
here (exit 152 = 128 + SIGXCPU, no traceback), and it can turn another mutant's run into a "timeout" (counted
as detected): a module's figure with timeouts is only trusted from a run alone on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "mutation"


@dataclass
class Module:
    name: str
    paths: list[str]  # source files to mutate
    tests: list[str]  # pytest arguments selecting the fast tests (files, -k ...)
    only: list[str] = field(default_factory=list)  # mutant-name globs to run (default: every mutant)
    also_copy: list[str] = field(default_factory=list)  # repository paths the tests read besides src/, tests/
    preload: list[str] = field(default_factory=list)  # heavy imports for the fork server, besides COMMON


# Imported once by the fork server, so that each mutant's grandchild starts with them (under load an import of
# torch takes half a minute). Importing them is fork-safe: polars and torch start their thread pools lazily.
COMMON = ["pytest", "hypothesis", "hypothesis.strategies", "numpy", "polars", "yaml"]
TORCH = ["torch", "torch.nn.functional", "torch.distributed", "torch.multiprocessing"]
IR = ["scipy.stats", "ir_measures", "pytrec_eval"]

MODULES = {
    m.name: m
    for m in [
        Module("parsing", ["src/utilanno/annotate/parsing.py"], ["tests/test_parsing.py"]),
        Module("pools", ["src/utilanno/annotate/pools.py"], ["tests/test_pools.py"]),
        Module("labels", ["src/utilanno/train/labels.py"], ["tests/test_labels.py"]),
        # the two-process test spawns torch.distributed workers (15 s; mutmut cannot see calls in them): the
        # fast tests check gather_with_grad against a fake process group instead
        Module(
            "losses",
            ["src/utilanno/train/losses.py"],
            ["tests/test_losses.py", "-k", "not two_processes"],
            preload=[*TORCH, "sentence_transformers"],
        ),
        Module("metrics", ["src/utilanno/evaluate/metrics.py"], ["tests/test_metrics.py"], preload=IR),
        Module(
            "results_table",
            ["src/utilanno/evaluate/results_table.py"],
            ["tests/test_results.py"],
            preload=IR,
        ),
        Module(
            "qa_metrics",
            ["src/utilanno/rag/qa_metrics.py"],
            ["tests/test_qa_metrics.py"],
            preload=["spacy", "sacrebleu", "rouge_score.rouge_scorer", "regex"],
        ),
        Module(
            "answer_match",
            ["src/utilanno/evaluate/answer_match.py"],
            ["tests/test_answer_match.py"],
            also_copy=["scripts"],
            preload=[*IR, "click", "regex"],
        ),
        # Engine sampling: the settings (base.py: Sampling, guide patterns, the prompt/answer token ids of
        # answer scoring) and where the transformers engine applies them (`chat`, `_batch`: generate
        # arguments, batching, end-of-sequence cut, guides). The tests on a tiny random Qwen2 (a model built
        # at test time, ~15 s) are left out: tests/test_engine_sampling.py puts fakes in place of the model.
        Module(
            "engines",
            [
                "src/utilanno/annotate/engines/base.py",
                "src/utilanno/annotate/engines/transformers_engine.py",
            ],
            # (the config-validation test reads rules/schema.yaml, which the scratch copy does not hold)
            [
                "tests/test_engines.py",
                "tests/test_engine_sampling.py",
                "-k",
                "not transformers and not config_valid",
            ],
            only=[
                "utilanno.annotate.engines.base.*",
                "utilanno.annotate.engines.transformers_engine.xǁTransformersEngineǁchat__mutmut_*",
                "utilanno.annotate.engines.transformers_engine.xǁTransformersEngineǁ_batch__mutmut_*",
            ],
            preload=TORCH,
        ),
    ]
}

# Survivors, judged one by one: (mutant name, the mutated line as mutmut writes it, stripped) -> (verdict,
# reason). Verdict "equivalent": no input gives a different result, so the mutant leaves the denominator;
# "harmless": the behaviour changes but no published number does (the wording of an error message, say), so
# it stays in the denominator as a survivor, listed with its reason. The line guards against a stale entry:
# when the source moves, the name points at another mutant, the line no longer matches and the survivor is
# reported as a gap again.
SAME_FRAME = "zip over two columns of one DataFrame: they always have the same length, strict or not"
SAME_GROUP = "zip over two lists aggregated from the same group rows: always the same length, strict or not"
IMPLICIT_DIM = "F.log_softmax of a 2-D tensor without dim takes dim 1 (torch's implicit dim), the dim given"
FLOAT_INF = "float() reads 'inf' in any case: float('INF') == float('inf')"
SPLIT_HEAD = "str.split(sep, n)[0] is the text before the first sep for every n >= 1 and for no limit"
EQUIVALENT: dict[tuple[str, str], tuple[str, str]] = {
    ("utilanno.annotate.parsing.x_strip_reasoning__mutmut_17", 'return text.split("<think>", )[0]'): (
        "equivalent",
        SPLIT_HEAD,
    ),
    ("utilanno.annotate.parsing.x_strip_reasoning__mutmut_21", 'return text.split("<think>", 2)[0]'): (
        "equivalent",
        SPLIT_HEAD,
    ),
    # labels
    **{
        (f"utilanno.train.labels.x_llm_positives__mutmut_{k}", line): ("equivalent", SAME_FRAME)
        for k, line in [
            (9, 'return dict(zip(merged["qid"], merged["selected"].to_list(), strict=None))'),
            (12, 'return dict(zip(merged["qid"], merged["selected"].to_list(), ))'),
            (17, 'return dict(zip(merged["qid"], merged["selected"].to_list(), strict=False))'),
        ]
    },
    **{
        (f"utilanno.train.labels.x_build__mutmut_{k}", f'human_positive: str = "{v}",'): (
            "equivalent",
            "every human_positive but exclusion and inclusion means random (the config schema allows only "
            "the three), so the default's spelling changes nothing",
        )
        for k, v in [(1, "XXrandomXX"), (2, "RANDOM")]
    },
    **{
        (
            f"utilanno.train.labels.x_build__mutmut_{k}",
            f'elif kind != "{v}" and human_positive == "inclusion":',
        ): (
            "equivalent",
            "inclusion on the human set would add the human positives, which are already its positives",
        )
        for k, v in [(74, "XXhumanXX"), (75, "HUMAN")]
    },
    # metrics
    **{
        (f"utilanno.evaluate.metrics.x__measure_values__mutmut_{k}", line): ("equivalent", SAME_FRAME)
        for k, line in [
            (19, 'return dict(zip(rows["qid"], rows["value"], strict=None))'),
            (22, 'return dict(zip(rows["qid"], rows["value"], ))'),
        ]
    },
    **{
        (
            f"utilanno.evaluate.metrics.x_paired_ttest__mutmut_{k}",
            f"{side} = np.array([{x}[q] for q in qids], {arg})",
        ): (
            "equivalent",
            "the values come from a Float64 column, so numpy infers float64 anyway",
        )
        for k, side, x, arg in [
            (39, "va", "a", "dtype=None"),
            (41, "va", "a", ""),
            (44, "vb", "b", "dtype=None"),
            (46, "vb", "b", ""),
        ]
    },
    **{
        (f"utilanno.evaluate.metrics.x_paired_ttest__mutmut_{k}", f"mean_a, mean_b = {line}"): (
            "equivalent",
            "n = 0 never reaches this line: _measure_values rejects a side without values, and both sides hold "
            "the same queries",
        )
        for k, line in [
            (50, "(float(va.mean()), float(vb.mean())) if (n) or True else (0.0, 0.0)"),
            (53, "(float(va.mean()), float(vb.mean())) if n else (1.0, 0.0)"),
            (54, "(float(va.mean()), float(vb.mean())) if n else (0.0, 1.0)"),
        ]
    },
    ("utilanno.evaluate.metrics.x_paired_ttest__mutmut_72", "t, p = math.copysign(math.inf, diff[1]), 0.0"): (
        "equivalent",
        "this branch has n >= 2 equal differences (ptp 0), so diff[1] == diff[0]",
    ),
    (
        "utilanno.evaluate.metrics.x_paired_ttest__mutmut_88",
        'mark = ("+" if mean_a >= mean_b else "-") if p < alpha and mean_a != mean_b else ""',
    ): ("equivalent", "the guard mean_a != mean_b rules out the one case where >= and > differ"),
    (
        "utilanno.evaluate.metrics.x__measure_values__mutmut_27",
        'return dict(zip(rows["qid"], rows["value"], strict=False))',
    ): (
        "equivalent",
        SAME_FRAME,
    ),
    **{
        (
            f"utilanno.evaluate.metrics.x_evaluate__mutmut_{k}",
            f"run_dict = {{qid: dict(zip(docids, scores, {arg})) for qid, docids, scores in grouped.iter_rows()}}",
        ): (
            "equivalent",
            SAME_GROUP,
        )
        for k, arg in [(44, "strict=None"), (47, ""), (48, "strict=False")]
    },
    **{
        (
            f"utilanno.evaluate.metrics.x__qrels_dict__mutmut_{k}",
            f"return {{qid: dict(zip(docids, rels, {arg})) for qid, docids, rels in grouped.iter_rows()}}",
        ): (
            "equivalent",
            SAME_GROUP,
        )
        for k, arg in [(50, "strict=None"), (53, ""), (54, "strict=False")]
    },
    **{
        (
            f"utilanno.evaluate.metrics.x__qrels_dict__mutmut_{k}",
            f'grouped = qrels.group_by("qid", {arg}).agg("docid", pl.col("rel").cast(pl.Int64))',
        ): (
            "equivalent",
            "the order of the qrels dict only orders the grid's rows, which the final sort by (measure, qid) "
            "replaces; the providers look queries up by id",
        )
        for k, arg in [(37, ""), (40, "maintain_order=False")]
    },
    **{
        (
            f"utilanno.evaluate.metrics.x_evaluate__mutmut_{k}",
            f'judged = pl.Series("qid", list(qrels_dict), {arg})',
        ): (
            "equivalent",
            "the qids are str (non-empty qrels, checked before): polars infers String",
        )
        for k, arg in [(8, "dtype=None"), (11, "")]
    },
    **{
        (
            f"utilanno.evaluate.metrics.x_evaluate__mutmut_{k}",
            f'grouped = ranked.group_by("qid").agg("docid", (-pl.col("rank").cast(pl.Float64)).alias("{v}"))',
        ): (
            "equivalent",
            "the column's name is never read: the rows are unpacked by position",
        )
        for k, v in [(38, "XXscoreXX"), (39, "SCORE")]
    },
    # losses
    (
        "utilanno.train.losses.x__own_block__mutmut_1",
        "def _own_block(labels: torch.Tensor, n_columns: int, offset: int = 1) -> torch.Tensor:",
    ): ("equivalent", "a private helper whose every caller passes offset"),
    (
        "utilanno.train.losses.x_joint_lh__mutmut_9",
        "y = _own_block(labels.to(None), scores.shape[1], offset)",
    ): (
        "equivalent",
        "labels x log-probabilities is promoted to the scores' floating dtype all the same",
    ),
    **{
        (f"utilanno.train.losses.x_{fn}__mutmut_{k}", line): ("equivalent", IMPLICIT_DIM)
        for fn, k, line in [
            ("joint_lh", 16, "per_query = -(y * F.log_softmax(scores, dim=None)).sum(dim=1)"),
            ("joint_lh", 18, "per_query = -(y * F.log_softmax(scores, )).sum(dim=1)"),
            ("replug_kl", 45, "log_r = F.log_softmax(group_scores / student_temperature, dim=None)"),
            ("replug_kl", 47, "log_r = F.log_softmax(group_scores / student_temperature, )"),
        ]
    },
    ("utilanno.train.losses.x_summarg__mutmut_25", 'positives = scores.masked_fill(~y, float("-INF"))'): (
        "equivalent",
        FLOAT_INF,
    ),
    (
        "utilanno.train.losses.x_replug_kl__mutmut_23",
        'if torch.isnan(teacher).any() or (teacher == float("INF")).any():',
    ): ("equivalent", FLOAT_INF),
    # pools
    ("utilanno.annotate.pools.x_windows__mutmut_3", "if n < size:"): (
        "equivalent",
        "n == size: the loop makes the same single window [0..n-1] and returns",
    ),
    ("utilanno.annotate.pools.x_anchored_windows__mutmut_4", "if n < size:"): (
        "equivalent",
        "n == size: the comprehension makes the same single window [0, 1..n-1]",
    ),
    **{
        (
            f"utilanno.annotate.pools.x_build__mutmut_{k}",
            f'lookup = dict(zip(texts["docid"], zip(texts["title"], texts["text"], {inner}), {outer}))',
        ): (
            "equivalent",
            SAME_FRAME,
        )
        for k, inner, outer in [
            (137, "strict=True", "strict=None"),
            (140, "strict=True", ""),
            (145, "strict=None", "strict=True"),
            (148, "", "strict=True"),
            (153, "strict=False", "strict=True"),
            (154, "strict=True", "strict=False"),
        ]
    },
}

LOG_CALL = r"^\s*log\.(debug|info|warning|error|exception)\("

SCRATCH_CONFTEST = '''"""Written by benchmarks/mutation.py: the same Hypothesis examples for every mutant, no example database."""
from hypothesis import settings

settings.register_profile("mutation", derandomize=True, database=None, print_blob=False)
settings.load_profile("mutation")
'''

STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "type check",
    None: "not checked",
}


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def scratch_project(module: Module, workdir: Path) -> None:
    """A copy of src/, tests/ (and the module's extra paths) with a pyproject.toml configuring mutmut."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in ["src", "tests", *module.also_copy]:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, workdir / name, ignore=ignore)
        else:
            shutil.copy2(src, workdir / name)
    pyproject = (REPO / "pyproject.toml").read_text()
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", pyproject)  # ours replaces any
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {toml_list(module.paths)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(module.tests)}\n"
        # no cache, no slowest-durations report (the scratch pyproject keeps the project's other addopts)
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "--durations=0", "--durations-min=1000"]\n'
        f"also_copy = {toml_list(['conftest.py', *module.also_copy])}\n"
        # Each mutant runs in a grandchild of a fork server that has only imported libraries (preload.txt):
        # polars' thread pool (and torch's) must not be started before a fork, or the child deadlocks, which
        # mutmut's default (forking the process that ran the stats) turns into false timeouts.
        'process_isolation = "forkserver"\n'
        'forkserver_warmup = "import"\n'
        'preload_modules_file = "preload.txt"\n'
        # Timeouts are wall-clock as well (half the CPU limit): generous, as this runs niced beside other work
        "timeout_multiplier = 40.0\n"
        "timeout_constant = 3.0\n"
        # logging calls decide no number: not mutated (the whole call, arguments on later lines too)
        f"do_not_mutate_patterns = {toml_list([LOG_CALL])}\n"
        "use_setproctitle = false\n"
        "use_git_change_detection = false\n"
    )
    (workdir / "pyproject.toml").write_text(pyproject)
    (workdir / "conftest.py").write_text(SCRATCH_CONFTEST)
    (workdir / "fingerprint.json").write_text(json.dumps(fingerprint(module), indent=1))  # files as run
    (workdir / "preload.txt").write_text("\n".join([*COMMON, *module.preload]) + "\n")


def mutant_diff(workdir: Path, name: str, path: str, env: dict) -> str:
    """`mutmut show NAME` in the scratch folder, in this process (a `mutmut show` process per survivor costs
    seconds of imports); the command itself when that fails."""
    import contextlib

    try:
        from mutmut.configuration import reset_config
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        with contextlib.chdir(workdir):
            reset_config()
            return f"# {name}\n" + get_diff_for_mutant(name, path=path)
    except Exception:  # any failure: ask the command instead
        pass
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), "show", name],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip()


def changed_line(diff: str) -> str:
    plus = [
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    return " | ".join(plus)


def mutmut_env() -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONHASHSEED": "0",
    }
    env.pop("PYTEST_ADDOPTS", None)
    return env


def mutmut_run(module: Module, workdir: Path, names: list[str], max_children: int, log: str) -> None:
    cmd = [str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children)]
    proc = subprocess.run(
        cmd + names,
        cwd=workdir,
        env=mutmut_env(),
        stdin=subprocess.DEVNULL,  # a background job reading the terminal would be stopped (SIGTTIN)
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    (workdir / log).write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"mutmut run failed for {module.name} ({proc.returncode}):\n{tail}")


def statuses(module: Module, workdir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """mutant name -> status, and mutant name -> its source file, from mutmut's .meta files."""
    import fnmatch

    results: dict[str, str] = {}
    path_of: dict[str, str] = {}
    for path in module.paths:
        meta = json.loads((workdir / "mutants" / (path + ".meta")).read_text())
        for key, code in meta["exit_code_by_key"].items():
            if module.only and not any(fnmatch.fnmatch(key, g) for g in module.only):
                continue
            results[key] = STATUS.get(code, f"suspicious ({code})")
            path_of[key] = path
    return results, path_of


def run_module(module: Module, max_children: int, keep: bool) -> dict:
    """mutmut on one module in a fresh scratch copy; timeouts are run once more, alone (a timeout is wall-clock
    too, so a run paused by SIGSTOP or starved of CPU can time out a mutant that does not loop)."""
    workdir = OUT / module.name
    scratch_project(module, workdir)
    start = time.monotonic()
    mutmut_run(module, workdir, module.only, max_children, "mutmut-run.log")
    timeouts = sorted(k for k, v in statuses(module, workdir)[0].items() if v == "timeout")
    if timeouts:
        mutmut_run(module, workdir, timeouts, 1, "mutmut-retry.log")
    return collect(module, workdir, time.monotonic() - start, keep)


def collect(module: Module, workdir: Path, seconds: float, keep: bool = True) -> dict:
    """The result of a finished mutmut run in `workdir`: counts, and every survivor with its diff and verdict."""
    results, path_of = statuses(module, workdir)
    env = mutmut_env()
    survivors = []
    for key in sorted(k for k, s in results.items() if s in ("survived", "no tests", "suspicious")):
        diff = mutant_diff(workdir, key, path_of[key], env)
        line = changed_line(diff)
        verdict, reason = EQUIVALENT.get((key, line), (None, None))
        survivors.append(
            {
                "name": key,
                "status": results[key],
                "line": line,
                "diff": diff,
                "verdict": verdict,
                "reason": reason,
            }
        )
    if not keep:
        # the scratch copy holds one mutated file per module (a few MB); keep only the log and the results
        shutil.rmtree(workdir / "mutants", ignore_errors=True)
    counts = {s: sum(1 for v in results.values() if v == s) for s in sorted(set(results.values()))}
    r = {
        "module": module.name,
        "paths": module.paths,
        "tests": module.tests,
        "only": module.only,
        "mutants": len(results),
        "counts": counts,
        "detected": counts.get("killed", 0) + counts.get("timeout", 0),
        "timeouts": sorted(k for k, v in results.items() if v == "timeout"),
        "survivors": survivors,
        "seconds": round(seconds, 1),
    }
    return judge(r)


def table(reports: list[dict]) -> str:
    lines = [
        "| module | mutants | killed | timeout | survived | no tests | equivalent | harmless (of survived) | killed / behaviour-changing | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        c = r["counts"]
        lines.append(
            f"| {r['module']} | {r['mutants']} | {c.get('killed', 0)} | {c.get('timeout', 0)} | "
            f"{c.get('survived', 0)} | {c.get('no tests', 0)} | {r['equivalent']} | {r['harmless']} | "
            f"{r['detected']}/{r['behaviour_changing']} = {100 * r['score']:.1f}% | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def survivor_list(reports: list[dict]) -> str:
    out = []
    for r in reports:
        for s in r["survivors"]:
            tag = f"{s['verdict']}: {s['reason']}" if s["verdict"] else f"GAP ({s['status']})"
            out.append(f"- `{s['name']}` `{s['line']}`: {tag}")
    return "\n".join(out) or "(none)"


def fingerprint(module: Module) -> dict[str, str]:
    """sha256 (12 hex digits) of the mutated files and of the test files: a result whose files changed since is
    stale."""
    import hashlib

    files = [*module.paths, *(t for t in module.tests if t.endswith(".py")), "benchmarks/mutation.py"]
    return {f: hashlib.sha256((REPO / f).read_bytes()).hexdigest()[:12] for f in files}


def judge(r: dict) -> dict:
    """(Re)apply EQUIVALENT to a result's survivors and recompute its figures."""
    for sv in r["survivors"]:
        sv["verdict"], sv["reason"] = EQUIVALENT.get((sv["name"], sv["line"]), (None, None))
    r["equivalent"] = sum(1 for sv in r["survivors"] if sv["verdict"] == "equivalent")
    r["harmless"] = sum(1 for sv in r["survivors"] if sv["verdict"] == "harmless")
    r["behaviour_changing"] = r["mutants"] - r["equivalent"]
    r["score"] = r["detected"] / r["behaviour_changing"] if r["behaviour_changing"] else 1.0
    return r


def summary(names: list[str]) -> str:
    """The table of the latest result of each module (benchmarks/out/mutation/<module>/result.json)."""
    reports, notes = [], []
    for name in names:
        path = OUT / name / "result.json"
        if not path.exists():
            notes.append(f"- {name}: no result yet")
            continue
        r = judge(json.loads(path.read_text()))
        now = fingerprint(MODULES[name])
        changed = sorted(f for f, h in r.get("fingerprint", {}).items() if now.get(f) != h)
        changed = [f for f in changed if f != "benchmarks/mutation.py"]  # its EQUIVALENT is re-applied
        if changed:
            notes.append(f"- {name}: STALE, changed since its run: {', '.join(changed)}")
        notes.append(f"- {name}: run {r.get('started', '?')} UTC, {r['seconds']:.0f} s")
        reports.append(r)
    total = sum(r["seconds"] for r in reports)
    return (
        f"{table(reports)}\n\nRuns ({total:.0f} s in all):\n\n"
        + "\n".join(notes)
        + f"\n\nSurvivors:\n\n{survivor_list(reports)}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "modules", nargs="*", metavar="MODULE", help=f"one of {', '.join(MODULES)} (default: all)"
    )
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep <scratch>/mutants afterwards (for `mutmut show` / `mutmut browse` there)",
    )
    ap.add_argument(
        "--summary",
        action="store_true",
        help="run nothing: print the table of each module's latest result (flagging stale ones)",
    )
    ap.add_argument(
        "--collect",
        action="store_true",
        help="run no new mutants: rerun the timeouts of the kept scratch copies (benchmarks/out/mutation/"
        "<module>/mutants of a --keep run) and write their result.json",
    )
    args = ap.parse_args()
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; known: {list(MODULES)}")
    if args.summary:
        print(summary(names))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        started = dt.datetime.now(dt.UTC)
        try:
            if args.collect:
                module, workdir = MODULES[name], OUT / name
                begun = (workdir / "pyproject.toml").stat().st_mtime  # written as the run started
                started = dt.datetime.fromtimestamp(begun, dt.UTC)
                seconds = (workdir / "mutmut-run.log").stat().st_mtime - begun
                timeouts = sorted(k for k, v in statuses(module, workdir)[0].items() if v == "timeout")
                if timeouts:
                    t0 = time.monotonic()
                    mutmut_run(module, workdir, timeouts, 1, "mutmut-retry.log")
                    seconds += time.monotonic() - t0
                r = collect(module, workdir, seconds)
            else:
                r = run_module(MODULES[name], args.max_children, args.keep)
        except SystemExit as err:  # one module's failure (its clean run failed, say) does not stop the rest
            print(err, flush=True)
            failed.append(name)
            continue
        r["started"] = f"{started:%Y-%m-%d %H:%M}"
        stamp = OUT / name / "fingerprint.json"
        r["fingerprint"] = json.loads(stamp.read_text()) if stamp.exists() else fingerprint(MODULES[name])
        (OUT / name / "result.json").write_text(json.dumps(r, indent=1, ensure_ascii=False))
        print(table([r]).splitlines()[-1], flush=True)
        for sv in r["survivors"]:
            if not sv["verdict"]:
                print(f"   GAP {sv['status']}: {sv['name']}\n{sv['diff']}\n", flush=True)
    print()
    print(summary(names))
    if failed:
        raise SystemExit(f"mutmut failed for {failed}")


if __name__ == "__main__":
    main()
