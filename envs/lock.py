"""Resolve each env's pins for its target (Linux x86_64, the env's Python) into envs/<family>.lock.txt.

    python envs/lock.py [family ...]        (make lock)

A lock lists every distribution the env installs, with the version pip resolved and the sha256 of the wheel
for that platform; the env's post-deploy script and the image install from it with --require-hashes. pip
resolves without installing (--dry-run --report, binary wheels only). A family whose resolution fails (here:
the registry mirror lacks some of vLLM's GPU dependencies) keeps no lock and is reported; the command then
exits 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ENVS = Path(__file__).resolve().parent
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64", "any"]


def env_spec(family: str) -> tuple[str, list[str]]:
    env = yaml.safe_load((ENVS / f"{family}.yaml").read_text(encoding="utf-8"))
    python = next(
        d.split("=", 1)[1] for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")
    )
    pins = [p for d in env["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    return python, pins


def resolve(family: str) -> list[str]:
    python, pins = env_spec(family)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed"]
        cmd += ["--only-binary=:all:", "--python-version", python, "--target", str(Path(tmp) / "t")]
        cmd += [arg for p in PLATFORMS for arg in ("--platform", p)] + ["--report", str(report), *pins]
        # the registry's builds, not this machine's pip config (local wheels such as a CPU-only torch)
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_CONSTRAINT": ""}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            errors = [x for x in done.stderr.splitlines() if x.startswith("ERROR")]
            raise RuntimeError("; ".join(errors) or done.stderr.strip()[-500:])
        items = json.loads(report.read_text())["install"]
    lines = []
    for item in sorted(items, key=lambda i: i["metadata"]["name"].lower()):
        hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise RuntimeError(f"{item['metadata']['name']}: the index gave no sha256")
        name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
        lines.append(f"{name}=={item['metadata']['version']} --hash=sha256:{hashes['sha256']}")
    return lines


def main(families: list[str]) -> int:
    failed = []
    for family in families or sorted(p.stem for p in ENVS.glob("*.yaml")):
        python, _ = env_spec(family)
        try:
            lines = resolve(family)
        except RuntimeError as err:
            print(f"{family}: did not resolve: {err}", file=sys.stderr)
            failed.append(family)
            continue
        header = [
            f"# envs/{family}.yaml resolved for Linux x86_64, Python {python} by `make lock` (envs/lock.py).",
            "# Installed with: pip install --no-deps --require-hashes -r this file",
        ]
        (ENVS / f"{family}.lock.txt").write_text("\n".join(header + lines) + "\n", encoding="utf-8")
        print(f"{family}: {len(lines)} distributions -> envs/{family}.lock.txt")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
