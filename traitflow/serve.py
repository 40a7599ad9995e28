"""Serve the viewer and an experiment's outputs on localhost: `make view` (or python -m traitflow.serve).

Only two folders are reachable: /viewer/ (the static page) and /experiments/ (the
JSON it reads), each mapped from its own directory, so the page can come from the
installed repo while the outputs live in any workflow directory.
"""

import argparse
import errno
import functools
import os
import posixpath
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

VIEWER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "viewer")


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

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")  # outputs change between runs
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


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve the traitflow viewer on localhost.")
    parser.add_argument("--exp", default="demo", help="experiment folder under experiments/ (default: demo)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--workdir", default=".", help="workflow directory holding experiments/ (default: .)")
    args = parser.parse_args(argv)
    index = os.path.join(args.workdir, "experiments", args.exp, "viewer", "index.json")
    if not os.path.exists(index):
        print(f"traitflow [view] warning: {index} not found; build it with "
              f"`snakemake --cores 1 experiments/{args.exp}/viewer/index.json` (or run the workflow)", file=sys.stderr)
    try:
        server = make_server(args.workdir, args.exp, args.host, args.port)
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        sys.exit(f"traitflow [view] error: port {args.port} is in use; fix: pick another, e.g. `make view PORT=8001`")
    print(f"traitflow viewer for experiment '{args.exp}': {viewer_url(server, args.exp)}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
