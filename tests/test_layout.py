"""The library's layout: every module imports alone, no import cycle, small files, no Snakemake inside."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "utilanno"
MODULES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
)


def imports_of(module: str) -> set[str]:
    """utilanno modules a module imports anywhere in its body (function-level imports included)."""
    path = SRC / (
        module.replace(".", "/") + ("/__init__.py" if (SRC / module.replace(".", "/")).is_dir() else ".py")
    )
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("utilanno")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("utilanno"):
                continue
            for (
                alias
            ) in node.names:  # `from pkg import module` names a module; else the importing is of `base`
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return out - {module}


def test_the_module_list_is_what_the_layout_promises():
    stages = {m.split(".")[1] for m in MODULES if m.count(".") >= 2}
    # one subpackage per stage, the tiny world, and the capacity planner (which sizes every stage)
    assert stages == {"data", "annotate", "train", "evaluate", "rag", "report", "testing", "capacity"}
    assert {"utilanno.config", "utilanno.plan", "utilanno.errors", "utilanno.logs", "utilanno.atomic"} <= set(
        MODULES
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of a module graph (depth-first search), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n, path + [n])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_no_import_cycle():
    graph = {m: imports_of(m) & set(MODULES) for m in MODULES}
    assert graph["utilanno.config"] == {
        "utilanno.config_annotation",
        "utilanno.config_evaluation",
        "utilanno.dataset_specs",
        "utilanno.errors",
        "utilanno.plan",
    }  # parser works
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_a_planted_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # one interpreter per module: an import that works only after another module was imported fails here
    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); assert 'snakemake' not in sys.modules"
    )
    failures = []
    for m in MODULES:
        done = subprocess.run([sys.executable, "-c", code, m], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            failures.append(
                f"{m}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
            )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_450_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 450


def test_scripts_and_rules_do_not_edit_sys_path():
    repo = SRC.parent
    for path in [*repo.glob("scripts/*.py"), *repo.glob("rules/*.smk"), repo / "Snakefile"]:
        assert "sys.path" not in path.read_text(encoding="utf-8"), path
