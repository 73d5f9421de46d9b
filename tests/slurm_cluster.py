"""A one-node Slurm on this machine for the sweep tests (controller and compute daemon on localhost).

Needs the Debian packages slurm-wlm and munge (`make test` installs them as root with apt-get,
see tests/install_test_packages.sh) and root, as Slurm's daemons do. Every path is under a temporary folder;
the daemons are stopped by their pid files afterwards.
"""

import os
import shutil
import socket
import subprocess
import time


def why_not_available():
    """None when a one-node Slurm can be started here, else the reason."""
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "squeue", "munged") if shutil.which(tool) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; `make test` installs slurm-wlm and munge as root with apt-get)"
    if os.geteuid() != 0:
        return "starting Slurm's daemons needs root"
    return None


def slurm_conf(folder, host):
    cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as f:
        memory_mb = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) // 1024
    paths = {name: os.path.join(folder, name) for name in ("state", "spool", "log")}
    for path in paths.values():
        os.makedirs(path, exist_ok=True)
    return f"""ClusterName=unlearn-test
SlurmctldHost={host}
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={paths["state"]}
SlurmdSpoolDir={paths["spool"]}
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={paths["log"]}/slurmctld.log
SlurmdLogFile={paths["log"]}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
SchedulerType=sched/backfill
MinJobAge=600
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def start_munge():
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    if not os.path.exists("/etc/munge/munge.key"):
        subprocess.run(["mungekey", "-c"], check=True, capture_output=True)
    os.makedirs("/run/munge", exist_ok=True)
    subprocess.run(["munged", "--force"], check=True, capture_output=True)


class OneNodeSlurm:
    def __init__(self, folder):
        self.folder = str(folder)
        self.host = socket.gethostname().split(".")[0]
        self.conf = os.path.join(self.folder, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def start(self, timeout=60):
        os.makedirs(self.folder, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(slurm_conf(self.folder, self.host))
        start_munge()
        subprocess.run(["slurmctld", "-f", self.conf], check=True, env=self.env, capture_output=True)
        subprocess.run(["slurmd", "-f", self.conf], check=True, env=self.env, capture_output=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout.strip()
            if state.startswith("idle"):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the one-node Slurm did not come up (sinfo says {state!r}); logs in {self.folder}/log")

    def queue(self):
        out = subprocess.run(["squeue", "-h", "-o", "%i %j %T %r"], env=self.env, capture_output=True, text=True).stdout
        return [line.split() for line in out.splitlines() if line.strip()]

    def wait_until_empty(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.queue():
                return True
            time.sleep(1)
        return False

    def stop(self):
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
        for daemon in ("slurmd", "slurmctld"):
            pid_file = os.path.join(self.folder, f"{daemon}.pid")
            try:
                with open(pid_file) as f:
                    pid = int(f.read().strip())
                os.kill(pid, 15)
            except (OSError, ValueError):
                pass
