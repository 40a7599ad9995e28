"""Serve the viewer and an experiment's outputs on localhost: `make view` (or python -m traitflow.serve).

Only two folders are reachable: /viewer/ (the static page) and /experiments/ (the
files it reads), each mapped from its own directory, so the page can come from the
installed repo while the outputs live in any workflow directory.

Single byte ranges (`Range: bytes=a-b`, `a-`, `-n`) are answered with 206 Partial
Content: the viewer reads a shared per-prompt .safetensors file a few byte ranges
at a time (header, residual norms, one token's attention rows) instead of whole.
"""

import argparse
import email.utils
import errno
import functools
import os
import re
import posixpath
import shlex
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

VIEWER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "viewer")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header, size):
    """(start, end) inclusive for a single `bytes=` range of a size-byte file.

    None: not a single byte range we serve (malformed, several ranges): the whole
    file is sent instead, which RFC 9110 allows. "unsatisfiable": starts past the end.
    """
    m = _RANGE.match(header.strip().replace(" ", ""))
    if not m or m[1] == m[2] == "":
        return None
    if m[1] == "":  # the last n bytes
        n = int(m[2])
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    start = int(m[1])
    end = min(int(m[2]), size - 1) if m[2] else size - 1
    if m[2] and int(m[2]) < start:
        return None
    return (start, end) if start < size else "unsatisfiable"


class _Slice:
    """A file object that reads `length` bytes from its current position, then EOF."""

    def __init__(self, fh, length):
        self.fh, self.left = fh, length

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n) if n else b""
        self.left -= len(data)
        return data

    def close(self):
        self.fh.close()


class ViewerHandler(SimpleHTTPRequestHandler):
    """Static files from a few mounted folders; everything else is 404."""

    def __init__(self, *args, mounts, **kwargs):
        self.mounts = mounts
        super().__init__(*args, **kwargs)

    def translate_path(self, path):
        clean = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(path).path))
        parts = [p for p in clean.split("/") if p not in ("", ".", "..")]
        if not parts or parts[0] not in self.mounts:
            return ""  # opens nothing: 404
        local = os.path.join(self.mounts[parts[0]], *parts[1:])
        return local + "/" if path.split("?", 1)[0].endswith("/") else local

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path == "/":
            self.send_response(302)
            self.send_header("Location", f"/viewer/?exp={urllib.parse.quote(self.server.experiment)}")
            self.end_headers()
            return
        super().do_GET()

    def send_head(self):
        """The parent's answer, or 206 with the requested bytes for a single Range on a file."""
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if header is None or not path or not os.path.isfile(path):
            return super().send_head()
        try:
            fh = open(path, "rb")
        except OSError:
            return super().send_head()
        size = os.fstat(fh.fileno()).st_size
        wanted = parse_range(header, size)
        if wanted is None:
            fh.close()
            return super().send_head()
        if wanted == "unsatisfiable":
            fh.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        start, end = wanted
        fh.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Last-Modified", email.utils.formatdate(os.fstat(fh.fileno()).st_mtime, usegmt=True))
        self.end_headers()
        return _Slice(fh, end - start + 1)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")  # outputs change between runs
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def log_message(self, format, *args):
        pass


def make_server(workdir, experiment, host="127.0.0.1", port=0, viewer_dir=VIEWER_DIR):
    """A threading HTTP server for workdir/experiments and viewer_dir; port 0 picks a free port."""
    mounts = {"viewer": os.path.abspath(viewer_dir), "experiments": os.path.abspath(os.path.join(workdir, "experiments"))}
    server = ThreadingHTTPServer((host, port), functools.partial(ViewerHandler, mounts=mounts))
    server.experiment = experiment
    return server


def viewer_url(server, experiment):
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/viewer/?exp={urllib.parse.quote(experiment)}"


def _program(name, relative=True):
    """How to type a program of this Python's environment (.venv/bin/NAME) so that it runs as printed,
    whether or not the environment is activated: relative to the current directory when it lies under it
    (and relative is asked for), else absolute; bare NAME if the environment has none."""
    path = os.path.abspath(os.path.join(os.path.dirname(sys.executable), name))
    if not os.path.exists(path):
        return name
    here = os.getcwd()
    return os.path.relpath(path, here) if relative and path.startswith(here + os.sep) else path


def _quoted(words):
    return " ".join(shlex.quote(w) for w in words)


def index_hint(workdir, experiment):
    """The command that builds an experiment's viewer index, exactly as it can be pasted into a shell.

    `--config experiment=NAME`: without it Snakemake plans the experiment named in config.yaml
    (the demo) and has no rule for another experiment's index (MissingRuleException); it comes
    last, as it reads every later word as a key=value pair. Run from another directory than the
    workflow's, the command starts with `cd WORKDIR &&`.
    """
    here = os.path.abspath(workdir) == os.getcwd()
    # --config last: it takes every word after it as key=value, a target included
    command = _quoted([_program("snakemake", relative=here), "--cores", "1",
                       f"experiments/{experiment}/viewer/index.json", "--config", f"experiment={experiment}"])
    return command if here else f"cd {shlex.quote(os.path.abspath(workdir))} && {command}"


def port_hint(args, port):
    """A command that serves the same experiment on another port."""
    here = os.path.abspath(args.workdir) == os.getcwd()
    if here and args.host == "127.0.0.1" and os.path.exists("Makefile"):
        return f"make view EXP={shlex.quote(args.exp)} PORT={port}"
    command = [_program("python"), "-m", "traitflow.serve", "--exp", args.exp, "--port", str(port)]
    if args.host != "127.0.0.1":
        command += ["--host", args.host]
    if not here:
        command += ["--workdir", os.path.abspath(args.workdir)]
    return _quoted(command)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the traitflow viewer on localhost.")
    parser.add_argument("--exp", default="demo", help="experiment folder under experiments/ (default: demo)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--workdir", default=".", help="workflow directory holding experiments/ (default: .)")
    args = parser.parse_args(argv)
    index = os.path.join(args.workdir, "experiments", args.exp, "viewer", "index.json")
    if not os.path.exists(index):
        print(f"traitflow [view] warning: {index} not found; build it with `{index_hint(args.workdir, args.exp)}` "
              "(or run the workflow)", file=sys.stderr, flush=True)
    try:
        server = make_server(args.workdir, args.exp, args.host, args.port)
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        sys.exit(f"traitflow [view] error: port {args.port} is in use; fix: pick another, e.g. "
                 f"`{port_hint(args, args.port + 1)}`")
    print(f"traitflow viewer for experiment '{args.exp}': {viewer_url(server, args.exp)}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
