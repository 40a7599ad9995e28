"""The viewer server (traitflow.outputs.serve) on hostile requests: nothing outside its two folders, no listings,
a status code (never a traceback or a dropped connection) for malformed URLs and Range headers.

Each test starts the server in-process on 127.0.0.1, port 0, over a small made-up workflow directory
(no workflow run), and stops it when done.
"""

import http.client
import os
import threading

import pytest

from traitflow.outputs.serve import make_server

DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def site(tmp_path, capfd):
    """A workflow directory with two experiments, a viewer folder, and symlinks that lead out of them."""
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0\n")
    viewer = tmp_path / "viewer"
    viewer.mkdir()
    (viewer / "index.html").write_text("<html>viewer</html>")
    os.symlink(secret, viewer / "etclink")
    exp = tmp_path / "work" / "experiments" / "demo"
    (exp / "viewer").mkdir(parents=True)
    (exp / "viewer" / "index.json").write_text('{"experiment": "demo"}')
    (exp / "inference").mkdir()
    (exp / "inference" / "data.bin").write_bytes(DATA)
    os.symlink(secret, exp / "viewer" / "etclink")
    os.symlink(secret / "passwd", exp / "viewer" / "passwd.json")
    os.symlink(exp / "inference" / "data.bin", exp / "viewer" / "inside.bin")  # a link within the folder: fine
    other = tmp_path / "work" / "experiments" / "other"
    other.mkdir()
    (other / "secret.json").write_text("{}")
    os.symlink(other, exp / "otherlink")
    server = make_server(str(tmp_path / "work"), "demo", viewer_dir=str(viewer))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "error" not in err, err  # nothing went wrong inside the server


