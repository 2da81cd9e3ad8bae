"""Self-test of faulty_proxy.py (run by scripts/test with the stand-ins' tests): the
old positional form, and the sweep options --writes, --skip, --after, --drop, --route."""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

PROXY = os.path.join(os.path.dirname(__file__), "faulty_proxy.py")


class Upstream:
    """A loopback server that answers 200 with what it saw, and remembers it."""

    def __init__(self, name):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, body.decode()))
                payload = json.dumps({"server": name}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def upstream():
    server = Upstream("main")
    yield server
    server.close()


def start(tmp_path, upstream_url, *argv):
    port = free_port()
    log = tmp_path / "proxy.jsonl"
    child = subprocess.Popen([sys.executable, PROXY, str(port), upstream_url, *argv, "--log", str(log)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the proxy did not listen"
            time.sleep(0.05)
    return child, port, log


def send(port, method, path, body=b"", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def lines(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_positional_form_faults_the_first_count_matches(tmp_path, upstream):
    child, port, log = start(tmp_path, upstream.url, "PUT /b", "500", "1")
    try:
        assert send(port, "PUT", "/b?tagging")[0] == 500
        assert send(port, "PUT", "/b?tagging")[0] == 200
        assert send(port, "GET", "/b")[0] == 200
    finally:
        child.terminate()
    assert [(line["status"], line["injected"]) for line in lines(log)] == [(500, True), (200, False), (200, False)]
    assert len(upstream.seen) == 2


def test_writes_skip_lets_k_minus_one_writes_through_and_faults_the_kth(tmp_path, upstream):
    iam = "application/x-www-form-urlencoded"
    child, port, log = start(tmp_path, upstream.url, "", "403", "1", "--writes", "--skip", "2")
    try:
        assert send(port, "POST", "/", b"Action=GetRole&RoleName=r", {"Content-Type": iam})[0] == 200
        assert send(port, "POST", "/", b"Action=CreateRole&RoleName=r", {"Content-Type": iam})[0] == 200
        assert send(port, "POST", "/v1/p/sa/x:getIamPolicy", b"{}")[0] == 200
        assert send(port, "PUT", "/bucket?tagging", b"<Tagging/>")[0] == 200
        status, _, body = send(port, "POST", "/", b"Action=AttachRolePolicy&RoleName=r", {"Content-Type": iam})
        assert status == 403 and b"<ErrorResponse><Error><Code>AccessDenied</Code>" in body
        assert send(port, "DELETE", "/bucket")[0] == 200
    finally:
        child.terminate()
    logged = lines(log)
    assert [line["write"] for line in logged] == [False, True, False, True, True, True]
    assert [line["injected"] for line in logged] == [False, False, False, False, True, False]
    assert logged[4]["action"] == "AttachRolePolicy"
    assert [s[2] for s in upstream.seen if "AttachRolePolicy" in s[2]] == []


def test_after_makes_the_change_then_answers_the_error_in_the_apis_shape(tmp_path, upstream):
    child, port, log = start(tmp_path, upstream.url, "", "403", "2", "--writes", "--after", "--code", "AccessDeniedException")
    try:
        status, headers, body = send(port, "POST", "/clusters/c/pod-identity-associations", b"{}")
        assert status == 403 and headers.get("x-amzn-ErrorType") == "AccessDeniedException"
        assert json.loads(body)["message"] == "injected by faulty_proxy"
        status, _, body = send(port, "POST", "/v1/projects/p/serviceAccounts", b"{}")
        assert status == 403 and json.loads(body)["error"]["status"] == "AccessDeniedException"
    finally:
        child.terminate()
    assert len(upstream.seen) == 2, "both changes reached the server"
    assert [line["hidden_status"] for line in lines(log)] == [200, 200]


def test_drop_closes_the_connection_without_an_answer(tmp_path, upstream):
    child, port, log = start(tmp_path, upstream.url, "PUT", "500", "1", "--drop", "--after")
    try:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            send(port, "PUT", "/b", b"x")
        assert send(port, "PUT", "/b", b"x")[0] == 200
    finally:
        child.terminate()
    assert len(upstream.seen) == 2
    assert [line["status"] for line in lines(log)] == [0, 200]


def test_route_sends_a_path_prefix_to_another_upstream(tmp_path, upstream):
    other = Upstream("other")
    child, port, _ = start(tmp_path, upstream.url, "nothing-matches", "500", "--route", f"/v1/={other.url}")
    try:
        assert json.loads(send(port, "GET", "/v1/projects/p")[2]) == {"server": "other"}
        assert json.loads(send(port, "GET", "/storage/v1/b")[2]) == {"server": "main"}
    finally:
        child.terminate()
        other.close()


def test_non_loopback_upstreams_and_routes_are_refused(tmp_path):
    for argv in (["http://10.0.0.1:80", "x", "500"], ["http://127.0.0.1:1", "x", "500", "--route", "/v1/=http://example.com"]):
        done = subprocess.run([sys.executable, PROXY, str(free_port()), *argv], capture_output=True, text=True, timeout=10)
        assert done.returncode != 0 and "refusing non-loopback" in done.stderr
