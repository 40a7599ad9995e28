"""Start Snakemake runs by forking one process that has already imported it (a zygote).

A fresh `python -m snakemake` spends about 2.5 s of a 3.5 s dry run importing Snakemake, its
plugins and torch before it reads the Snakefile; the suite starts Snakemake a few hundred times.
This process imports them once (one per pytest worker), then forks a child per run: the child
is that fresh process, minus the imports. Each child runs in its own session (so a timeout kills
the run and every job it started), in the run's directory, with the caller's environment.

Protocol, one JSON line each way: the caller writes {"argv", "cwd", "env", "out"}; this process
answers {"pid"} once the child runs, then {"rc"} when it ends (its stdout and stderr, together,
are in the file "out"). A run whose environment changes what is imported (PYTHONPATH) must
start Snakemake the plain way.
"""

import atexit
import json
import os
import sys
import threading

import snakemake.cli  # noqa: F401 (the point: imported before the fork)
import torch  # noqa: F401 (the plan imports it to check a vector it has not seen)
import traitflow.plan.workflow  # noqa: F401


def run_child(request):
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    fd = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.path[0] = request["cwd"]  # as `python -m` sets it
    sys.argv = ["snakemake", *request["argv"]]
    code = 1
    try:
        snakemake.cli.main(request["argv"])  # ends in sys.exit
    except SystemExit as done:
        code = 0 if done.code is None else done.code if isinstance(done.code, int) else 1
    finally:
        exit_now(code)


def exit_now(code):
    """Exit as the process would (its threads finish, atexit runs: the run summary), less the teardown of
    every module imported before the fork: freeing torch and Snakemake costs 1-2 s, more than the run."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve():
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(request)  # never returns
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
