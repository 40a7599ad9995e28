"""A one-node Slurm cluster on 127.0.0.1, configured in a temporary directory, for tests.

Needs root and Debian's slurm-wlm + munge (`make slurm-deps` installs them). Every daemon
runs in the foreground as a child of this process, so stop() ends exactly the processes
start() began, by PID. Clients find the cluster through SLURM_CONF and, for the plugin's
srun inside jobs (which drops SLURM_* variables), through a link at /etc/slurm/slurm.conf that
stop() removes: afterwards `scontrol` fails at once instead of waiting for a controller.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

PARTITION = "traitflow_test"
SYSTEM_CONF = "/etc/slurm/slurm.conf"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line():
    """This machine's NodeName=... CPUs=... RealMemory=... line, as slurmd detects it."""
    line = subprocess.run(["slurmd", "-C"], text=True, capture_output=True, check=True).stdout.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split())
    fields["RealMemory"] = str(int(fields["RealMemory"]) // 2)  # stay under what slurmd measures
    return fields


def _stale(conf):
    """A link to a test cluster (ours: a slurmctld.pid beside it) whose controller is gone."""
    pidfile = os.path.join(os.path.dirname(conf), "slurmctld.pid")
    if not os.path.exists(conf):
        return True
    if not os.path.exists(pidfile):
        return False
    try:
        with open(pidfile) as fh:
            os.kill(int(fh.read().strip()), 0)
    except (ValueError, ProcessLookupError):
        return True
    return False


class SlurmCluster:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.procs = {}
        self.env = None
        self.linked = False
        self.munge_seed = None

    def start(self, timeout=60):
        missing = [d for d in COMMANDS if shutil.which(d) is None]
        if missing:
            raise RuntimeError(f"Slurm test: {', '.join(missing)} not installed; run `make slurm-deps` "
                               "(apt-get install slurm-wlm munge, as root)")
        if os.geteuid() != 0:
            raise RuntimeError("Slurm test: slurmd must run as root (it starts jobs as their user)")
        node = _node_line()
        self.node = node["NodeName"]
        self.cpus = int(node["CPUs"])
        self.memory_mb = int(node["RealMemory"])
        self._start_munged()
        self._write_config(node)
        self._link_system_config()
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", self.conf])
        self._wait(lambda: "UP" in self._run("scontrol", "ping"), timeout, "slurmctld answering `scontrol ping`")
        self._spawn("slurmd", ["slurmd", "-D", "-f", self.conf, "-N", self.node])
        self._wait(lambda: self._run("sinfo", "-h", "-n", self.node, "-o", "%T").strip() == "idle", timeout,
                   f"node {self.node} idle in `sinfo`")
        return self

    def _start_munged(self):
        # munged runs as the munge user and refuses a socket directory it does not own.
        munge = pwd.getpwnam("munge")
        rundir = "/run/munge"
        os.makedirs(rundir, exist_ok=True)
        os.chown(rundir, munge.pw_uid, munge.pw_gid)
        os.chmod(rundir, 0o755)
        if not os.path.exists("/etc/munge/munge.key"):
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
        tag = f"traitflow-test-{os.getpid()}"
        self.munge_socket = f"{rundir}/{tag}.socket"
        self.munge_seed = f"{rundir}/{tag}.seed"
        self._spawn("munged", ["munged", "--foreground", f"--socket={self.munge_socket}",
                               f"--pid-file={rundir}/{tag}.pid", f"--seed-file={self.munge_seed}"],
                    user=munge.pw_uid, group=munge.pw_gid)
        self._wait(lambda: os.path.exists(self.munge_socket), 20, "munged creating its socket")

    def _write_config(self, node):
        os.makedirs(f"{self.root}/state", exist_ok=True)
        os.makedirs(f"{self.root}/spool", exist_ok=True)
        self.conf = f"{self.root}/slurm.conf"
        host = socket.gethostname().split(".")[0]
        node_spec = " ".join(f"{k}={v}" for k, v in node.items())
        settings = {
            "ClusterName": "traitflowtest",
            "SlurmctldHost": f"{host}(127.0.0.1)",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": f"{self.root}/state",
            "SlurmdSpoolDir": f"{self.root}/spool",
            "SlurmctldPidFile": f"{self.root}/slurmctld.pid",
            "SlurmdPidFile": f"{self.root}/slurmd.pid",
            "SlurmctldLogFile": f"{self.root}/slurmctld.log",
            "SlurmdLogFile": f"{self.root}/slurmd.log",
            # No systemd, no cgroups, no slurmdbd: the settings a bare container supports.
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/none",
            "MpiDefault": "none",
            "GresTypes": "gpu",
            # Finished jobs stay visible to squeue/scontrol: the plugin's squeue polling needs it.
            "MinJobAge": 3600,
            "ReturnToService": 2,
            "SchedulerParameters": "sched_interval=1",
        }
        with open(self.conf, "w") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in settings.items())
            fh.write(f"{node_spec} NodeAddr=127.0.0.1 Gres=gpu:2 State=UNKNOWN\n")
            fh.write(f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n")
        # Placeholder device files stand in for two GPUs, so --gpus requests schedule.
        with open(f"{self.root}/gres.conf", "w") as fh:
            fh.write(f"NodeName={self.node} Name=gpu File=/dev/tty[0-1]\n")

    def _link_system_config(self):
        """Inside a job the plugin's srun sees no SLURM_CONF (it strips SLURM_* variables), so
        the cluster's config must also sit where clients look by default, for the test's life."""
        if os.path.islink(SYSTEM_CONF) and _stale(os.readlink(SYSTEM_CONF)):
            os.unlink(SYSTEM_CONF)  # left by a test run that was killed before its clean-up
        if os.path.lexists(SYSTEM_CONF):
            raise RuntimeError(f"Slurm test: {SYSTEM_CONF} exists (a real cluster, or another test run); "
                               "this test would shadow it, so it runs only on a machine without one")
        os.makedirs(os.path.dirname(SYSTEM_CONF), exist_ok=True)
        os.symlink(self.conf, SYSTEM_CONF)
        self.linked = True

    def _spawn(self, name, argv, **kw):
        log = open(f"{self.root}/{name}.out", "w")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, **kw)
        log.close()

    def _run(self, *argv):
        proc = subprocess.run(argv, env=self.env, text=True, capture_output=True, timeout=30)
        return proc.stdout

    def _wait(self, ready, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"Slurm test: {dead[0]} exited ({self.procs[dead[0]].returncode}) "
                                   f"before {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"Slurm test: no {what} after {timeout} s:\n{self.logs()}")

    def logs(self, tail=1500):
        out = []
        for name in ("munged.out", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"):
            path = f"{self.root}/{name}"
            if os.path.exists(path):
                with open(path, errors="replace") as fh:
                    out.append(f"--- {name}\n{fh.read()[-tail:]}")
        return "\n".join(out)

    def jobs(self):
        """{job id: {field: value}} for every job slurmctld still knows (MinJobAge keeps finished ones)."""
        text = self._run("scontrol", "show", "job", "--oneliner")
        jobs = {}
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if "JobId" in fields:
                jobs[fields["JobId"]] = fields
        return jobs

    def stop(self):
        """Cancel leftover jobs, then end the daemons start() began, newest first, by PID."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--partition", PARTITION], env=self.env, capture_output=True, timeout=30)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        if self.munge_seed and os.path.exists(self.munge_seed):
            os.unlink(self.munge_seed)
        # Left behind, it would point every Slurm client (and the plugin's start-up check)
        # at a controller that is gone.
        if self.linked and os.path.islink(SYSTEM_CONF) and os.readlink(SYSTEM_CONF) == self.conf:
            os.unlink(SYSTEM_CONF)
        self.linked = False
