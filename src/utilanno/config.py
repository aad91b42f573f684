"""Load and validate the workflow configuration against `rules/schema.yaml`, then expand it into a plan.

Validation runs before Snakemake builds any job: every error names the config key and what was expected.
Defaults from the schema are filled in, so the rest of the workflow reads one complete dict.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from utilanno.config_annotation import mining_problems, run_name, run_problems
from utilanno.config_evaluation import (
    eval_answers,
    group_cycles,
    hybrid_problems,
    measure_problems,
    stand_in_problems,
)
from utilanno.dataset_specs import expand_beir, iter_tables
from utilanno.errors import ConfigError
from utilanno.plan import Plan

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "rules" / "schema.yaml"

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing (null)",
}


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    _hoist_ref_defaults(schema, schema)
    return schema


def _hoist_ref_defaults(node, root) -> None:
    """Copy the default of a local `$ref` target onto the referring node, where default-filling looks."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and "default" not in node:
            target = root
            for part in ref[2:].split("/"):
                target = target[part]
            if "default" in target:
                node["default"] = copy.deepcopy(target["default"])
        for value in node.values():
            _hoist_ref_defaults(value, root)
    elif isinstance(node, list):
        for value in node:
            _hoist_ref_defaults(value, root)


def _with_defaults(base):
    """A validator class that fills `default` values of missing properties while validating."""
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    # a count is an int: JSON Schema's "integer" also admits 2.0, which a command's int option then rejects
    strict_ints = base.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return validators.extend(base, {"properties": set_defaults}, type_checker=strict_ints)


