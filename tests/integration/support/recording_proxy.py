"""A recording HTTP proxy for apply tests: forwards every request, unchanged, to an
emulator on 127.0.0.1 and appends one JSON line per request to a log, so a test counts
the requests the server actually saw rather than trusting strata's own evidence.

    recording_proxy.py LISTEN_PORT UPSTREAM_URL LOG_FILE [CERT_PEM KEY_PEM]

With a certificate and key it serves HTTPS (to test strata's TLS stack; the upstream
stays plain HTTP).

Each line: {"method", "path", "query", "action", "status"}. `action` is the query
protocol's `Action=` (IAM, STS: every call is a POST, the action says which), the JSON
protocol's operation from `X-Amz-Target` (ACM: `CertificateManager.ListCertificates`
gives `ListCertificates`), or null.
The line is written after the upstream answered. Refuses any upstream that is not
loopback. Standard library only.
"""

import http.server
import json
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

port, upstream, log_path = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]
if "://" not in upstream:
    upstream = "http://" + upstream
host = urllib.parse.urlparse(upstream).hostname
if host not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"refusing non-loopback upstream {upstream}")

lock = threading.Lock()


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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_one(self):
        body = read_body(self)
        path, _, query = self.path.partition("?")
        action = None
        if b"Action=" in body:
            form = urllib.parse.parse_qs(body.decode("latin-1"))
            action = (form.get("Action") or [None])[0]
        elif self.headers.get("X-Amz-Target"):
            action = self.headers["X-Amz-Target"].rsplit(".", 1)[-1]
        request = urllib.request.Request(upstream + self.path, data=body if body else None, method=self.command)
        for name, value in self.headers.items():
            if name.lower() not in ("host", "content-length", "connection", "transfer-encoding"):
                request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                code, headers, data = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            code, headers, data = error.code, error.headers, error.read()
        except OSError as error:
            code, headers, data = 502, {}, str(error).encode()
        line = {"method": self.command, "path": path, "query": query, "action": action, "status": code}
        with lock, open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
        self.send_response(code)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = handle_one


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
if len(sys.argv) > 5:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
