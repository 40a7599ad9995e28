"""The viewer's index and overview (what they hold, when they are rebuilt) and the server behind `make view`."""

import glob
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import date_back, dry_run, shards

from traitflow.core.formats import load_capture
from traitflow.outputs.overview import build_overview, save_overview, signed_peak, summarize, value
from traitflow.outputs.serve import make_server, parse_range
from traitflow.outputs.viewer_index import build_index

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
              "inference/shared/prompt_1.safetensors", "viewer/overview.json",
              "inference/responses/prompt_1.json", "inference/responses/prompt_0.json"]
    traits = {"b": {"method": "probe", "vector_layer": 1}, "a": {"method": "mean_diff", "vector_layer": 2}}
    index = build_index(exp, [os.path.join(exp, f) for f in listed], "x", "some/model", 12, traits)

    assert [t["name"] for t in index["traits"]] == ["b", "a"]  # the order given
    assert index["traits"][1] == {"name": "a", "category": None, "method": "mean_diff", "vector_layer": 2}
    assert [(p["index"], p["text"], p["n_prompt"], p["n_response"], p["shared"]) for p in index["prompts"]] == [
        (0, "first", 3, 4, None), (1, "second", 5, 7, "inference/shared/prompt_1.safetensors")]
    assert index["overview"] == "viewer/overview.json"
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
                     + glob.glob(os.path.join(exp, "inference/responses/prompt_*.json"))
                     + glob.glob(os.path.join(exp, "inference/shared/prompt_*.safetensors")))

    def flat(entry):
        return [p for v in entry.values() for p in (v.values() if isinstance(v, dict) else [v])]
    listed = sorted([p["response"] for p in index["prompts"]] + [p["shared"] for p in index["prompts"]]
                    + [p for per in index["files"].values() for e in per.values() for p in flat(e)])
    assert listed == on_disk
    assert index["overview"] == "viewer/overview.json" and os.path.exists(os.path.join(exp, index["overview"]))

    with open(os.path.join(exp, "inference_prompts.json"), encoding="utf-8") as fh:
        assert [p["text"] for p in index["prompts"]] == [p["text"] for p in json.load(fh)["prompts"]]
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
    date_back(demo_copy)
    torch.save(-torch.load(vec, weights_only=True), vec)  # new content: Snakemake ignores a bare touch
    counts = dry_run(demo_copy)
    assert counts.get("viewer_index") == 1
    assert {r for r in counts if r.startswith("capture_shard")} == shards("capture")  # one pass each, all traits
    assert counts.get("viewer_overview") == 1
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
    assert status == 200 and b'<script type="module" src="app.js">' in body
    status, headers, _ = get(server, "/viewer/js/state.js")  # a module runs only when served as JavaScript
    assert (status, headers["Content-Type"]) == (200, "text/javascript")
    status, _, body = get(server, f"/{EXP}/viewer/index.json")
    with open(os.path.join(demo_run["dir"], EXP, "viewer/index.json"), "rb") as fh:
        assert (status, body) == (200, fh.read())
    for path in ("/Snakefile", "/config.yaml", "/experiments/../Snakefile", "/viewer/%2e%2e/Snakefile",
                 "/viewer/../../etc/passwd"):
        assert get(server, path)[0] == 404, path


