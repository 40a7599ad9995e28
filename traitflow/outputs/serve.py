"""Serve the viewer and an experiment's outputs on localhost: `make view` (or python -m traitflow.outputs.serve).

Only two folders are reachable: /viewer/ (the static page) and /experiments/NAME/ (the
files it reads, for the one experiment served), each mapped from its own directory, so
the page can come from the installed repo while the outputs live in any workflow
directory. Every path is resolved (symlinks included) and served only when its real
path lies inside one of those two folders: a link to /etc inside viewer/ serves
nothing. No directory is ever listed. A malformed URL (a NUL byte, a bad %-escape,
escapes that are not UTF-8) is answered 400, a malformed or unsatisfiable Range 416;
no request ends in a traceback or a dropped connection.

Only requests addressed to this machine are answered (host_allowed): a page of another site
that has its name re-pointed at 127.0.0.1 (DNS rebinding) sends its own name as `Host:` and
gets 403, so it cannot read an experiment.

Single byte ranges (`Range: bytes=a-b`, `a-`, `-n`) are answered with 206 Partial
Content: the viewer reads a shared per-prompt .safetensors file a few byte ranges
at a time (header, residual norms, one token's attention rows) instead of whole.
"""

import argparse
import email.utils
import errno
import functools
import ipaddress
import os
import re
import posixpath
import shlex
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from ..core.damage import program as _program

