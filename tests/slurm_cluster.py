"""A real one-node SLURM cluster on this machine for tests (Debian's Slurm 22.05 and munge).

`LocalSlurm` installs the packages if they are missing (apt-get, as root), writes /etc/slurm/slurm.conf
(the job-step plugin ignores SLURM_CONF) with one node that has every core, 80% of the memory and one fake
GPU (`Gres=gpu:1`, File=/dev/null) in partitions `debug` (default) and `gpu`, starts munged, slurmctld and
slurmd in their own sessions, and on exit cancels every job and stops each daemon it started by PID, then
restores /etc/slurm as it was. Without accounting there is no sacct: profiles use squeue.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")


def available() -> str | None:
    """None if a cluster can be brought up here, else why not."""
    if os.geteuid() != 0:
        return "needs root (installs and starts slurmctld, slurmd and munged)"
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return None
    return None if shutil.which("apt-get") else "Slurm is not installed and apt-get is missing"


def ensure_installed() -> None:
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch")) and Path("/usr/sbin/munged").exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        check=True,
        env=env,
        capture_output=True,
    )


class LocalSlurm:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.procs: list[subprocess.Popen] = []
        self.saved: dict[Path, bytes | None] = {}
        self.host = socket.gethostname().split(".")[0]

    def __enter__(self) -> LocalSlurm:
        ensure_installed()
        try:
            self._configure()
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _configure(self) -> None:
        logs = self.workdir / "slurm-daemons"
        logs.mkdir(parents=True, exist_ok=True)
        mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
        cpus = os.cpu_count() or 1
        conf = f"""# written by tests/slurm_cluster.py; removed when the test cluster stops
ClusterName=utilanno-ci
SlurmctldHost={self.host}
AuthType=auth/munge
SlurmUser=root
StateSaveLocation={logs}/state
SlurmdSpoolDir={logs}/spool
SlurmctldPidFile={logs}/slurmctld.pid
SlurmdPidFile={logs}/slurmd.pid
SlurmctldLogFile={logs}/slurmctld.log
SlurmdLogFile={logs}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName={self.host} CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.host} Default=NO MaxTime=INFINITE State=UP
"""
        for path, text in ((CONF, conf), (GRES, f"NodeName={self.host} Name=gpu File=/dev/null\n")):
            self.saved[path] = path.read_bytes() if path.exists() else None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for sub in ("state", "spool"):
            (logs / sub).mkdir(exist_ok=True)
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(1024))
        subprocess.run(["chown", "munge:munge", str(key)], check=True)
        key.chmod(0o400)
        subprocess.run(
            ["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], check=True
        )

    def _daemon(self, name: str, *cmd: str) -> None:
        with open(self.workdir / "slurm-daemons" / f"{name}.out", "ab") as log:
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def _start(self) -> None:
        self._daemon("munged", "runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground")
        self._wait(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, "munged")
        self._daemon("slurmctld", "slurmctld", "-D", "-i")
        self._daemon("slurmd", "slurmd", "-D")
        self._wait(lambda: self.sinfo() == "idle", "an idle node (sinfo)")

    def sinfo(self) -> str:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t", "-p", "debug"], capture_output=True, text=True)
        return proc.stdout.strip()

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if ready():
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{p.args} exited with {p.returncode} before {what}; see {self.workdir}"
                    )
            time.sleep(0.5)
        raise TimeoutError(f"no {what} after {timeout} s; see {self.workdir / 'slurm-daemons'}")

    def jobs(self) -> list[dict]:
        """Every job slurmctld still remembers (MinJobAge=600), as dicts of `scontrol show job` fields."""
        out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
        jobs = []
        for line in out.splitlines():
            if not line.strip() or line.startswith("No jobs"):
                continue
            fields = {}
            for token in line.split():
                if "=" in token:
                    k, v = token.split("=", 1)
                    fields[k] = v
            jobs.append(fields)
        return jobs

    def __exit__(self, *exc) -> None:
        if shutil.which("scancel") and self.procs:
            subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=30)
        for p in reversed(self.procs):  # each daemon leads its own session: signal the whole group
            _signal_group(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            if not _group_gone(p, timeout=20):
                _signal_group(p.pid, signal.SIGKILL)
                _group_gone(p, timeout=10)
        self.procs.clear()
        for path, old in self.saved.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(old)
        self.saved.clear()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until no process of the daemon's group is left (reaping the daemon itself as it exits)."""
    end = time.time() + timeout
    while time.time() < end:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
