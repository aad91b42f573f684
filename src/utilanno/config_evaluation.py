"""Config cross-checks of the evaluation side (groups, measures, the Hybrid Test), split from `config`, which
calls them after schema validation: each returns messages that name the offending key."""

from __future__ import annotations


def group_cycles(groups: dict[str, list[str]]) -> list[str]:
    """A group that contains itself, directly or through other groups, has no mean."""
    out = []
    for start in groups:
        path, todo = [start], [(start, iter(groups[start]))]
        while todo:
            name, members = todo[-1]
            member = next(members, None)
            if member is None:
                todo.pop()
                path.pop()
            elif member == start:
                via = " -> ".join([*path, start])
                out.append(f"config key 'evaluation.groups.{start}': contains itself via {via}")
                break
            elif member in groups and member not in path:
                path.append(member)
                todo.append((member, iter(groups[member])))
    return out


def hybrid_problems(config: dict, datasets: dict) -> list[str]:
    """The Hybrid Test's references: judge, sampled dataset with answers, pools of experiments of their
    backbone that are evaluated on that dataset, measures, and names that do not clash with datasets."""
    hy, out = config["hybrid"], []
    if not hy["judge"]:
        return out
    if hy["judge"] not in config["llms"]:
        out.append(f"config key 'hybrid.judge': {hy['judge']!r} is not defined in 'llms'")
    if hy["dataset"] not in datasets:
        return out + [f"config key 'hybrid.dataset': {hy['dataset']!r} is not defined in 'datasets'"]
    if not eval_answers(datasets[hy["dataset"]]):
        out.append(f"config key 'hybrid.dataset': {hy['dataset']} has no QA answers for its evaluation split")
    if not hy["pools"]:
        out.append("config key 'hybrid.pools': a judge needs at least one pool (backbone: [experiments])")
    if hy["overlap"] >= hy["window"]:
        out.append(f"config key 'hybrid.overlap': {hy['overlap']} must be smaller than hybrid.window")
    exps = config["experiments"]
    for pool, members in hy["pools"].items():
        key = f"hybrid.pools.{pool}"
        if pool not in config["backbones"]:
            out.append(f"config key '{key}': a pool is named by its backbone; {pool!r} is not in 'backbones'")
        if f"{hy['dataset']}-hybrid-{pool}" in datasets:
            out.append(f"config key '{key}': the dataset {hy['dataset']}-hybrid-{pool} already exists")
        for i, name in enumerate(members):
            if name not in exps:
                out.append(f"config key '{key}.{i}': {name!r} is not defined in 'experiments'")
            elif exps[name]["backbone"] != pool:
                out.append(f"config key '{key}.{i}': {name} is a {exps[name]['backbone']} experiment")
            elif hy["dataset"] not in flat(
                exps[name].get("evaluate", config["evaluation"]["datasets"]), config
            ):
                out.append(
                    f"config key '{key}.{i}': {name} is not evaluated on {hy['dataset']} (no dev run to pool)"
                )
    out += measure_problems("hybrid.measures", hy["measures"])
    return out


def flat(names: list[str], config: dict, seen: frozenset = frozenset()) -> set[str]:
    """Datasets behind dataset and group names (a cyclic group, reported elsewhere, stops here)."""
    groups, out = config["evaluation"]["groups"], set()
    for n in names:
        if n in groups and n not in seen:
            out |= flat(groups[n], config, seen | {n})
        elif n not in groups:
            out.add(n)
    return out


def eval_answers(ds: dict) -> bool:
    """Whether a dataset has gold answers for its evaluation split (BEIR's is `test`)."""
    answers = ds.get("answers", {})
    if "beir" in ds:
        return "test" in answers
    return any(s in answers for s in ds.get("queries", {}) if s != "train")


def measure_problems(key: str, measures: list[str]) -> list[str]:
    """Measure names that ir_measures cannot parse (checked here, not hours later in the metrics job)."""
    try:
        import ir_measures
    except ImportError:  # Snakemake runs without the eval extra: the metrics job still parses them
        return []
    out = []
    for i, name in enumerate(measures):
        try:
            ir_measures.parse_measure(name)
        except (ValueError, NameError, TypeError, AttributeError, SyntaxError) as err:
            out.append(f"config key '{key}.{i}': {name!r} is not an ir_measures measure ({err})")
    return out


def stand_in_problems(config: dict, datasets: dict) -> list[str]:
    """report.stand_ins: each key is a backbone, LLM, dataset or RAG set of this config (a typo would leave
    the paper's row silently 'not run')."""
    names = set(config["backbones"]) | set(config["llms"]) | set(datasets) | set(config["rag"]["datasets"])
    return [
        f"config key 'report.stand_ins.{ours}': {ours!r} is no backbone, LLM, dataset or RAG set here"
        for ours in config["report"]["stand_ins"]
        if ours not in names
    ]
