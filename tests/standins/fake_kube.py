#!/usr/bin/env python3
"""A loopback stand-in for the few Kubernetes API calls `helm upgrade --install
--dry-run=client` makes, so that strata's exact helm argv can be run through the real
helm binary without a cluster.

    fake_kube.py --port N [--log FILE]

Serves: GET /version (a v1.33 server), GET /api and /apis (discovery: core v1 only),
and GET .../secrets (helm's release history: always empty, so every release is a new
install). Anything else answers 404 in the API's Status shape. Every request is logged
as a JSON line (method, path) to --log. Binds 127.0.0.1 only.

What it does not model: anything a real install does (no objects are stored, no
admission, no RBAC); `--dry-run=client` never sends the manifests.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    log_file = None

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self):
        if self.log_file:
            with LOCK, open(self.log_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({"method": self.command, "path": self.path}) + "\n")

    def do_GET(self):
        self.record()
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path.endswith("/secrets"):
            return self.reply(200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": []})
        return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_POST(self):
        self.record()
        self.reply(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "message": "fake_kube: a dry run writes nothing", "code": 405})

    do_PUT = do_PATCH = do_DELETE = do_POST


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log")
    args = parser.parse_args()
    Handler.log_file = args.log
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