_Filling = _with_defaults(Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{type(value).__name__} {shown}"


def _message(err) -> str:
    key = _key(err.absolute_path)
    v = err.validator
    if v == "type":
        expected = err.validator_value
        expected = " or ".join(
            _TYPE_NAMES.get(t, t) for t in (expected if isinstance(expected, list) else [expected])
        )
        return f"config key '{key}': expected {expected}, got {_describe(err.instance)}"
    if v == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        parts = []
        for name in extra:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parts.append(f"unknown key '{_key([*err.absolute_path, name])}'{hint}")
        return "; ".join(parts) + f"; known keys here: {', '.join(known)}"
    if v == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return f"config key '{key}': missing required key(s) {', '.join(repr(m) for m in missing)}"
    if v == "enum":
        return f"config key '{key}': expected one of {err.validator_value}, got {_describe(err.instance)}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"config key '{key}': expected a value {word} {err.validator_value}, got {err.instance!r}"
    if v == "pattern":
        what = err.schema.get("description", f"a string matching {err.validator_value}")
        return f"config key '{key}': {err.instance!r} is not valid; expected {what}"
    if v in ("minItems", "minProperties"):
        return f"config key '{key}': must not be empty"
    return f"config key '{key}': {err.message}"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate `config` in place (filling defaults) and cross-check references; raise ConfigError."""
    schema = schema if schema is not None else load_schema()
    old = config.get("annotation") if isinstance(config, dict) else None
    if isinstance(old, dict) and any(not isinstance(v, dict) for v in old.values()):
        raise ConfigError(
            "invalid configuration (1 problem(s)):\n  - config key 'annotation': holds named annotation runs"
            " now; write the settings under a run name, e.g. 'annotation: {msmarco: {dataset: msmarco,"
            " annotator: ...}}'"
        )
    errors = sorted(
        _Filling(schema).iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator)
    )
    messages = list(dict.fromkeys(_message(e) for e in errors))
    if not messages:
        messages = _cross_check(config)
    if messages:
        shown = "\n  - ".join(messages[:15])
        more = f"\n  ... and {len(messages) - 15} more" if len(messages) > 15 else ""
        raise ConfigError(f"invalid configuration ({len(messages)} problem(s)):\n  - {shown}{more}")
    return config


def load(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    with open(path, encoding="utf-8") as fh:
        try:
            config = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(config).__name__}")
    return validate(config)


SINGLE_POSITIVE_SAMPLINGS = ("human", "first", "pos_one")


# `bm25` is the BM25 system's name in runs and metrics; `metrics` is the RAG metrics folder beside the
# RAG experiments' folders (results/rag/metrics/).
RESERVED_EXPERIMENT_NAMES = frozenset({"bm25", "metrics"})


def _cross_check(config: dict) -> list[str]:
    """References between sections: every name used must be defined."""
    out: list[str] = []
    sources, datasets = config["sources"], config["datasets"]

    def ref(key: str, name: str, pool: dict, what: str):
        if name not in pool:
            close = difflib.get_close_matches(name, list(pool), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            out.append(f"config key '{key}': {name!r} is not defined in '{what}'{hint}")

    for sname, src in sources.items():
        if ("url" in src) == ("path" in src):
            out.append(f"config key 'sources.{sname}': give exactly one of 'url' or 'path'")
    for dname, ds in datasets.items():
        for key, table in iter_tables(dname, ds):
            if key.endswith(".corpus") and ("dataset" in table) == ("source" in table or "format" in table):
                out.append(f"config key '{key}': give either 'dataset' alone or 'source' and 'format'")
            elif key.endswith(".corpus") and "source" in table and "format" not in table:
                out.append(f"config key '{key}': missing required key 'format'")
            elif table.get("titles") is not None and table.get("format") != "msmarco-tsv":
                out.append(f"config key '{key}.titles': titles join an msmarco-tsv corpus only")
            elif "dataset" in table:
                ref(f"{key}.dataset", table["dataset"], datasets, "datasets")
                if table["dataset"] == dname:
                    out.append(f"config key '{key}.dataset': a dataset cannot take its corpus from itself")
            else:
                ref(f"{key}.source", table["source"], sources, "sources")
        for split in ds.get("answers", {}):
            if split not in ds.get("queries", {}) and "beir" not in ds:
                out.append(f"config key 'datasets.{dname}.answers.{split}': no queries for split {split!r}")
    t = config["training"]
    if t.get("global_batch") is not None and t["global_batch"] % max(1, t["gpus"]):
        out.append(
            f"config key 'training.global_batch': {t['global_batch']} queries do not split evenly over"
            f" training.gpus = {t['gpus']} processes"
        )
    groups = config["evaluation"]["groups"]
    for group, members in groups.items():
        for i, member in enumerate(members):
            if member not in groups:
                ref(f"evaluation.groups.{group}.{i}", member, datasets, "datasets")
        if len(set(members)) != len(members):
            out.append(f"config key 'evaluation.groups.{group}': a member is listed twice")
    out += group_cycles(groups)
    for i, name in enumerate(config["evaluation"]["datasets"]):
        if name not in datasets and name not in config["evaluation"]["groups"]:
            ref(f"evaluation.datasets.{i}", name, datasets, "datasets")
    for ename, exp in config["experiments"].items():
        for i, name in enumerate(exp.get("evaluate", [])):
            if name not in datasets and name not in config["evaluation"]["groups"]:
                ref(f"experiments.{ename}.evaluate.{i}", name, datasets, "datasets")
    out += _model_problems(config)
    for group in config["evaluation"]["groups"]:
        if group in datasets:
            out.append(
                f"config key 'evaluation.groups.{group}': a group cannot share its name with a dataset"
            )
    for dname, override in config["evaluation"]["encoding"]["datasets"].items():
        key = f"evaluation.encoding.datasets.{dname}"
        if dname not in datasets:
            ref(key, dname, datasets, "datasets")
        elif "dataset" in datasets[dname].get("corpus", {}):
            for k in ("passage_max_len", "passage_text"):
                if k in override:
                    owner = datasets[dname]["corpus"]["dataset"]
                    out.append(
                        f"config key '{key}.{k}': {dname} searches the corpus of {owner}, encoded once;"
                        f" set it under evaluation.encoding.datasets.{owner}"
                    )
    out += hybrid_problems(config, datasets)
    out += stand_in_problems(config, datasets)
    rag = config["rag"]
    if rag["bertscore_model"] and rag["bertscore_layer"] is None and rag["bertscore_model_type"] is None:
        out.append(
            "config key 'rag.bertscore_layer': set the layer BERTScore compares, or rag.bertscore_model_type"
            " to take bert-score's default layer for that model"
        )
    if rag["bertscore_rescale_with_baseline"] and not (
        rag["bertscore_model_type"] or rag["bertscore_baseline_path"]
    ):
        out.append(
            "config key 'rag.bertscore_rescale_with_baseline': needs rag.bertscore_model_type (a shipped"
            " baseline) or rag.bertscore_baseline_path"
        )
    for dname, measures in config["evaluation"]["measures"].items():
        ref(f"evaluation.measures.{dname}", dname, datasets, "datasets")
        top_k = [m for m in measures if re.fullmatch(r"Top[1-9][0-9]*", m)]
        out += measure_problems(f"evaluation.measures.{dname}", [m for m in measures if m not in top_k])
        if top_k and dname in datasets and not eval_answers(datasets[dname]):
            out.append(
                f"config key 'evaluation.measures.{dname}': {top_k[0]} (top-k answer accuracy) needs gold"
                f" answers for the split {dname} is evaluated on (datasets.{dname}.answers)"
            )
    out += _answers_only_problems(config)
    out += run_problems(config, datasets, ref)
    out += mining_problems(config, datasets)
    for ename, exp in config["experiments"].items():
        # output folders that an experiment of this name would share with another system or stage
        if ename in RESERVED_EXPERIMENT_NAMES or ename.endswith("-stage1"):
            out.append(
                f"config key 'experiments.{ename}': the name is reserved ({sorted(RESERVED_EXPERIMENT_NAMES)}"
                " and '<name>-stage1', a curriculum's first stage, name other outputs)"
            )
        ref(f"experiments.{ename}.backbone", exp["backbone"], config["backbones"], "backbones")
        if exp["recipe"] != "paper":
            ref(
                f"experiments.{ename}.recipe",
                exp["recipe"],
                config["training"]["recipes"],
                "training.recipes",
            )
        if "annotator" in exp:
            ref(f"experiments.{ename}.annotator", exp["annotator"], config["llms"], "llms")
        if (exp["labels"] == "replug") != (exp["loss"] == "replug_kl"):
            out.append(
                f"config key 'experiments.{ename}': labels 'replug' go with loss 'replug_kl', and only they"
            )
        cl = exp.get("curriculum")
        key, sampling = (
            ("curriculum.stage1_sampling", cl["stage1_sampling"]) if cl else ("sampling", exp["sampling"])
        )
        if exp["loss"] in ("singlelh", "rand1lh") and sampling not in SINGLE_POSITIVE_SAMPLINGS:
            out.append(
                f"config key 'experiments.{ename}.{key}': loss {exp['loss']} scores the group's first"
                f" passage as its one positive, so sampling must be one of {list(SINGLE_POSITIVE_SAMPLINGS)}"
                f" (got {sampling!r})"
            )
        if exp.get("curriculum") and not exp["human_fraction"] > 0:
            out.append(
                f"config key 'experiments.{ename}.human_fraction': a curriculum needs a fraction above 0"
            )
        if exp["labels"] == "union" and not exp["human_fraction"] > 0:
            out.append(
                f"config key 'experiments.{ename}.human_fraction': 'union' labels need a fraction above 0"
            )
    rp = config["replug"]
    replug = [e for e in config["experiments"].values() if e["labels"] == "replug"]
    if replug and "scorer" in rp:
        ref("replug.scorer", rp["scorer"], config["llms"], "llms")
    for run in sorted({r for r in (run_name(config, e) for e in replug) if r in config["annotation"]}):
        ann = config["annotation"][run]
        answers = datasets.get(ann["dataset"], {}).get("answers", {})
        if rp["answers"] not in answers:
            out.append(
                f"config key 'replug.answers': dataset {ann['dataset']!r} has no answers for split"
                f" {rp['answers']!r} (has {sorted(answers)}); REPLUG labels need the training queries'"
                " answers"
            )
        if not ("scorer" in rp or ann["annotator"]):
            out.append(
                "config key 'replug.scorer': the REPLUG experiments' annotation run has no annotator;"
                " name the scoring LLM here"
            )
    for i, gen in enumerate(config["rag"]["generators"]):
        ref(f"rag.generators.{i}", gen, config["llms"], "llms")
    evaluated = set(Plan(config).eval_datasets())
    for key, rd in config["rag"]["datasets"].items():
        name = rd["dataset"] or key
        where = f"rag.datasets.{key}" + (".dataset" if rd["dataset"] else "")
        ref(where, name, datasets, "datasets")
        if name not in datasets:
            continue
        if name not in evaluated:
            out.append(
                f"config key '{where}': RAG reads the retrieval runs of {name!r}, which is not evaluated"
                " (add it to evaluation.datasets)"
            )
        ds = expand_beir(datasets[name])
        if rd["split"] not in ds.get("answers", {}):
            out.append(
                f"config key 'rag.datasets.{key}.split': dataset {name!r} has no answers for split"
                f" {rd['split']!r} (has {sorted(ds.get('answers', {}))})"
            )
        eval_splits = [s for s in ds.get("queries", {}) if s != "train" and s in ds.get("qrels", {})]
        if eval_splits != [rd["split"]]:
            out.append(
                f"config key 'rag.datasets.{key}.split': RAG reads the retriever's runs, which hold the"
                f" evaluation split {eval_splits}, not {rd['split']!r}"
            )
        if rd["top_k"] > config["evaluation"]["depth"]:
            out.append(
                f"config key 'rag.datasets.{key}.top_k': {rd['top_k']} passages, but runs hold only the"
                f" top evaluation.depth = {config['evaluation']['depth']}"
            )
    for i, exp in enumerate(config["rag"]["experiments"]):
        ref(f"rag.experiments.{i}", exp, config["experiments"], "experiments")
    return out


def _answers_only_problems(config: dict) -> list[str]:
    """A dataset evaluated on a split with gold answers but no qrels is scored by top-k accuracy only."""
    plan, out = Plan(config), []
    try:
        evaluated = plan.eval_datasets()
    except (KeyError, ValueError):  # a broken reference: reported elsewhere
        return out
    for name in evaluated:
        try:
            if name in plan.hybrid_sets() or plan.eval_qrels(name):
                continue
        except (KeyError, ValueError) as err:
            out.append(f"config key 'datasets.{name}': {err}")
            continue
        ir = [m for m in plan.measures(name) if not re.fullmatch(r"Top[1-9][0-9]*", m)]
        if ir:
            out.append(
                f"config key 'evaluation.measures.{name}': {', '.join(ir)} need qrels, and {name!r} is"
                " evaluated on a split with gold answers only: give top-k accuracy measures (Top20, ...)"
            )
    return out


def _model_problems(config: dict) -> list[str]:
    """Model entries that cannot work: a built model the workflow has no builder for, or a local folder
    (a path starting with /, . or ~, or with more slashes than a hub id's `org/name`) that does not exist."""
    built = f"{config['results']}/models/"
    models = [(f"backbones.{n}.model", b["model"]) for n, b in config["backbones"].items()]
    models += [
        (f"llms.{n}.model", m["model"]) for n, m in config["llms"].items() if m.get("engine") != "openai"
    ]
    if config["rag"]["bertscore_model"]:
        models.append(("rag.bertscore_model", config["rag"]["bertscore_model"]))
    out = []
    for key, model in models:
        path = model.replace("{results}", config["results"])
        if path.startswith(built):
            name = path[len(built) :].strip("/")
            if name not in Plan.MODEL_BUILDERS:
                out.append(
                    f"config key '{key}': {model!r} is under the built models, but the workflow builds only"
                    f" {sorted(Plan.MODEL_BUILDERS)}"
                )
        elif path.startswith(("/", ".", "~")) or path.count("/") > 1:
            if not Path(path).expanduser().is_dir():
                out.append(f"config key '{key}': model folder {model!r} does not exist")
    return out
