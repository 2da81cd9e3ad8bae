"""A fault-injecting HTTP proxy for apply tests: forwards every request to an emulator
on 127.0.0.1 and answers a chosen request with an error instead, once or always.

    faulty_proxy.py LISTEN_PORT UPSTREAM_URL MATCH STATUS [COUNT]

MATCH is a substring of "METHOD PATH?QUERY BODY" (for S3, e.g. "PUT /bucket?tagging";
for IAM and STS, the form body's Action, e.g. "Action=CreatePolicy"; for the GCS JSON
API, e.g. "PUT /storage/v1/b/NAME/iam"). The first COUNT matching requests (default:
all) get STATUS with an error body in the API's own shape (AWS XML, or Google's JSON
for paths under /storage/); the rest are forwarded. Refuses any upstream that is not
loopback.
"""

import http.server
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

port, upstream, match, status = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3], int(sys.argv[4])
remaining = int(sys.argv[5]) if len(sys.argv) > 5 else -1
host = urllib.parse.urlparse(upstream).hostname
if host not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"refusing non-loopback upstream {upstream}")

CODES = {500: "InternalError", 503: "SlowDown", 400: "Throttling", 403: "AccessDenied"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, content_type, payload):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def handle_one(self):
        global remaining
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        signature = f"{self.command} {self.path} {body[:2000].decode('latin-1')}"
        if match in signature and remaining != 0:
            remaining -= 1
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
