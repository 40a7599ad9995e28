"""The viewer's index (what it lists, when it is rebuilt) and the server behind `make view`."""

import glob
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import dry_run

from traitflow.serve import make_server
from traitflow.viewer_index import build_index

EXP = "experiments/demo"


def write_response(path, text, n_prompt, n_response):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"prompt": {"text": text, "n_tokens": n_prompt},
                   "response": {"text": text[::-1], "n_tokens": n_response}}, fh)


def test_index_groups_each_traits_files_by_prompt(tmp_path):
    exp = str(tmp_path / "experiments" / "x")
    write_response(os.path.join(exp, "inference/responses/prompt_1.json"), "second", 5, 7)
    write_response(os.path.join(exp, "inference/responses/prompt_0.json"), "first", 3, 4)
    a = {"all_layers": "a/inference/residual_stream_activations/prompt_1.json",
         "single_layer": {"2": "a/inference/layer_internal_states/prompt_1_layer2.json",
                          "10": "a/inference/layer_internal_states/prompt_1_layer10.json"},
         "dynamics": "a/inference/dynamics/prompt_1.json"}
    b = {"all_layers": "b/inference/residual_stream_activations/prompt_0.json"}
    listed = [a["single_layer"]["10"], a["all_layers"], a["dynamics"], a["single_layer"]["2"], b["all_layers"],
              "a/inference/residual_stream_activations/prompt_1.pt",  # not for the viewer
              "inference/responses/prompt_1.json", "inference/responses/prompt_0.json"]
    traits = {"b": {"method": "probe", "vector_layer": 1}, "a": {"method": "mean_diff", "vector_layer": 2}}
    index = build_index(exp, [os.path.join(exp, f) for f in listed], "x", "some/model", 12, traits)

    assert [t["name"] for t in index["traits"]] == ["b", "a"]  # the order given
    assert index["traits"][1] == {"name": "a", "method": "mean_diff", "vector_layer": 2}
    assert [(p["index"], p["text"], p["n_prompt"], p["n_response"]) for p in index["prompts"]] == [
        (0, "first", 3, 4), (1, "second", 5, 7)]
    assert index["files"] == {"a": {"1": a}, "b": {"0": b}}
    assert list(index["files"]["a"]["1"]["single_layer"]) == ["2", "10"]  # numeric order
    assert (index["n_layers"], index["model"], index["sublayers"]) == (
        12, "some/model", ["residual_in", "after_attn", "residual_out"])


def test_demo_index_lists_every_viewer_file_the_workflow_wrote(demo_run):
    exp = os.path.join(demo_run["dir"], EXP)
    with open(os.path.join(exp, "viewer/index.json"), encoding="utf-8") as fh:
        index = json.load(fh)
    on_disk = sorted(os.path.relpath(p, exp) for p in
                     glob.glob(os.path.join(exp, "*/inference/*/prompt_*.json"))
                     + glob.glob(os.path.join(exp, "inference/responses/prompt_*.json")))

    def flat(entry):
        return [p for v in entry.values() for p in (v.values() if isinstance(v, dict) else [v])]
    listed = sorted([p["response"] for p in index["prompts"]]
                    + [p for per in index["files"].values() for e in per.values() for p in flat(e)])
    assert listed == on_disk

    with open(os.path.join(exp, "inference_prompts.txt"), encoding="utf-8") as fh:
        assert [p["text"] for p in index["prompts"]] == fh.read().splitlines()
    for p in index["prompts"]:
        with open(os.path.join(exp, p["response"]), encoding="utf-8") as fh:
            response = json.load(fh)
        assert (p["n_prompt"], p["n_response"]) == (response["prompt"]["n_tokens"], response["response"]["n_tokens"])
    assert sorted(index["files"]) == sorted(t["name"] for t in index["traits"])
    for trait, per in index["files"].items():
        assert sorted(per, key=int) == [str(p["index"]) for p in index["prompts"]]
        with open(os.path.join(exp, per["0"]["all_layers"]), encoding="utf-8") as fh:
            capture = json.load(fh)
        assert capture["metadata"]["trait"] == trait
        assert capture["metadata"]["n_layers"] == index["n_layers"]
        assert capture["metadata"]["sublayers"] == index["sublayers"]


def test_index_is_rebuilt_when_a_capture_it_lists_is_redone(demo_copy):
    import torch
    vec = os.path.join(demo_copy, EXP, "sycophancy/extraction/vectors/probe_layer2.pt")
    torch.save(-torch.load(vec, weights_only=True), vec)  # new content: Snakemake ignores a bare touch
    t = time.time() + 5
    os.utime(vec, (t, t))
    counts = dry_run(demo_copy)
    assert counts.get("viewer_index") == 1
    assert sum(n for r, n in counts.items() if r.startswith("capture_all_layers")) == 3  # sycophancy's shards
    assert not [r for r in counts if r.startswith(("generate", "extract"))]


@pytest.fixture
def server(demo_run):
    from threading import Thread
    srv = make_server(demo_run["dir"], "demo")
    Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path):
    host, port = server.server_address[:2]
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(f"http://{host}:{port}{path}") as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, b""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_server_serves_the_viewer_and_outputs_only(demo_run, server):
    status, headers, _ = get(server, "/")
    assert (status, headers["Location"]) == (302, "/viewer/?exp=demo")
    status, _, body = get(server, "/viewer/?exp=demo")
    assert status == 200 and b'<script src="app.js">' in body
    status, _, body = get(server, f"/{EXP}/viewer/index.json")
    with open(os.path.join(demo_run["dir"], EXP, "viewer/index.json"), "rb") as fh:
        assert (status, body) == (200, fh.read())
    for path in ("/Snakefile", "/config.yaml", "/experiments/../Snakefile", "/viewer/%2e%2e/Snakefile",
                 "/viewer/../../etc/passwd"):
        assert get(server, path)[0] == 404, path


def test_make_view_command_prints_a_url_that_serves_the_experiment(demo_run):
    proc = subprocess.Popen([sys.executable, "-m", "traitflow.serve", "--exp", "demo", "--port", "0",
                             "--workdir", demo_run["dir"]], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(": ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/viewer/?exp=demo")
        with urllib.request.urlopen(url.replace("/viewer/?exp=demo", f"/{EXP}/viewer/index.json")) as resp:
            assert json.load(resp)["experiment"] == "demo"
    finally:
        proc.terminate()
        proc.wait(timeout=10)

