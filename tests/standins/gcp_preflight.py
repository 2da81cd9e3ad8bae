"""A loopback stand-in for the read side of two Google APIs that have no emulator: GKE
(container.googleapis.com, `projects.locations.clusters.get`) and Cloud DNS
(dns.googleapis.com, `managedZones.list` and `managedZones.get`), with the shapes of
the container/v1 and dns/v1 discovery documents (Cluster, ManagedZone,
ManagedZonesListResponse).

    gcp_preflight.py --project P [--project Q ...]
                     [--cluster P/LOCATION/NAME[/STATUS]] ...
                     [--zone P/NAME/DNS_NAME[/private]] ...
                     [--port 0] [--port-file F] [--log FILE]

Serves:
  clusters.get       GET /v1/projects/{p}/locations/{l}/clusters/{c}
  managedZones.list  GET /dns/v1/projects/{p}/managedZones   ?maxResults=&pageToken=&dnsName=
  managedZones.get   GET /dns/v1/projects/{p}/managedZones/{zone}

A cluster given with --cluster is RUNNING with Workload Identity on
(`workloadIdentityConfig.workloadPool` = P.svc.id.goog) and the GCS FUSE CSI driver
enabled; POST /__standin/config {"clusters": [{"project", "location", "name",
"status", "workloadPool" (null: off), "gcsFuse": bool}], "zones": [{"project",
"name", "dnsName", "visibility"}]} replaces either list. Any other method on these
paths (create, update, delete) is logged as mutating and refused with 501: the
stand-in models reads only. Projects not given with --project answer 403
PERMISSION_DENIED, as Google does for a project you may not see.

See README.md beside this file for what is and is not modelled, and standin.py for
the request log, fault injection and /__standin/ control endpoints.
"""

import base64
import zlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gcp_iam import google_error  # noqa: E402
from standin import Api, Op, Reply, base_arguments, run  # noqa: E402

CLUSTER = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/clusters/([^/:]+)$")
ZONES = re.compile(r"^/dns/v1/projects/([^/]+)/managedZones$")
ZONE = re.compile(r"^/dns/v1/projects/([^/]+)/managedZones/([^/]+)$")
CLUSTER_STATUSES = {"STATUS_UNSPECIFIED", "PROVISIONING", "RUNNING", "RECONCILING", "STOPPING", "ERROR", "DEGRADED"}
PAGE_DEFAULT = 100


def ok(body):
    return Reply.json(200, body, content_type="application/json; charset=UTF-8")


