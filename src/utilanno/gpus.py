"""GPUs of their own for local jobs: Snakemake's local executor counts GPUs but does not say which.

On a workstation with 8 GPUs, eight 1-GPU jobs would all start on device 0. A GPU job therefore claims
devices before it touches CUDA: it takes an exclusive lock on one file per device (in a folder per user on
this machine) and sets CUDA_VISIBLE_DEVICES to the devices it holds. The kernel drops the locks when the
process ends, however it ends (a SIGKILL included), so a crashed job never keeps a device. Child processes
(torchrun's workers, vLLM's engine) inherit the variable.

Under SLURM the scheduler has already given the job its devices: nothing is claimed there.

The devices to share: UTILANNO_GPUS (a comma list of ids, e.g. "0,1,2,3"), else the CUDA_VISIBLE_DEVICES
Snakemake was started with, else the GPUs `nvidia-smi` lists; none found means nothing to claim (CPU runs).
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

_held: list = []  # open lock files: kept for the life of the process
CLAIMED = "UTILANNO_GPUS_CLAIMED"


def devices() -> list[str]:
    for var in ("UTILANNO_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None:
            return [d.strip() for d in value.split(",") if d.strip()]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"utilanno-gpu-locks-{os.getuid()}"
    return Path(os.environ.get("UTILANNO_GPU_LOCKS", default))


def claim(n: int, poll: float = 1.0, timeout: float | None = None) -> list[str] | None:
    """Hold `n` devices for this process and make them its CUDA_VISIBLE_DEVICES; returns them, or None when
    nothing is claimed (SLURM job, no GPUs asked for, or none on this machine). Waits while others hold
    them; raises TimeoutError after `timeout` seconds."""
    if n <= 0 or os.environ.get("SLURM_JOB_ID") or os.environ.get(CLAIMED):
        return None  # nothing asked, SLURM assigned them, or a parent process holds them for us
    pool = devices()
    if not pool:
        log.info("no GPUs found (UTILANNO_GPUS, CUDA_VISIBLE_DEVICES, nvidia-smi): running without claiming")
        return None
    if n > len(pool):
        raise ValueError(f"the job needs {n} GPUs, this machine shares {len(pool)}: {','.join(pool)}")
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    start, last_note = time.monotonic(), float("-inf")
    while True:
        got = []
        for dev in pool:
            fh = open(folder / f"gpu-{dev}.lock", "a")  # noqa: SIM115 (held past this function)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            got.append((dev, fh))
            if len(got) == n:
                break
        if len(got) == n:
            _held.extend(fh for _, fh in got)
            ids = [dev for dev, _ in got]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            os.environ[CLAIMED] = "1"  # children (torchrun workers, vLLM's engine) use them as they are
            log.info("GPUs %s are this job's (CUDA_VISIBLE_DEVICES)", ",".join(ids))
            return ids
        for _, fh in got:
            fh.close()  # closing drops the lock: take all n at once or none
        waited = time.monotonic() - start
        if timeout is not None and waited > timeout:
            raise TimeoutError(f"no {n} free GPUs of {','.join(pool)} within {timeout:.0f} s")
        if waited - last_note >= 60:
            log.info("waiting for %d free GPU(s) of %s (%.0f s so far)", n, ",".join(pool), waited)
            last_note = waited
        time.sleep(poll)
