# Shared setup of every stage: validate the config first, then expose the plan (paths, targets) to rules.
# Helpers live in the library (src/utilanno/plan.py) so that tests import them without Snakemake; the
# package is installed (editable) in the environment that runs Snakemake, as in every job's env and container.
import json
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from utilanno.annotate import STEP_NEEDS
from utilanno.config import validate as _validate_config
from utilanno.errors import ConfigError as _ConfigError
from utilanno.plan import Plan

try:
    _validate_config(config)
except _ConfigError as _err:
    raise WorkflowError(str(_err)) from None

PLAN = Plan(config)
RESULTS = PLAN.results
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


def cli(**options):
    """Command-line options as a list, for the shell as {params.name:q} (Snakemake quotes each item).

    `--key value` per option (underscores become dashes); a list repeats the flag per item, a tuple item
    gives several values after one flag; True is a bare flag; None and False give nothing. Keys are sorted,
    so that a merely reordered config records the same params and reruns nothing.
    """
    out = []
    for key in sorted(options):
        value, flag = options[key], f"--{key.replace('_', '-')}"
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
            continue
        for item in value if isinstance(value, list) else [value]:
            out += [flag, *map(str, item if isinstance(item, tuple) else (item,))]
    return out


def script(name):
    """A stage script as an input, so that editing it reruns its jobs (the code trigger sees shell text only).

    The checkout's own file, not workflow.source_path's cached copy: scripts import the library beside them.
    An absolute path, so that the recorded inputs do not depend on where the working directory is.
    """
    return str(Path(workflow.basedir) / "scripts" / name)


def alternatives(names):
    """A wildcard constraint matching exactly these names (never anything when there are none)."""
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


wildcard_constraints:
    dataset=alternatives(PLAN.datasets),
    split=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    source=r"[A-Za-z0-9][A-Za-z0-9._-]*",


# Input functions of the data stage: a dataset's table spec -> its raw file and options.
def _raw(kind, split=None):
    """Input function: the downloaded source file of a dataset's table."""

    def inner(wc):
        table = PLAN.table(wc.dataset, kind, split if split is not None else wc.get("split"))
        return PLAN.source_file(table["source"])

    return inner


def _member(kind):
    return lambda wc: cli(member=PLAN.table(wc.dataset, kind, wc.get("split")).get("member"))


def _format(kind):
    return lambda wc: PLAN.table(wc.dataset, kind, wc.get("split"))["format"]


def _judged_by(wc):
    table = PLAN.table(wc.dataset, "queries", wc.split)
    return [f"{RESULTS}/data/{wc.dataset}/qrels-{wc.split}.trec"] if table.get("judged_only") else []


wildcard_constraints:
    run=alternatives(PLAN.runs()),
    annotator=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    step="|".join(STEP_NEEDS),
    k=r"\d+",


# Helpers of the LLM stages.
def prompt_path(path):
    """A prompt path from config: as given when it exists (absolute, or relative to the working directory),
    else relative to the workflow's folder (the prompts that ship with it)."""
    path = Path(path)
    return str(path) if path.is_absolute() or path.exists() else str(Path(workflow.basedir) / path)


def prompt_file(run, step):
    return prompt_path(PLAN.runs()[run]["prompts"][step])


def llm_arg(name):
    """The llms.<name> entry as one JSON argument (quote it with {params.llm:q})."""
    return json.dumps(PLAN.llm(name), sort_keys=True)


def llm_resources(name, key, attempt=1):
    """gpu, mem_mb or runtime of an LLM job, from its llms.<name> entry; memory and time grow per retry."""
    llm = PLAN.llm(name)
    return {"gpu": llm["gpus"], "mem_mb": llm["mem_mb"] * attempt, "runtime": llm["runtime"] * attempt}[key]


# Helpers of the evaluation stage.
def eval_resources(key, attempt=1):
    """gpu, mem_mb or runtime of an encoding job; memory and time grow per retry."""
    ev = config["evaluation"]
    return {"gpu": ev["gpus"], "mem_mb": ev["mem_mb"] * attempt, "runtime": ev["runtime"] * attempt}[key]


def embeddings(path):
    """Embeddings are read only by search: temporary unless evaluation.keep_embeddings (the paper grid's
    corpus embeddings would take about 1.5 TB of scratch)."""
    return path if config["evaluation"]["keep_embeddings"] else temp(path)


def eval_queries(wc):
    """Input function: the queries table of a dataset's evaluation split."""
    return f"{PLAN.data_dir(wc.eval_dataset)}/queries-{PLAN.eval_split(wc.eval_dataset)}.parquet"
