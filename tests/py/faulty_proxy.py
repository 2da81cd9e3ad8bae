"""A fault-injecting HTTP proxy for apply tests: forwards every request to an emulator
on 127.0.0.1 and answers a chosen request with an error instead, once or always.

    faulty_proxy.py LISTEN_PORT UPSTREAM_URL MATCH STATUS [COUNT] [--body JSON] [--log FILE]
                    [--writes] [--skip N] [--after] [--drop] [--code CODE]
                    [--route PREFIX=URL ...]

MATCH is a substring of "METHOD PATH?QUERY BODY" (for S3, e.g. "PUT /bucket?tagging";
for IAM and STS, the form body's Action, e.g. "Action=CreatePolicy"; for the GCS JSON
API, e.g. "PUT /storage/v1/b/NAME/iam"; "" matches every request). The first COUNT
matching requests (default: all) get STATUS with an error body in the API's own shape
(AWS query XML for IAM/STS, S3 XML, restJson for EKS (`x-amzn-ErrorType` header), or
Google's JSON for paths under /storage/, /upload/ and /v1/); the rest are forwarded.
With --body, a matching request gets STATUS with that JSON body instead (a 200 can stand
in for an answer the emulator cannot give). With --log, one JSON line per request after
it was answered: {"method", "path", "query", "action", "write", "status", "injected",
"t"} (t: seconds since the proxy started, monotonic; "injected": whether the proxy
answered it; "action": the IAM/STS `Action=` or `X-Amz-Target` operation, else null;
"write": whether the request asks for a change, see --writes), for a body with an
`etag`, "etag", with --after, "hidden_status" (what upstream answered behind the
fault), and for IAM/STS, "names": the form's *Name and *Arn parameters (RoleName,
PolicyArn, ...). A dropped request is logged with status 0. Refuses any upstream that is not loopback.

Options for fault-injection sweeps ("fail the k-th write of a run"):
  --writes        a request matches only if it also asks for a change: an IAM/STS
                  action other than Get/List/Describe/Simulate, a Google IAM POST other
                  than :getIamPolicy/:testIamPermissions, any other method but GET/HEAD
  --skip N        let the first N matching requests through (forwarded, logged), and
                  fault the COUNT after them
  --after         forward a faulted request first (the change happens), then answer
                  the error: an answer lost on the way back
  --drop          close the connection without any answer (the client sees a transport
                  error; with --after the change has happened)
  --code CODE     the API error code to answer (default by STATUS: 500 InternalError,
                  503 SlowDown, 400 Throttling, 403 AccessDenied)
  --route P=URL   repeatable: requests whose path starts with P go to URL (loopback)
                  instead of UPSTREAM_URL, so one proxy (and one count) sits in front of
                  several servers
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
parser.add_argument("--writes", action="store_true")
parser.add_argument("--skip", type=int, default=0)
parser.add_argument("--after", action="store_true")
parser.add_argument("--drop", action="store_true")
parser.add_argument("--code", default=None)
parser.add_argument("--route", action="append", default=[])
args = parser.parse_args()
port, upstream, match, status = args.port, args.upstream.rstrip("/"), args.match, args.status
remaining = args.count
to_skip = args.skip
started = time.monotonic()
lock = threading.Lock()


def loopback(url):
    host = urllib.parse.urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing non-loopback upstream {url}")
    return url.rstrip("/")


loopback(upstream)
routes = []
for spec in args.route:
    prefix, sep, url = spec.partition("=")
    if not sep or not prefix.startswith("/"):
        sys.exit(f"--route takes /PREFIX=URL, not {spec!r}")
    routes.append((prefix, loopback(url)))

CODES = {500: "InternalError", 503: "SlowDown", 400: "Throttling", 403: "AccessDenied"}
READ_ACTIONS = ("Get", "List", "Describe", "Simulate")


def read_body(handler):
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def action_of(headers, body):
    if b"Action=" in body:
        form = urllib.parse.parse_qs(body.decode("latin-1"))
        return (form.get("Action") or [None])[0]
    if headers.get("X-Amz-Target"):
        return headers["X-Amz-Target"].rsplit(".", 1)[-1]
    return None


def is_write(method, path, action):
    if action is not None:
        return not action.startswith(READ_ACTIONS)
    if method == "POST" and path.endswith((":getIamPolicy", ":testIamPermissions")):
        return False
    return method not in ("GET", "HEAD")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, body, status, injected, action, write, hidden=None):
        if not args.log:
            return
        path, _, query = self.path.partition("?")
        line = {"method": self.command, "path": path, "query": query, "action": action,
                "write": write, "status": status, "injected": injected,
                "t": round(time.monotonic() - started, 4)}
        if hidden is not None:
            line["hidden_status"] = hidden
        if b"Action=" in body:
            form = urllib.parse.parse_qs(body.decode("latin-1"))
            names = {k: v[0] for k, v in form.items() if k.endswith(("Name", "Arn")) and v}
            if names:
                line["names"] = names
        try:
            sent = json.loads(body) if body else None
        except ValueError:
            sent = None
        if isinstance(sent, dict) and "etag" in sent:
            line["etag"] = sent["etag"]
        with lock, open(args.log, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    def reply(self, status, content_type, payload, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only (S3's HeadBucket 403)
            self.wfile.write(payload)

    def upstream_of(self):
        for prefix, url in routes:
            if self.path.startswith(prefix):
                return url
        return upstream

    def forward(self, body):
        request = urllib.request.Request(self.upstream_of() + self.path, data=body if body else None, method=self.command)
        for name, value in self.headers.items():
            if name.lower() not in ("host", "content-length", "connection", "transfer-encoding"):
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def inject(self, body):
        if args.drop:
            # No answer at all: the client sees the connection close.
            self.close_connection = True
            return
        if args.body is not None:
            self.reply(status, "application/json", args.body.encode())
            return
        code = args.code or CODES.get(status, "InternalError")
        google = self.path.startswith(("/storage/", "/upload/", "/v1/"))
        if google:
            message = {"error": {"code": status, "message": "injected by faulty_proxy",
                                 "status": args.code or "FAILED_PRECONDITION"}}
            self.reply(status, "application/json", json.dumps(message).encode())
            return
        if self.path.startswith("/clusters") or self.headers.get("X-Amz-Target"):
            # restJson (EKS): the code in a header, the message in the body.
            payload = json.dumps({"message": "injected by faulty_proxy"}).encode()
            self.reply(status, "application/json", payload, [("x-amzn-ErrorType", code)])
            return
        error = f"<Error><Code>{code}</Code><Message>injected by faulty_proxy</Message></Error>"
        # S3 (REST) answers <Error>; the query APIs (IAM, STS) wrap it.
        if self.command == "POST" and b"Action=" in body:
            error = f"<ErrorResponse>{error}<RequestId>0</RequestId></ErrorResponse>"
        payload = ('<?xml version="1.0" encoding="UTF-8"?>' + error).encode()
        self.reply(status, "application/xml", payload)

    def handle_one(self):
        global remaining, to_skip
        body = read_body(self)
        action = action_of(self.headers, body)
        write = is_write(self.command, self.path.partition("?")[0], action)
        signature = f"{self.command} {self.path} {body[:2000].decode('latin-1')}"
        fault = False
        if match in signature and (write or not args.writes):
            with lock:
                if to_skip > 0:
                    to_skip -= 1
                elif remaining != 0:
                    remaining -= 1
                    fault = True
        if fault:
            hidden = None
            if args.after:
                hidden = self.forward(body)[0]
            self.record(body, 0 if args.drop else status, True, action, write, hidden)
            self.inject(body)
            return
        code, headers, data = self.forward(body)
        self.record(body, code, False, action, write)
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