VIEWER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "viewer")
_RANGE = re.compile(r"^bytes=([^-]*)-([^-]*)$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Byte positions longer than this many digits are past any file (10**19 bytes = 10 EB). Never int() them:
# Python refuses to convert over 4300 digits (ValueError), which once dropped the connection.
_MAX_DIGITS = 19


def _position(digits):
    """A Range position as an int; one too long to be a real position becomes 10**19 (past every end)."""
    digits = digits.lstrip("0") or "0"
    return 10 ** _MAX_DIGITS if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(header, size):
    """(start, end) inclusive for a single `bytes=` range of a size-byte file.

    None: a header we ignore and answer with the whole file, as RFC 9110 allows
    (another unit, several ranges). "unsatisfiable": starts past the end (416).
    "invalid": a malformed `bytes=` range (no digits, letters, end before start): 416 too.
    """
    header = header.strip().replace(" ", "")
    if not header.startswith("bytes=") or "," in header:
        return None
    m = _RANGE.match(header)
    if not m or m[1] == m[2] == "" or not all(g == "" or g.isascii() and g.isdigit() for g in (m[1], m[2])):
        return "invalid"
    if m[1] == "":  # the last n bytes
        n = _position(m[2])
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    start = _position(m[1])
    if m[2] and _position(m[2]) < start:
        return "invalid"
    end = min(_position(m[2]), size - 1) if m[2] else size - 1
    return (start, end) if start < size else "unsatisfiable"


_HOST = re.compile(r"(\[[0-9a-f:.]*\]|[^:\[\]]*)(?::[0-9]*)?")


def host_allowed(header, bound):
    """Whether a Host header names this server as no other site can, with or without a port: localhost,
    a loopback address (127.x.x.x, [::1]), or the bound address or --host name (bound: those names); when
    bound to every interface (0.0.0.0), any IP address. No Host (HTTP/1.0) is not a browser: allowed."""
    if header is None:
        return True
    m = _HOST.fullmatch(header.strip().lower())
    name = m and m[1].strip("[]").rstrip(".")
    if not name:
        return False
    if name == "localhost" or name in bound:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a DNS name: what a rebinding page sends
    return address.is_loopback or any(b in ("0.0.0.0", "::") for b in bound)


class BadURL(ValueError):
    """A request path that names no file at all (answered 400)."""


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

    # The viewer is ES modules: a browser runs a module only when it is served as JavaScript,
    # whatever the system's MIME table says (on Windows the registry can map .js to text/plain).
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def __init__(self, *args, mounts, **kwargs):
        self.mounts = mounts
        super().__init__(*args, **kwargs)

    def translate_path(self, path):
        """The real path of the file a URL names, or "" (404) when it is not inside a served folder.

        Raises BadURL for a path that cannot be decoded (NUL byte, bad %-escape, not UTF-8).
        """
        raw = urllib.parse.urlsplit(path).path
        if "\x00" in raw or _BAD_ESCAPE.search(raw):
            raise BadURL("malformed URL: a NUL byte or a bad %-escape")
        try:
            decoded = urllib.parse.unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise BadURL("malformed URL: %-escapes that are not UTF-8") from None
        if "\x00" in decoded:
            raise BadURL("malformed URL: a NUL byte")
        parts = [p for p in posixpath.normpath(decoded).split("/") if p not in ("", ".", "..")]
        if not parts or parts[0] not in self.mounts:
            return ""  # opens nothing: 404
        if parts[0] == "experiments":  # only the served experiment's folder, never experiments/ itself
            experiment = getattr(self.server, "experiment", None)
            if len(parts) < 2 or experiment is not None and parts[1] != experiment:
                return ""
            root = os.path.realpath(os.path.join(self.mounts["experiments"], parts[1]))
            local = os.path.realpath(os.path.join(root, *parts[2:]))
        else:
            root = os.path.realpath(self.mounts[parts[0]])
            local = os.path.realpath(os.path.join(root, *parts[1:]))
        if local != root and not local.startswith(root.rstrip(os.sep) + os.sep):
            return ""  # a symlink (or a crafted path) leading out of the folder
        return local + "/" if raw.endswith("/") else local

    def parse_request(self):
        """The parent's parsing, then the Host check: 403 with one line for a name that is not this machine's."""
        if not super().parse_request():
            return False
        hosts = self.headers.get_all("Host") or [None]
        # make_server names what it was bound as; any other server (a test's, say) answers its address
        bound = getattr(self.server, "bound_names", None) or {self.server.server_address[0]}
        if len(hosts) == 1 and host_allowed(hosts[0], bound):
            return True
        body = (b"403 Forbidden: this server answers only requests addressed to localhost or its own address; "
                b"open the URL `make view` printed\n")
        self.close_connection = True
        self.send_response(403)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return False

    def list_directory(self, path):
        """Never list a folder (the parent lists any folder without an index.html)."""
        self.send_error(404, "File not found")
        return None

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path == "/":
            self.send_response(302)
            self.send_header("Location", f"/viewer/?exp={urllib.parse.quote(self.server.experiment)}")
            self.end_headers()
            return
        super().do_GET()

    def send_head(self):
        """The parent's answer, or 206 with the requested bytes for a single Range on a file."""
        try:
            path = self.translate_path(self.path)
        except BadURL as err:
            self.send_error(400, str(err))
            return None
        if not path or os.path.isdir(path) and not os.path.isfile(os.path.join(path, "index.html")):
            self.send_error(404, "File not found")  # outside the served folders, or a folder: never listed
            return None
        header = self.headers.get("Range")
        if header is None or not os.path.isfile(path):
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
        if wanted in ("unsatisfiable", "invalid"):
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


class ViewerServer(ThreadingHTTPServer):
    """Threads that never print a traceback: a request that still fails is one line on stderr."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)):  # the browser went away: nothing to say
            return
        print(f"traitflow [view] error: request from {client_address[0]}: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)


def make_server(workdir, experiment, host="127.0.0.1", port=0, viewer_dir=VIEWER_DIR):
    """A threading HTTP server for workdir/experiments and viewer_dir; port 0 picks a free port."""
    mounts = {"viewer": os.path.abspath(viewer_dir), "experiments": os.path.abspath(os.path.join(workdir, "experiments"))}
    server = ViewerServer((host, port), functools.partial(ViewerHandler, mounts=mounts))
    server.experiment = experiment
    server.bound_names = {host.lower(), server.server_address[0]}  # the Host names it answers besides loopback
    return server


def viewer_url(server, experiment):
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/viewer/?exp={urllib.parse.quote(experiment)}"


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
    command = [_program("python"), "-m", "traitflow.outputs.serve", "--exp", args.exp, "--port", str(port)]
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
    else:
        from ..core.errors import TraitflowError
        from ..core.formats import load_json

        try:
            load_json(index)  # a truncated index would only show as a broken page
        except TraitflowError as err:
            print(f"traitflow [view] warning: {err}", file=sys.stderr, flush=True)
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