class Preflight(Api):
    name = "gcp_preflight"

    def __init__(self, args):
        super().__init__(args)
        self.projects = {p for spec in args.project for p in spec.split(",") if p}
        self.initial_clusters = [parse_cluster(spec) for spec in args.cluster or []]
        self.initial_zones = [parse_zone(spec) for spec in args.zone or []]
        self.reset()

    def reset(self):
        self.clusters = [dict(c) for c in self.initial_clusters]
        self.zones = [dict(z) for z in self.initial_zones]

    def dump(self):
        return {"projects": sorted(self.projects), "clusters": self.clusters, "zones": self.zones}

    def configure(self, settings):
        unknown = set(settings) - {"clusters", "zones"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        if "clusters" in settings:
            clusters = []
            for c in settings["clusters"]:
                cluster = {"status": "RUNNING", "gcsFuse": True, **c}
                cluster.setdefault("workloadPool", f"{cluster['project']}.svc.id.goog")
                if cluster["status"] not in CLUSTER_STATUSES:
                    raise ValueError(f"cluster status {cluster['status']!r} is not one of {sorted(CLUSTER_STATUSES)}")
                clusters.append(cluster)
            self.clusters = clusters
        if "zones" in settings:
            zones = []
            for z in settings["zones"]:
                zone = {"visibility": "public", **z}
                if not zone["dnsName"].endswith("."):
                    raise ValueError(f"zone {zone['name']}: dnsName ends with a dot ({zone['dnsName']}.)")
                zones.append(zone)
            self.zones = zones
        return {"clusters": self.clusters, "zones": self.zones}

    def route(self, request):
        path, method = request.path, request.method
        for pattern, read, write, api in (
            (CLUSTER, "clusters.get", "clusters.update", "container"),
            (ZONES, "managedZones.list", "managedZones.create", "dns"),
            (ZONE, "managedZones.get", "managedZones.patch", "dns"),
        ):
            match = pattern.match(path)
            if not match:
                continue
            resource = "/".join(match.groups())
            if method == "GET":
                handler = {"clusters.get": self.get_cluster, "managedZones.list": self.list_zones, "managedZones.get": self.get_zone}[read]
                return Op(read, False, handler, resource)
            return Op(write if method != "DELETE" else f"{api}.delete", True, self.refuse_write, resource)
        return None

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return google_error(401, "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
        return None

    def forward(self, request):
        return google_error(404, f"gcp_preflight does not serve {request.method} {request.path}")

    def fault_reply(self, op, status, error, message):
        return google_error(status, message or "Injected by the stand-in.", code=error)

    def _project(self, project):
        if project not in self.projects:
            return google_error(403, f"Permission denied on resource project {project}.")
        return None

    def get_cluster(self, request):
        project, location, name = CLUSTER.match(request.path).groups()
        refused = self._project(project)
        if refused:
            return refused
        for c in self.clusters:
            if (c["project"], c["location"], c["name"]) == (project, location, name):
                return ok(cluster_body(c))
        return google_error(404, f"Not found: projects/{project}/locations/{location}/clusters/{name}.")

    def list_zones(self, request):
        project = ZONES.match(request.path).group(1)
        refused = self._project(project)
        if refused:
            return refused
        size = request.query.get("maxResults", [str(PAGE_DEFAULT)])[-1]
        token = request.query.get("pageToken", [None])[-1]
        dns_name = request.query.get("dnsName", [None])[-1]
        try:
            size = int(size)
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            return google_error(400, "Invalid value for maxResults or pageToken.")
        rows = sorted((z for z in self.zones if z["project"] == project), key=lambda z: z["name"])
        if dns_name is not None:
            rows = [z for z in rows if z["dnsName"] == dns_name]
        page, rest = rows[start:start + size], rows[start + size:]
        body = {"kind": "dns#managedZonesListResponse", "managedZones": [zone_body(z) for z in page]}
        if rest:
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return ok(body)

    def get_zone(self, request):
        project, name = ZONE.match(request.path).groups()
        refused = self._project(project)
        if refused:
            return refused
        for z in self.zones:
            if (z["project"], z["name"]) == (project, name):
                return ok(zone_body(z))
        return google_error(404, f"The 'parameters.managedZone' resource named '{name}' does not exist.", reason="notFound")

    def refuse_write(self, request):
        return google_error(501, "gcp_preflight models reads only (clusters.get, managedZones.list/get).")


def cluster_body(c):
    body = {
        "name": c["name"],
        "location": c["location"],
        "status": c["status"],
        "selfLink": f"https://container.googleapis.com/v1/projects/{c['project']}/locations/{c['location']}/clusters/{c['name']}",
        "addonsConfig": {"gcsFuseCsiDriverConfig": {"enabled": bool(c.get("gcsFuse"))}},
    }
    if c.get("workloadPool"):
        body["workloadIdentityConfig"] = {"workloadPool": c["workloadPool"]}
    return body


def zone_body(z):
    return {
        "kind": "dns#managedZone",
        "name": z["name"],
        "dnsName": z["dnsName"],
        "description": "",
        "id": str(zlib.crc32(f"{z['project']}/{z['name']}".encode())),
        "nameServers": [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)],
        "visibility": z.get("visibility", "public"),
    }


def parse_cluster(spec):
    parts = spec.split("/")
    if len(parts) not in (3, 4) or not all(parts):
        raise SystemExit(f"gcp_preflight: --cluster {spec!r} is not PROJECT/LOCATION/NAME[/STATUS]")
    status = parts[3] if len(parts) == 4 else "RUNNING"
    if status not in CLUSTER_STATUSES:
        raise SystemExit(f"gcp_preflight: --cluster {spec!r}: status is one of {sorted(CLUSTER_STATUSES)}")
    return {"project": parts[0], "location": parts[1], "name": parts[2], "status": status, "workloadPool": f"{parts[0]}.svc.id.goog", "gcsFuse": True}


def parse_zone(spec):
    parts = spec.split("/")
    if len(parts) not in (3, 4) or not all(parts[:3]) or (len(parts) == 4 and parts[3] != "private"):
        raise SystemExit(f"gcp_preflight: --zone {spec!r} is not PROJECT/NAME/DNS_NAME[/private]")
    dns_name = parts[2] if parts[2].endswith(".") else parts[2] + "."
    return {"project": parts[0], "name": parts[1], "dnsName": dns_name, "visibility": "private" if len(parts) == 4 else "public"}


def main():
    parser = base_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--project", action="append", default=[], help="a project that exists (repeatable, or comma-separated)")
    parser.add_argument("--cluster", action="append", help="PROJECT/LOCATION/NAME[/STATUS], a GKE cluster (repeatable)")
    parser.add_argument("--zone", action="append", help="PROJECT/NAME/DNS_NAME[/private], a Cloud DNS managed zone (repeatable)")
    args = parser.parse_args()
    run(Preflight(args), args)


if __name__ == "__main__":
    main()