def request(server, path, headers=None, method="GET"):
    """(status, headers, body) of one raw request: the path goes out byte for byte, unnormalised."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        resp = conn.getresponse()  # a dropped connection raises here (RemoteDisconnected)
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_symlinks_out_of_the_served_folders_serve_nothing(site):
    for path in ("/experiments/demo/viewer/etclink/passwd", "/experiments/demo/viewer/passwd.json",
                 "/viewer/etclink/passwd", "/experiments/demo/otherlink/secret.json"):
        status, _, body = request(site, path)
        assert (status, b"root:" in body) == (404, False), path
    status, _, body = request(site, "/experiments/demo/viewer/inside.bin")  # a link that stays inside
    assert (status, body) == (200, DATA)
    assert request(site, "/experiments/demo/viewer/index.json")[2] == b'{"experiment": "demo"}'


def test_no_directory_is_listed(site):
    for path in ("/experiments/", "/experiments", "/experiments/demo/", "/experiments/demo/viewer/",
                 "/experiments/demo/viewer/etclink/", "/viewer/etclink/", "/experiments/other/"):
        status, _, body = request(site, path)
        assert status == 404 and b"Directory listing" not in body, path
    status, _, body = request(site, "/viewer/")  # the page itself (its index.html) is still served
    assert (status, body) == (200, b"<html>viewer</html>")


def test_only_the_served_experiment_is_reachable(site):
    assert request(site, "/experiments/other/secret.json")[0] == 404
    assert request(site, "/experiments/demo/../other/secret.json")[0] == 404
    assert request(site, "/experiments/demo/%2e%2e/other/secret.json")[0] == 404


@pytest.mark.parametrize("path", ["/experiments/demo/viewer/index.json%00", "/experiments/demo/%00/x",
                                  "/viewer/%zz", "/viewer/%4", "/viewer/%ff%fe.json", "/viewer/index.html%"])
def test_malformed_urls_get_400(site, path):
    status, _, body = request(site, path)
    assert status == 400 and b"malformed URL" in body, path
    assert request(site, "/viewer/")[0] == 200  # the server is still up


@pytest.mark.parametrize("spec, status, content_range, body", [
    ("bytes=0-" + "9" * 5000, 206, "bytes 0-1023/1024", DATA),  # a huge end: clipped to the file
    ("bytes=" + "9" * 5000 + "-", 416, "bytes */1024", b""),  # a huge start: past the end
    ("bytes=-" + "9" * 5000, 206, "bytes 0-1023/1024", DATA),  # the last huge-n bytes: all of them
    ("bytes=" + "9" * 5000 + "-" + "9" * 5001, 416, "bytes */1024", b""),
    ("bytes=10-5", 416, "bytes */1024", b""),  # inverted
    ("bytes=" + "9" * 5001 + "-" + "9" * 5000, 416, "bytes */1024", b""),  # inverted, both huge
    ("bytes=a-b", 416, "bytes */1024", b""),
    ("bytes=-", 416, "bytes */1024", b""),
    ("bytes=1-2-3", 416, "bytes */1024", b""),
    ("bytes=\u0663-5", 416, "bytes */1024", b""),  # a non-ASCII digit
    ("bytes=1024-", 416, "bytes */1024", b""),
    ("bytes=1020-", 206, "bytes 1020-1023/1024", DATA[1020:]),
])
def test_bad_range_headers_get_416_or_a_clipped_range(site, spec, status, content_range, body):
    got = request(site, "/experiments/demo/inference/data.bin", {"Range": spec.encode("utf-8").decode("latin-1")})
    assert (got[0], got[1]["Content-Range"], got[2]) == (status, content_range, body), spec[:40]


def test_a_range_nobody_serves_gets_the_whole_file(site):
    for spec in ("items=0-5", "bytes=0-1,5-6"):
        status, headers, body = request(site, "/experiments/demo/inference/data.bin", {"Range": spec})
        assert (status, body, headers["Content-Range"]) == (200, DATA, None), spec


def test_head_requests_follow_the_same_rules(site):
    assert request(site, "/experiments/demo/viewer/etclink/passwd", method="HEAD")[0] == 404
    assert request(site, "/experiments/%00", method="HEAD")[0] == 400
    assert request(site, "/experiments/demo/inference/data.bin", method="HEAD")[0] == 200


def test_only_requests_addressed_to_this_machine_are_answered(site):
    """DNS rebinding: a page of attacker.example re-pointed at 127.0.0.1 sends its own name as Host."""
    port = site.server_address[1]
    path = "/experiments/demo/viewer/index.json"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "127.1.2.3", "LOCALHOST"):
        status, _, body = request(site, path, {"Host": host})
        assert (status, body) == (200, b'{"experiment": "demo"}'), host
    for host in (f"attacker.example:{port}", "attacker.example", "localhost.attacker.example",
                 f"127.0.0.1.nip.io:{port}", "", f"127.0.0.1:{port}@attacker.example", f"10.0.0.1:{port}"):
        status, headers, body = request(site, path, {"Host": host})
        assert status == 403 and headers["Content-Type"].startswith("text/plain"), host
        assert body == (b"403 Forbidden: this server answers only requests addressed to localhost or its own "
                        b"address; open the URL `make view` printed\n"), host
    assert request(site, path, {"Host": "attacker.example"}, method="HEAD")[0] == 403
    assert request(site, "/", {"Host": "attacker.example"})[0] == 403  # not even the redirect
    conn = http.client.HTTPConnection(*site.server_address[:2], timeout=10)
    try:  # two Host headers: which one a proxy would believe is anyone's guess
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{port}")
        conn.putheader("Host", "attacker.example")
        conn.endheaders()
        assert conn.getresponse().status == 403
    finally:
        conn.close()


def test_make_view_serves_the_repositorys_viewer_page():
    from conftest import REPO
    from traitflow.outputs.serve import VIEWER_DIR

    assert VIEWER_DIR == os.path.join(REPO, "viewer") and os.path.isfile(os.path.join(VIEWER_DIR, "index.html"))


def test_host_names_a_server_bound_to_every_interface_answers():
    from traitflow.outputs.serve import host_allowed

    lan = {"0.0.0.0"}
    assert host_allowed("192.168.1.5:8000", lan) and host_allowed("0.0.0.0:8000", lan)
    assert not host_allowed("attacker.example:8000", lan)
    assert host_allowed("viewer.lan:8000", {"viewer.lan", "192.168.1.5"})  # the name given as --host
    assert not host_allowed("192.168.1.5:8000", {"127.0.0.1"})
    assert host_allowed(None, {"127.0.0.1"})  # HTTP/1.0 without Host: not a browser


def test_a_damaged_index_is_named_when_the_server_starts(tmp_path):
    """The server still starts (the page says what it can), but the terminal names the file and its rebuild."""
    import subprocess
    import sys

    index = tmp_path / "experiments" / "demo" / "viewer" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text('{"experiment": "demo", "prompts": [')
    proc = subprocess.Popen([sys.executable, "-m", "traitflow.outputs.serve", "--exp", "demo", "--port", "0", "--workdir",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = proc.stderr.readline()
        assert "viewer for experiment 'demo': http://127.0.0.1:" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert warning.startswith(f"traitflow [view] warning: {index}: damaged output: not a readable JSON file "
                              "(JSONDecodeError: "), warning
    assert f"fix: rebuild it: `rm -f {index} && " in warning and "--config experiment=demo`" in warning
