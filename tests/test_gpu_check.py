"""benchmarks/gpu_check.py, the script to run when a GPU is at hand, runs end to end on CPU (--smoke)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_part_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--smoke", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# GPU check") and "CPU (smoke)" in text
    assert re.search(r"RelSel, 4 queries \(8 windows\)", text), text
    rates = re.findall(r"([\d,.]+) (?:prompt tokens/s|generated tokens/s|tokens/s|passages/s)", text)
    assert len(rates) == 4 and all(float(r.replace(",", "")) > 0 for r in rates), text
    assert re.search(r"MFU \d+\.\d%", text) and "491,007 queries" in text
