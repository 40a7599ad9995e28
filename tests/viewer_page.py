"""Helpers of the browser tests (tests/test_viewer_*.py): serving an experiment, waiting for
the page, and reading back what it drew. The page fixtures (browser, new_page, open_viewer)
are in tests/conftest.py."""

import contextlib
import json
import os
import shutil
import threading
import urllib.parse

from traitflow.outputs.serve import make_server

EXP = "experiments/demo"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")


def read(workdir, relpath):
    """A JSON file of the demo experiment under workdir."""
    with open(os.path.join(workdir, EXP, relpath), encoding="utf-8") as fh:
        return json.load(fh)


def projections(rec):
    """[tokens][layers][3] over prompt then response, as the JSON holds them."""
    return rec["projections"]["prompt"] + rec["projections"]["response"]


def serve(workdir, experiment="demo"):
    """A started viewer server for workdir's experiment; the caller shuts it down."""
    server = make_server(workdir, experiment)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def served(workdir, experiment="demo"):
    """serve() for the length of a with block."""
    server = serve(workdir, experiment)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def copy_outputs(workdir, tmp_path_factory, name):
    """A private copy of workdir's experiments/ (to change; the demo run is shared): the copy's workdir."""
    dest = str(tmp_path_factory.mktemp(name))
    shutil.copytree(os.path.join(workdir, "experiments"), os.path.join(dest, "experiments"))
    return dest


def wait_ready(page):
    page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)")


def data(page, selector, *keys):
    """[(data-key values...)] of the elements matching selector, in document order."""
    return page.eval_on_selector_all(
        selector, "(els, keys) => els.map(e => keys.map(k => e.dataset[k]))", list(keys))


def cell_values(page, selector):
    """{(layer, token): value} of the matrix cells matching selector."""
    return {(int(l), int(t)): float(v) for l, t, v in data(page, selector, "layer", "token", "value")}


def url_params(page):
    """The page's query string as a dict (one value per key)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


def show_token(token):
    """The strip's rendering of a token (viewer/js/util.js showToken) for printable tokens."""
    return token.replace("\n", "\u21b5").replace(" ", "\u00b7")


def js_string(text):
    """JSON.stringify of a string, as the page writes tokens in titles."""
    return json.dumps(text, ensure_ascii=False)


def screenshot(page, section, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.locator(section).screenshot(path=os.path.join(ARTIFACTS, name))
