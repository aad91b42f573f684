"""One logging setup for every script: timestamps, the step name, to stderr (Snakemake redirects to {log})."""

from __future__ import annotations

import logging
import sys


def setup(name: str, level: int = logging.INFO) -> logging.Logger:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )
    return logging.getLogger(name)
