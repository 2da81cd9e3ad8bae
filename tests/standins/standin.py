"""What the loopback stand-ins share: the threading HTTP server that binds loopback
only, the JSON-lines request log, fault injection, the pause gate that forces
concurrency, and the /__standin/ control endpoints. Python 3 standard library only.

A stand-in is an `Api` subclass. For every request outside /__standin/ the server:

 1. reads the whole body (Content-Length or chunked);
 2. asks `Api.route` for an `Op` (name, mutating?, resource, handler) or None;
 3. asks `Api.authenticate` whether the request carries credentials (error -> reply);
 4. waits at the pause gate if a pause rule matches (forced concurrency);
 5. answers with an injected fault if a fault rule matches (before or after running
    the handler, see `after`);
 6. runs the handler under the state lock (or `Api.forward` when route gave None);
 7. logs one JSON line: {"seq", "time", "method", "path", "query", "op",
    "mutating", "status", "error", "forwarded", "fault", "paused", "resource", ...}.

Control endpoints (no credentials needed; every answer is JSON):

  GET  /__standin/health                  {"ok": true, "name": ...}
  GET  /__standin/state                   the stand-in's whole state
  GET  /__standin/requests[?op=&mutating=&status=]   logged requests since reset
  POST /__standin/reset                   state, faults, pause, request list cleared
                                          ({"truncate_log": true} empties the log file)
  POST /__standin/faults                  add a fault rule, answers {"id": N}
  GET  /__standin/faults                  the rules and how many hits each has left
  DELETE /__standin/faults                drop every rule
  POST /__standin/pause                   park matching requests until resumed
  GET  /__standin/paused[?wait=N&timeout=S]  {"waiting": n}; with wait, blocks
                                          until n >= N (or S seconds, default 10)
  POST /__standin/resume                  {"count": k} lets k parked requests go
                                          and keeps the pause; {} ends the pause
  POST /__standin/config                  per-API settings (see each stand-in)

A fault rule is JSON: {"op": "Name" | ["A", "B"], "kind": "read"|"write"|"any",
"method": "POST", "resource": "substring of the resource", "count": 1 (-1 = always),
"status": 500, "error": "API error code", "message": "...", "after": false,
"delay": 0}. Every field but status is optional; unset fields match anything.
`after: true` runs the real handler first (the change happens) and then answers
with the error, as when a response is lost. `delay` sleeps that many seconds before
answering. A pause rule has the same matching fields plus "timeout" (seconds a
parked request waits at most, default 30; then it goes on and is logged
"pause_timeout": true).
"""

import argparse
import http.server
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class Reply:
    """An HTTP answer: status, headers (list of pairs) and body bytes."""

    def __init__(self, status, body=b"", headers=None, error=None):
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        self.error = error  # the API error code, for the log

    @classmethod
    def json(cls, status, obj, headers=None, error=None, content_type="application/json"):
        body = json.dumps(obj).encode() if obj is not None else b""
        return cls(status, body, [("Content-Type", content_type)] + list(headers or []), error)


class Op:
    """One API operation a request was routed to."""

    def __init__(self, name, mutating, handler, resource="", prepare=None, **extra):
        self.name = name
        self.mutating = mutating
        self.handler = handler  # callable(request) -> Reply, run under the state lock
        # callable(request) -> Reply or None, run before the handler and outside the
        # lock (for slow checks such as asking an upstream); a Reply answers at once.
        self.prepare = prepare
        self.resource = resource
        self.extra = extra  # added to the log line

    def run(self, request, lock):
        if self.prepare is not None:
            early = self.prepare(request)
            if early is not None:
                return early
        with lock:
            return self.handler(request)


class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path  # percent-decoded path
        self.raw_path = None  # the path and query exactly as sent
        self.query = query  # dict name -> list of values
        self.headers = headers  # http.client.HTTPMessage (case-insensitive)
        self.body = body
        self.ctx = {}  # what an Op's prepare step hands its handler
        self.notes = {}  # extra fields for this request's log line

    def json_body(self):
        """The body as a JSON value; an empty body is None; invalid JSON raises ValueError."""
        if not self.body.strip():
            return None
        return json.loads(self.body.decode("utf-8"))


class Rule:
    """A fault or pause rule: what it matches, and (faults) what it answers."""

    FIELDS = ("op", "kind", "method", "resource")

    def __init__(self, spec, rule_id):
        if not isinstance(spec, dict):
            raise ValueError("a rule is a JSON object")
        self.id = rule_id
        self.spec = dict(spec)
        op = spec.get("op")
        self.ops = None if op is None else ([op] if isinstance(op, str) else list(op))
        self.kind = spec.get("kind", "any")
        if self.kind not in ("read", "write", "any"):
            raise ValueError("kind is read, write or any")
        self.method = spec.get("method")
        self.resource = spec.get("resource")
        self.count = int(spec.get("count", 1))
        self.hits = 0

    def matches(self, method, op):
        if self.count == 0:
            return False
        if self.ops is not None and op.name not in self.ops:
            return False
        if self.kind == "read" and op.mutating or self.kind == "write" and not op.mutating:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.resource is not None and self.resource not in op.resource:
            return False
        return True

    def take(self):
        self.hits += 1
        if self.count > 0:
            self.count -= 1

    def describe(self):
        return dict(self.spec, id=self.id, remaining=self.count, hits=self.hits)