def test_make_view_command_prints_a_url_that_serves_the_experiment(demo_run):
    proc = subprocess.Popen([sys.executable, "-m", "traitflow.outputs.serve", "--exp", "demo", "--port", "0",
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



def test_server_answers_a_single_byte_range_with_206(demo_run, server):
    relpath = f"/{EXP}/inference/shared/prompt_0.safetensors"
    with open(os.path.join(demo_run["dir"], relpath.lstrip("/")), "rb") as fh:
        data = fh.read()
    size = len(data)
    host, port = server.server_address[:2]

    def ranged(spec):
        req = urllib.request.Request(f"http://{host}:{port}{relpath}", headers={"Range": spec})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, b""

    status, headers, body = ranged("bytes=0-7")
    assert (status, headers["Content-Range"], body) == (206, f"bytes 0-7/{size}", data[:8])
    assert headers["Accept-Ranges"] == "bytes" and headers["Content-Length"] == "8"
    assert ranged("bytes=100-")[2] == data[100:]
    assert ranged("bytes=-10")[2] == data[-10:]
    assert ranged(f"bytes=5-{size + 100}")[1]["Content-Range"] == f"bytes 5-{size - 1}/{size}"  # clipped to the end
    status, headers, _ = ranged(f"bytes={size}-")
    assert (status, headers["Content-Range"]) == (416, f"bytes */{size}")
    status, _, body = ranged("bytes=0-3,8-9")  # several ranges: the whole file (allowed by RFC 9110)
    assert (status, body) == (200, data)
    status, headers, body = get(server, relpath)  # no Range: the whole file, ranges advertised
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")
    assert ranged("bytes=0-3")[0] == 206 and get(server, "/experiments/../Snakefile")[0] == 404


def test_parse_range_reads_single_byte_ranges_only():
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-5", 100) == (95, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=100-", 100) == "unsatisfiable"
    for ignored in ("items=0-1", "bytes=0-1,3-4"):  # whole file (RFC 9110 allows it)
        assert parse_range(ignored, 100) is None, ignored
    for bad in ("bytes=5-2", "bytes=-", "bytes=a-b"):  # 416 (tests/test_serve.py)
        assert parse_range(bad, 100) == "invalid", bad


def test_overview_summarises_the_response_tokens_mean_and_signed_peak():
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(9, 2, 3)).astype(np.float32)
    norms = (np.abs(rng.normal(size=(9, 2, 3))) + 0.5).astype(np.float32)
    norms[7, 1, 2] = 0  # a zero norm gives cosine 0, not a division error
    s = summarize(proj, norms, n_prompt=4)
    np.testing.assert_allclose(s["projection"]["mean"], proj[4:].mean(0), rtol=1e-6)
    cos = np.where(norms > 0, proj / np.where(norms > 0, norms, 1), 0)[4:]
    np.testing.assert_allclose(s["cosine"]["mean"], cos.mean(0), rtol=1e-5)
    for m, scores in (("projection", proj[4:]), ("cosine", cos)):
        for l in range(2):
            for p in range(3):
                column = scores[:, l, p]
                assert s[m]["peak"][l, p] == pytest.approx(column[np.abs(column).argmax()])
    assert signed_peak(np.array([1.0, -3.0, 2.0])) == -3.0
    assert summarize(proj, norms, n_prompt=9) is None  # no response tokens

    ov = build_overview({("a", 0): s, ("b", 0): None}, ["a", "b"], [0], 2, [5])
    expected = float(proj[4:, 1, 2].mean())
    assert value(ov, "projection", "mean", "a", 0, 1, "residual_out") == pytest.approx(expected, rel=5e-3)
    assert value(ov, "cosine", "peak", "b", 0, 0, "residual_in") is None
    assert len(ov["values"]["projection"]["mean"]) == 2 * 1 * 2 * 3


def test_overview_of_ten_traits_by_two_hundred_prompts_at_26_layers_stays_small(tmp_path):
    rng = np.random.default_rng(1)
    summaries = {}
    for t in range(10):
        for i in range(200):
            proj = rng.normal(size=(12, 26, 3)).astype(np.float32) * rng.uniform(0.1, 40)
            summaries[(f"trait_{t}", i)] = summarize(proj, np.full_like(proj, 30.0), 4)
    path = tmp_path / "overview.json"
    save_overview(build_overview(summaries, [f"trait_{t}" for t in range(10)], list(range(200)), 26, [8] * 200), path)
    size = os.path.getsize(path)
    assert size < 4.5e6, size  # 624,000 numbers at 3 significant digits
    with open(path, encoding="utf-8") as fh:
        assert len(json.load(fh)["values"]["cosine"]["peak"]) == 10 * 200 * 26 * 3


def test_demo_overview_holds_each_trait_and_prompts_response_scores(demo_run):
    exp = os.path.join(demo_run["dir"], EXP)
    with open(os.path.join(exp, "viewer/overview.json"), encoding="utf-8") as fh:
        ov = json.load(fh)
    with open(os.path.join(exp, "viewer/index.json"), encoding="utf-8") as fh:
        index = json.load(fh)
    assert ov["traits"] == [t["name"] for t in index["traits"]]
    assert ov["prompts"] == [p["index"] for p in index["prompts"]]
    assert ov["n_layers"] == index["n_layers"]
    for trait in ov["traits"]:
        for i in ov["prompts"][:3]:
            cap = load_capture(os.path.join(exp, trait, "inference/residual_stream_activations", f"prompt_{i}.pt"))
            n = cap["n_prompt"]
            for measure, scores in (("projection", cap["projections"]), ("cosine", cap["cosine"])):
                response = scores[n:].astype(np.float64)
                for layer in range(ov["n_layers"]):
                    for p in range(3):
                        column = response[:, layer, p]
                        got = value(ov, measure, "mean", trait, i, layer, ov["sublayers"][p])
                        assert got == pytest.approx(column.mean(), rel=6e-3, abs=1e-7)
                        got = value(ov, measure, "peak", trait, i, layer, ov["sublayers"][p])
                        assert got == pytest.approx(column[np.abs(column).argmax()], rel=6e-3, abs=1e-7)
