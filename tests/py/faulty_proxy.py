"""A fault-injecting HTTP proxy for apply tests: forwards every request to an emulator
on 127.0.0.1 and answers a chosen request with an error instead, once or always.

    faulty_proxy.py LISTEN_PORT UPSTREAM_URL MATCH STATUS [COUNT] [--body JSON] [--log FILE]

MATCH is a substring of "METHOD PATH?QUERY BODY" (for S3, e.g. "PUT /bucket?tagging";
for IAM and STS, the form body's Action, e.g. "Action=CreatePolicy"; for the GCS JSON
API, e.g. "PUT /storage/v1/b/NAME/iam"). The first COUNT matching requests (default:
all) get STATUS with an error body in the API's own shape (AWS XML, or Google's JSON
for paths under /storage/); the rest are forwarded. With --body, a matching request gets STATUS with that JSON body
instead (a 200 can stand in for an answer the emulator cannot give). With --log, one
JSON line per request after it was answered: {"method", "path", "query", "status",
"injected", "t"} (t: seconds since the proxy started, monotonic; "injected": whether
the proxy answered it), and for a body with an `etag`, "etag". Refuses any upstream
that is not loopback.
"""

import argparse
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("upstream")
parser.add_argument("match")
parser.add_argument("status", type=int)
parser.add_argument("count", type=int, nargs="?", default=-1)
parser.add_argument("--body", default=None)
parser.add_argument("--log", default=None)
args = parser.parse_args()
port, upstream, match, status = args.port, args.upstream.rstrip("/"), args.match, args.status
remaining = args.count
started = time.monotonic()
lock = threading.Lock()
host = urllib.parse.urlparse(upstream).hostname
if host not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"refusing non-loopback upstream {upstream}")

CODES = {500: "InternalError", 503: "SlowDown", 400: "Throttling", 403: "AccessDenied"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, body, status, injected):
        if not args.log:
            return
        path, _, query = self.path.partition("?")
        line = {"method": self.command, "path": path, "query": query, "status": status,
                "injected": injected, "t": round(time.monotonic() - started, 4)}
        try:
            sent = json.loads(body) if body else None
        except ValueError:
            sent = None
        if isinstance(sent, dict) and "etag" in sent:
            line["etag"] = sent["etag"]
        with lock, open(args.log, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    def reply(self, status, content_type, payload):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only (S3's HeadBucket 403)
            self.wfile.write(payload)

    def handle_one(self):
        global remaining
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        signature = f"{self.command} {self.path} {body[:2000].decode('latin-1')}"
        if match in signature and remaining != 0:
            remaining -= 1
            self.record(body, status, True)
            if args.body is not None:
                self.reply(status, "application/json", args.body.encode())
                return
            if self.path.startswith("/storage/"):
                message = {"error": {"code": status, "message": "injected by faulty_proxy"}}
                self.reply(status, "application/json", json.dumps(message).encode())
                return
            code = CODES.get(status, "InternalError")
            error = f"<Error><Code>{code}</Code><Message>injected by faulty_proxy</Message></Error>"
            # S3 (REST) answers <Error>; the query APIs (IAM, STS) wrap it.
            if self.command == "POST" and b"Action=" in body:
                error = f"<ErrorResponse>{error}<RequestId>0</RequestId></ErrorResponse>"
            payload = ('<?xml version="1.0" encoding="UTF-8"?>' + error).encode()
            self.reply(status, "application/xml", payload)
            return
        request = urllib.request.Request(upstream + self.path, data=body if body else None, method=self.command)
        for name, value in self.headers.items():
            if name.lower() not in ("host", "content-length", "connection", "transfer-encoding"):
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                code, headers, data = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            code, headers, data = error.code, error.headers, error.read()
        self.record(body, code, False)
        self.send_response(code)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = handle_one


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