class Api:
    """What a stand-in implements. Subclasses override the methods below."""

    name = "standin"

    def __init__(self, args):
        self.args = args

    def route(self, request):
        """An Op for this request, or None for requests this stand-in does not implement."""
        raise NotImplementedError

    def authenticate(self, request):
        """None when the request carries credentials, else the error Reply."""
        return None

    def forward(self, request):
        """The Reply for a request `route` did not claim (default: 404)."""
        return Reply.json(404, {"message": f"{self.name}: no such operation"})

    def fault_reply(self, op, status, error, message):
        """The error Reply an injected fault answers with, in the API's own shape."""
        raise NotImplementedError

    def reset(self):
        raise NotImplementedError

    def dump(self):
        raise NotImplementedError

    def configure(self, settings):
        """Apply POST /__standin/config; returns the effective settings."""
        raise ValueError("this stand-in has no settings")

    def control(self, method, name, query, body):
        """API-specific control endpoints; None when `name` is not one."""
        return None


class Standin:
    def __init__(self, api, log_path):
        self.api = api
        self.lock = threading.RLock()  # guards the API state
        self.meta = threading.Condition()  # guards rules, pause and the request list
        self.faults = []
        self.pause = None
        self.release = 0
        self.waiting = 0
        self.next_rule = 1
        self.requests = []
        self.seq = 0
        self.log_path = log_path
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None

    # -- the request log -------------------------------------------------------------

    def log(self, entry):
        with self.meta:
            self.seq += 1
            entry = dict(seq=self.seq, time=round(time.time(), 6), **entry)
            self.requests.append(entry)
            if self.log_file:
                self.log_file.write(json.dumps(entry, sort_keys=True) + "\n")
                self.log_file.flush()

    # -- the pause gate ---------------------------------------------------------------

    def gate(self, method, op):
        """Parks the request while a matching pause is on. True when it timed out."""
        with self.meta:
            rule = self.pause
            if rule is None or not rule.matches(method, op):
                return False, False
            deadline = time.monotonic() + float(rule.spec.get("timeout", 30))
            self.waiting += 1
            self.meta.notify_all()
            timed_out = False
            try:
                while self.pause is rule and self.release == 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        timed_out = True
                        break
                    self.meta.wait(left)
                if self.pause is rule and self.release > 0 and not timed_out:
                    self.release -= 1
            finally:
                self.waiting -= 1
                self.meta.notify_all()
            return True, timed_out

    def take_fault(self, method, op):
        with self.meta:
            for rule in self.faults:
                if rule.matches(method, op):
                    rule.take()
                    return rule
        return None

    # -- serving one request ----------------------------------------------------------

    def serve(self, request):
        """The Reply for an API request, with its log line written."""
        entry = {
            "method": request.method,
            "path": request.path,
            "query": urllib.parse.urlencode(request.query, doseq=True),
            "op": None,
            "mutating": request.method not in ("GET", "HEAD"),
            "forwarded": False,
            "fault": None,
            "paused": False,
            "resource": "",
        }
        try:
            reply = self._serve(request, entry)
        except Exception as error:  # a bug in the stand-in: say so loudly
            import traceback

            traceback.print_exc()
            reply = Reply.json(500, {"message": f"{self.api.name} internal error: {error!r}"}, error="StandinBug")
        entry["status"] = reply.status
        entry["error"] = reply.error
        entry.update(request.notes)
        self.log(entry)
        return reply

    def _serve(self, request, entry):
        op = self.api.route(request)
        if op is None:
            entry["forwarded"] = True
            return self.api.forward(request)
        entry.update(op=op.name, mutating=op.mutating, resource=op.resource, **op.extra)
        denied = self.api.authenticate(request)
        if denied is not None:
            return denied
        paused, timed_out = self.gate(request.method, op)
        entry["paused"] = paused
        if timed_out:
            entry["pause_timeout"] = True
        rule = self.take_fault(request.method, op)
        if rule is not None:
            entry["fault"] = rule.id
            if rule.spec.get("after"):
                real = op.run(request, self.lock)
                entry["fault_hid_status"] = real.status
            delay = float(rule.spec.get("delay", 0))
            if delay:
                time.sleep(delay)
            if "status" not in rule.spec:  # a delay-only rule
                return op.run(request, self.lock)
            return self.api.fault_reply(op, int(rule.spec["status"]), rule.spec.get("error"), rule.spec.get("message"))
        return op.run(request, self.lock)

    # -- control endpoints ------------------------------------------------------------

    def control(self, method, name, query, body):
        try:
            data = json.loads(body.decode() or "{}") if body.strip() else {}
        except ValueError:
            return Reply.json(400, {"message": "control body is not JSON"})
        try:
            return self._control(method, name, query, data)
        except (ValueError, TypeError, KeyError) as error:
            return Reply.json(400, {"message": f"bad control request: {error}"})

    def _control(self, method, name, query, data):
        if name == "health" and method == "GET":
            return Reply.json(200, {"ok": True, "name": self.api.name})
        if name == "state" and method == "GET":
            with self.lock:
                return Reply.json(200, self.api.dump())
        if name == "requests" and method == "GET":
            with self.meta:
                rows = list(self.requests)
            if "op" in query:
                rows = [r for r in rows if r["op"] in query["op"]]
            if "mutating" in query:
                want = query["mutating"][0].lower() in ("1", "true", "yes")
                rows = [r for r in rows if r["mutating"] == want]
            if "status" in query:
                rows = [r for r in rows if str(r["status"]) in query["status"]]
            return Reply.json(200, {"requests": rows})
        if name == "reset" and method == "POST":
            with self.meta:
                self.faults = []
                self.pause = None
                self.release = 0
                self.requests = []
                self.meta.notify_all()
                if data.get("truncate_log") and self.log_file:
                    self.log_file.truncate(0)
            with self.lock:
                self.api.reset()
            return Reply.json(200, {"ok": True})
        if name == "faults":
            with self.meta:
                if method == "POST":
                    rule = Rule(data, self.next_rule)
                    if "status" in data and not 400 <= int(data["status"]) <= 599:
                        raise ValueError("status must be 4xx or 5xx")
                    if "status" not in data and not data.get("delay"):
                        raise ValueError("a fault needs a status, a delay, or both")
                    self.next_rule += 1
                    self.faults.append(rule)
                    return Reply.json(200, {"id": rule.id})
                if method == "GET":
                    return Reply.json(200, {"faults": [r.describe() for r in self.faults]})
                if method == "DELETE":
                    self.faults = []
                    return Reply.json(200, {"ok": True})
        if name == "pause" and method == "POST":
            with self.meta:
                self.pause = Rule(data, self.next_rule)
                self.next_rule += 1
                self.release = 0
                self.meta.notify_all()
                return Reply.json(200, {"id": self.pause.id})
        if name == "paused" and method == "GET":
            want = int(query.get("wait", ["0"])[0])
            timeout = float(query.get("timeout", ["10"])[0])
            with self.meta:
                self.meta.wait_for(lambda: self.waiting >= want, timeout)
                return Reply.json(200, {"waiting": self.waiting, "paused": self.pause is not None})
        if name == "resume" and method == "POST":
            with self.meta:
                if "count" in data:
                    self.release += int(data["count"])
                else:
                    self.pause = None
                    self.release = 0
                self.meta.notify_all()
                return Reply.json(200, {"ok": True})
        if name == "config" and method == "POST":
            with self.lock:
                return Reply.json(200, self.api.configure(data))
        with self.lock:
            reply = self.api.control(method, name, query, data)
        if reply is not None:
            return reply
        return Reply.json(404, {"message": f"no control endpoint {method} /__standin/{name}"})


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin"
    sys_version = ""

    def log_message(self, *args):
        pass

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, reply):
        self.send_response(reply.status)
        names = set()
        for name, value in reply.headers:
            names.add(name.lower())
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def handle_any(self):
        standin = self.server.standin
        body = self.read_body()
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if split.path.startswith("/__standin/"):
            self.send(standin.control(self.command, split.path[len("/__standin/") :], query, body))
            return
        request = Request(self.command, path, query, self.headers, body)
        request.raw_path = self.path
        self.send(standin.serve(request))

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def loopback_only(host):
    """The host to bind, or exit: only 127.0.0.1 and ::1 are allowed."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        sys.exit(f"refusing to bind {host!r}: the stand-ins listen on 127.0.0.1 or ::1 only")
    if str(address) not in LOOPBACK_HOSTS:
        sys.exit(f"refusing to bind {host!r}: the stand-ins listen on 127.0.0.1 or ::1 only")
    return str(address)


def loopback_url(url, what):
    """The URL without a trailing slash, or exit when it is not http on loopback."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    ok = parts.scheme == "http" and (host == "localhost" or _is_loopback(host))
    if not ok:
        sys.exit(f"refusing non-loopback {what} {url!r}: only http://127.0.0.1 or [::1]")
    return url.rstrip("/")


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default) or ::1; nothing else")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--port-file", help="write the port here (atomically) once listening")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    return parser


def run(api, args):
    host = loopback_only(args.host)
    server_class = Server
    if ":" in host:

        class Server6(Server):
            address_family = socket.AF_INET6

        server_class = Server6
    server = server_class((host, args.port), Handler)
    server.standin = Standin(api, args.log)
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"READY {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
