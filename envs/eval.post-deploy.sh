#!/usr/bin/env bash
# Snakemake runs this inside the eval env it has just created (--sdm conda); the steps are shared: envs/post-deploy.sh.
exec bash "${UTILANNO_SRC:-$PWD}/envs/post-deploy.sh" eval
