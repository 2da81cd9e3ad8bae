"""A loopback stand-in for the EKS Pod Identity association API (restJson1), with every
other EKS request forwarded verbatim to an upstream (the moto server).

    eks_pod_identity.py --upstream http://127.0.0.1:PORT [--port 0] [--port-file F]
                        [--log FILE] [--cluster NAME ...] [--account 123456789012]
                        [--role-check auto|off|exists|trust]
                        [--addon CLUSTER:NAME[:STATUS] ...]
                        [--cluster-status CLUSTER:STATUS ...]

Implements CreatePodIdentityAssociation, ListPodIdentityAssociations,
DescribePodIdentityAssociation, UpdatePodIdentityAssociation and
DeletePodIdentityAssociation with the request and response shapes of botocore's
eks/2017-11-01/service-2.json, and the read side of EKS add-ons, ListAddons and
DescribeAddon (which moto 5.1.22 lacks): the installed add-ons are set with --addon
CLUSTER:NAME[:STATUS] (repeatable) or POST /__standin/config {"addons": {CLUSTER:
{NAME: STATUS}}}; creating, updating or deleting an add-on is refused (501).
Everything else (DescribeCluster, ...) goes to --upstream unchanged, so moto stays
the source of truth for clusters and roles; the one exception is what moto cannot
show: its clusters are always ACTIVE and always have an OIDC issuer, so DescribeCluster
answers of a cluster named in --cluster-status CLUSTER:STATUS or POST /__standin/config
{"cluster_overrides": {CLUSTER: {"status": ..., "identity": null, ...}}} get those
top-level Cluster fields replaced (null removes the field).

Clusters: with --cluster (repeatable) only those names exist, in every region; without
it the stand-in asks upstream `GET /clusters/{name}` with the caller's own
Authorization header (moto keeps clusters per region, and reads the region from the
credential scope) on every Pod Identity call, so a cluster created or deleted in moto
is seen at once.

Roles (--role-check): `exists` asks upstream IAM GetRole for the role in roleArn
and targetRoleArn (same name and path); `trust` also requires roleArn's trust policy
to allow the service principal pods.eks.amazonaws.com both sts:AssumeRole and
sts:TagSession, as EKS does (targetRoleArn is only checked to exist). `auto` (default) is `trust` with --upstream and `off` without.

See README.md beside this file for what is and is not modelled, and standin.py for
the request log, fault injection and /__standin/ control endpoints.
"""

import base64
import http.client
import json
import os
import re
import secrets
import sys
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin import Api, Op, Reply, base_arguments, loopback_url, run  # noqa: E402

COLLECTION = re.compile(r"^/clusters/([^/]+)/pod-identity-associations$")
ITEM = re.compile(r"^/clusters/([^/]+)/pod-identity-associations/([^/]+)$")
ADDONS = re.compile(r"^/clusters/([^/]+)/addons$")
ADDON = re.compile(r"^/clusters/([^/]+)/addons/([^/]+)$")
CLUSTER_PATH = re.compile(r"^/clusters/([^/]+)$")
# ClusterStatus and the top-level members of the Cluster shape (service-2.json).
CLUSTER_STATUSES = {"CREATING", "ACTIVE", "DELETING", "FAILED", "UPDATING", "PENDING"}
CLUSTER_FIELDS = {
    "name", "arn", "createdAt", "version", "endpoint", "roleArn", "resourcesVpcConfig",
    "kubernetesNetworkConfig", "logging", "identity", "status", "certificateAuthority",
    "clientRequestToken", "platformVersion", "tags", "encryptionConfig", "connectorConfig",
    "id", "health", "outpostConfig", "accessConfig", "upgradePolicy", "zonalShiftConfig",
    "remoteNetworkConfig", "computeConfig", "storageConfig", "deletionProtection",
    "controlPlaneScalingConfig", "kubeApiServerConfig", "kubeControllerManagerConfig",
    "kubeSchedulerConfig",
}
ADDON_STATUSES = {"CREATING", "ACTIVE", "CREATE_FAILED", "UPDATING", "DELETING", "DELETE_FAILED", "DEGRADED", "UPDATE_FAILED"}
ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})$")
CREDENTIAL = re.compile(r"Credential=([^/,\s]*)/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

CREATE_FIELDS = {"namespace", "serviceAccount", "roleArn", "clientRequestToken", "tags", "disableSessionTags", "targetRoleArn", "policy"}
UPDATE_FIELDS = {"roleArn", "clientRequestToken", "disableSessionTags", "targetRoleArn", "policy"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "expect"}
PAGE_DEFAULT = 100

# The default error code and message of an injected fault, by HTTP status.
FAULTS = {
    400: ("InvalidParameterException", "Injected by the stand-in."),
    403: ("AccessDeniedException", "User is not authorized to perform this operation."),
    404: ("ResourceNotFoundException", None),
    409: ("ResourceInUseException", "Injected by the stand-in."),
    429: ("ThrottlingException", "Rate exceeded"),
    500: ("ServerException", "Injected by the stand-in."),
    503: ("ServiceUnavailableException", "Service is unavailable."),
}


class Invalid(Exception):
    """A request the API refuses: (status, error code, message)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status, code, message, **fields):
    body = {"message": message}
    body.update({k: v for k, v in fields.items() if v is not None})
    return Reply.json(status, body, [("x-amzn-ErrorType", code), ("x-amzn-RequestId", str(uuid.uuid4()))], error=code)


def ok(body):
    return Reply.json(200, body, [("x-amzn-RequestId", str(uuid.uuid4()))])


class PodIdentity(Api):
    name = "eks_pod_identity"

    def __init__(self, args):
        super().__init__(args)
        self.upstream = loopback_url(args.upstream, "upstream") if args.upstream else None
        self.clusters = list(args.cluster) if args.cluster else None
        if self.clusters is None and self.upstream is None:
            sys.exit("eks_pod_identity: give --upstream (clusters are asked there) or --cluster NAME")
        self.account = args.account
        self.role_check = self._role_check(args.role_check)
        self.initial_addons = parse_addons(args.addon or [])
        self.initial_overrides = parse_cluster_statuses(getattr(args, "cluster_status", None) or [])
        self.reset()

    def _role_check(self, mode):
        if mode == "auto":
            mode = "trust" if self.upstream else "off"
        if mode not in ("off", "exists", "trust"):
            raise ValueError("role_check is auto, off, exists or trust")
        if mode != "off" and not self.upstream:
            raise ValueError(f"role check {mode!r} needs --upstream")
        return mode

    def reset(self):
        self.associations = {}  # associationId -> association (with its "_region")
        self.tokens = {}  # (region, cluster, clientRequestToken) -> (request fields, associationId)
        # cluster -> {add-on name: status}, the same in every region
        self.addons = {c: dict(a) for c, a in getattr(self, "initial_addons", {}).items()}
        # cluster -> {top-level Cluster field: value (None removes it)} for DescribeCluster
        self.cluster_overrides = {c: dict(o) for c, o in getattr(self, "initial_overrides", {}).items()}

    def dump(self):
        return {
            "associations": list(self.associations.values()),
            "clusters": self.clusters,
            "role_check": self.role_check,
            "account": self.account,
            "addons": self.addons,
            "cluster_overrides": self.cluster_overrides,
        }

    def configure(self, settings):
        unknown = set(settings) - {"clusters", "role_check", "addons", "cluster_overrides"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        if "clusters" in settings:
            clusters = settings["clusters"]
            if clusters is None and not self.upstream:
                raise ValueError("clusters may be null (ask upstream) only with --upstream")
            self.clusters = None if clusters is None else [str(c) for c in clusters]
        if "role_check" in settings:
            self.role_check = self._role_check(settings["role_check"])
        if "addons" in settings:
            addons = settings["addons"]
            if not isinstance(addons, dict) or not all(isinstance(a, dict) for a in addons.values()):
                raise ValueError("addons is {cluster: {add-on name: status}}")
            for installed in addons.values():
                for name, status in installed.items():
                    if status not in ADDON_STATUSES:
                        raise ValueError(f"add-on {name}: status {status!r} is not one of {sorted(ADDON_STATUSES)}")
            self.addons = {str(c): dict(a) for c, a in addons.items()}
        if "cluster_overrides" in settings:
            self.cluster_overrides = validate_cluster_overrides(settings["cluster_overrides"])
        return {"clusters": self.clusters, "role_check": self.role_check, "addons": self.addons, "cluster_overrides": self.cluster_overrides}

    # -- routing and authentication -------------------------------------------------

    def route(self, request):
        method, path = request.method, request.path
        match = COLLECTION.match(path)
        if match:
            cluster = match.group(1)
            if method == "POST":
                return Op("CreatePodIdentityAssociation", True, self.create, cluster, prepare=self.prepare)
            if method == "GET":
                return Op("ListPodIdentityAssociations", False, self.list, cluster, prepare=self.prepare)
            return None
        match = ADDONS.match(path)
        if match:
            cluster = match.group(1)
            if method == "GET":
                return Op("ListAddons", False, self.list_addons, cluster, prepare=self.prepare_addons)
            return Op("CreateAddon", True, self.addon_write, cluster)
        match = ADDON.match(path)
        if match:
            cluster, addon = match.groups()
            if method == "GET":
                return Op("DescribeAddon", False, self.describe_addon, f"{cluster}/{addon}", prepare=self.prepare_addons)
            return Op("UpdateAddon" if method == "POST" else "DeleteAddon", True, self.addon_write, f"{cluster}/{addon}")
        match = ITEM.match(path)
        if match:
            cluster, association = match.groups()
            resource = f"{cluster}/{association}"
            if method == "GET":
                return Op("DescribePodIdentityAssociation", False, self.describe, resource, prepare=self.prepare)
            if method == "POST":
                return Op("UpdatePodIdentityAssociation", True, self.update, resource, prepare=self.prepare)
            if method == "DELETE":
                return Op("DeletePodIdentityAssociation", True, self.delete, resource, prepare=self.prepare)
        return None

    def authenticate(self, request):
        header = request.headers.get("Authorization")
        if not header:
            return error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if not header.startswith("AWS4-HMAC-SHA256 "):
            return error(403, "IncompleteSignatureException", f"Authorization header requires the AWS4-HMAC-SHA256 algorithm. Authorization={header.split(' ')[0]}")
        for part in ("Credential=", "SignedHeaders=", "Signature="):
            if part not in header:
                return error(403, "IncompleteSignatureException", f"Authorization header requires '{part[:-1]}' parameter. Authorization={header}")
        credential = CREDENTIAL.search(header)
        if not credential:
            return error(403, "IncompleteSignatureException", "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term")
        access_key, _date, region, service = credential.groups()
        if not access_key:
            return error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if service != "eks":
            return error(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'eks'. ")
        if not (request.headers.get("X-Amz-Date") or request.headers.get("Date")):
            return error(403, "IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        request.ctx["region"] = region
        request.ctx["access_key"] = access_key
        return None

    # -- upstream -------------------------------------------------------------------

    def _upstream(self, method, path, body=None, headers=()):
        parts = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        try:
            connection.request(method, path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def forward(self, request):
        if not self.upstream:
            return error(404, "UnknownOperationException", f"eks_pod_identity does not implement {request.method} {request.path} and has no --upstream")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        try:
            status, response_headers, body = self._upstream(request.method, request.raw_path, request.body or None, headers)
        except OSError as failure:
            return error(502, "ServerException", f"eks_pod_identity: upstream {self.upstream} unreachable: {failure}")
        headers = [(k, v) for k, v in response_headers if k.lower() not in HOP_BY_HOP | {"server", "date"}]
        body = self.override_cluster(request, status, body)
        return Reply(status, body, headers, error=dict((k.lower(), v) for k, v in headers).get("x-amzn-errortype"))

    def override_cluster(self, request, status, body):
        """moto's DescribeCluster answer with the --cluster-status / cluster_overrides
        fields of that cluster put in (the log line says which)."""
        match = CLUSTER_PATH.match(request.path)
        if request.method != "GET" or status != 200 or not match:
            return body
        overrides = self.cluster_overrides.get(match.group(1))
        if not overrides:
            return body
        answer = json.loads(body)
        cluster = answer["cluster"]
        for key, value in overrides.items():
            if value is None:
                cluster.pop(key, None)
            else:
                cluster[key] = value
        request.notes["overridden"] = sorted(overrides)
        return json.dumps(answer).encode()

    def _signed_headers(self, request, service, region):
        date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        scope = f"{request.ctx['access_key']}/{date[:8]}/{region}/{service}/aws4_request"
        return {
            "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature=0",
            "X-Amz-Date": date,
        }

    def cluster_exists(self, request, cluster):
        """True or False, or an error Reply when upstream cannot tell."""
        if self.clusters is not None:
            return cluster in self.clusters
        headers = self._signed_headers(request, "eks", request.ctx["region"])
        try:
            status, _, body = self._upstream("GET", "/clusters/" + urllib.parse.quote(cluster, safe=""), headers=headers)
        except OSError as failure:
            return error(502, "ServerException", f"eks_pod_identity: upstream {self.upstream} unreachable: {failure}")
        if status == 200:
            return True
        if status == 404:
            return False
        return error(502, "ServerException", f"eks_pod_identity: upstream answered DescribeCluster {cluster} with {status}: {body[:200]!r}")

    def check_role(self, request, arn, trust=True):
        """None when the role passes --role-check, else the error Reply."""
        if self.role_check == "off":
            return None
        match = ROLE_ARN.match(arn)
        account, _path, name = match.groups()
        if account != self.account:
            return error(400, "InvalidParameterException", "Role provided in the request does not exist")
        form = urllib.parse.urlencode({"Action": "GetRole", "Version": "2010-05-08", "RoleName": name})
        headers = self._signed_headers(request, "iam", "us-east-1")
        headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        try:
            status, _, body = self._upstream("POST", "/", form.encode(), headers)
        except OSError as failure:
            return error(502, "ServerException", f"eks_pod_identity: upstream {self.upstream} unreachable: {failure}")
        if status == 404:
            return error(400, "InvalidParameterException", "Role provided in the request does not exist")
        if status != 200:
            return error(502, "ServerException", f"eks_pod_identity: upstream answered GetRole {name} with {status}")
        root = ET.fromstring(body)
        role = next((el for el in root.iter() if el.tag.endswith("Role")), None)
        found_arn = next((el.text for el in root.iter() if el.tag.endswith("}Arn") or el.tag == "Arn"), None)
        if role is None or found_arn != arn:
            # Same name under another path is another role.
            return error(400, "InvalidParameterException", "Role provided in the request does not exist")
        if self.role_check == "exists" or not trust:
            return None
        document = next((el.text for el in root.iter() if el.tag.endswith("AssumeRolePolicyDocument")), None)
        if not trusts_pod_identity(urllib.parse.unquote(document or "")):
            return error(400, "InvalidParameterException", "Trust policy of the role provided is invalid. Follow the official documentation to resolve the issue.")
        return None

    # -- the operations -------------------------------------------------------------

    def prepare(self, request):
        """Outside the lock: parse and validate, ask upstream about the cluster and roles."""
        try:
            op = self.route(request).name
            match = COLLECTION.match(request.path) or ITEM.match(request.path)
            cluster = match.group(1)
            request.ctx["cluster"] = cluster
            if op == "CreatePodIdentityAssociation":
                request.ctx["fields"] = validate_create(parse_object(request))
            elif op == "UpdatePodIdentityAssociation":
                request.ctx["fields"] = validate_update(parse_object(request))
            elif op == "ListPodIdentityAssociations":
                request.ctx["page"] = validate_list(request.query)
            else:
                parse_object(request, allow_empty=True, fields=set())
            if op != "CreatePodIdentityAssociation" and op != "ListPodIdentityAssociations":
                association = match.group(2)
                if len(association) != 19:
                    raise Invalid(400, "InvalidParameterException", "The parameter associationId should be 19 characters long.")
                request.ctx["association"] = association
        except Invalid as refusal:
            return error(refusal.status, refusal.code, refusal.message, clusterName=request.ctx.get("cluster"))
        exists = self.cluster_exists(request, cluster)
        if isinstance(exists, Reply):
            return exists
        if not exists:
            return error(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.", clusterName=cluster)
        fields = request.ctx.get("fields", {})
        for key in ("roleArn", "targetRoleArn"):
            if fields.get(key):
                # The target role is assumed by the association's role, not by the
                # pods.eks.amazonaws.com service: only its existence is checked.
                refused = self.check_role(request, fields[key], trust=key == "roleArn")
                if refused is not None:
                    return refused
        return None

    def _arn(self, region, cluster, association):
        return f"arn:aws:eks:{region}:{self.account}:podidentityassociation/{cluster}/{association}"

    def _find(self, request):
        """The association named in the path, in this region and cluster, or None."""
        found = self.associations.get(request.ctx["association"])
        if found is None or found["_region"] != request.ctx["region"] or found["clusterName"] != request.ctx["cluster"]:
            return None
        return found

    def _not_found(self, request):
        association = request.ctx["association"]
        return error(404, "ResourceNotFoundException", f"Association {association} not found in cluster {request.ctx['cluster']}.", clusterName=request.ctx["cluster"])

    def create(self, request):
        region, cluster, fields = request.ctx["region"], request.ctx["cluster"], request.ctx["fields"]
        token = fields.get("clientRequestToken")
        compare = {k: v for k, v in fields.items() if k != "clientRequestToken"}
        if token is not None and (region, cluster, token) in self.tokens:
            seen, association_id = self.tokens[(region, cluster, token)]
            if seen != compare:
                return error(400, "InvalidRequestException", "The client request token was already used with different parameters.", clusterName=cluster)
            if association_id in self.associations:
                return ok({"association": public(self.associations[association_id])})
        for existing in self.associations.values():
            if (existing["_region"], existing["clusterName"], existing["namespace"], existing["serviceAccount"]) == (region, cluster, fields["namespace"], fields["serviceAccount"]):
                return error(409, "ResourceInUseException", f"Association already exists: {existing['associationId']}", clusterName=cluster)
        association_id = "a-" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(17))
        now = round(time.time(), 3)
        association = {
            "_region": region,
            "clusterName": cluster,
            "namespace": fields["namespace"],
            "serviceAccount": fields["serviceAccount"],
            "roleArn": fields["roleArn"],
            "associationArn": self._arn(region, cluster, association_id),
            "associationId": association_id,
            "tags": dict(fields.get("tags") or {}),
            "createdAt": now,
            "modifiedAt": now,
            "disableSessionTags": bool(fields.get("disableSessionTags", False)),
        }
        if fields.get("targetRoleArn"):
            association["targetRoleArn"] = fields["targetRoleArn"]
            association["externalId"] = str(uuid.uuid4())
        if fields.get("policy"):
            association["policy"] = fields["policy"]
        self.associations[association_id] = association
        if token is not None:
            self.tokens[(region, cluster, token)] = (compare, association_id)
        return ok({"association": public(association)})

    def list(self, request):
        region, cluster = request.ctx["region"], request.ctx["cluster"]
        namespace, account, size, start = request.ctx["page"]
        rows = [
            a
            for a in self.associations.values()
            if a["_region"] == region
            and a["clusterName"] == cluster
            and (namespace is None or a["namespace"] == namespace)
            and (account is None or a["serviceAccount"] == account)
        ]
        rows.sort(key=lambda a: (a["createdAt"], a["associationId"]))
        if start is not None:
            rows = [a for a in rows if (a["createdAt"], a["associationId"]) > tuple(start)]
        page, rest = rows[:size], rows[size:]
        body = {"associations": [summary(a) for a in page]}
        if rest:
            last = page[-1]
            body["nextToken"] = base64.urlsafe_b64encode(json.dumps([last["createdAt"], last["associationId"]]).encode()).decode()
        return ok(body)

    def describe(self, request):
        found = self._find(request)
        if found is None:
            return self._not_found(request)
        return ok({"association": public(found)})

    def update(self, request):
        found = self._find(request)
        if found is None:
            return self._not_found(request)
        fields = request.ctx["fields"]
        changed = False
        for key in ("roleArn", "disableSessionTags", "policy"):
            if key in fields and found.get(key) != fields[key]:
                found[key] = fields[key]
                changed = True
        if "targetRoleArn" in fields:
            if fields["targetRoleArn"] == "":
                changed |= found.pop("targetRoleArn", None) is not None
                found.pop("externalId", None)
            elif found.get("targetRoleArn") != fields["targetRoleArn"]:
                found["targetRoleArn"] = fields["targetRoleArn"]
                found.setdefault("externalId", str(uuid.uuid4()))
                changed = True
        if "policy" in fields and fields["policy"] == "":
            found.pop("policy", None)
        if changed:
            found["modifiedAt"] = max(round(time.time(), 3), found["modifiedAt"] + 0.001)
        return ok({"association": public(found)})

    def delete(self, request):
        found = self._find(request)
        if found is None:
            return self._not_found(request)
        del self.associations[found["associationId"]]
        return ok({"association": public(found)})

    # -- add-ons (read only) ---------------------------------------------------------

    def prepare_addons(self, request):
        match = ADDONS.match(request.path) or ADDON.match(request.path)
        cluster = match.group(1)
        request.ctx["cluster"] = cluster
        if ADDONS.match(request.path):
            try:
                request.ctx["page"] = validate_addon_page(request.query)
            except Invalid as refusal:
                return error(refusal.status, refusal.code, refusal.message)
        exists = self.cluster_exists(request, cluster)
        if isinstance(exists, Reply):
            return exists
        if not exists:
            return error(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.", clusterName=cluster)
        return None

    def list_addons(self, request):
        cluster = request.ctx["cluster"]
        size, start = request.ctx["page"]
        names = sorted(self.addons.get(cluster, {}))
        page, rest = names[start:start + size], names[start + size:]
        body = {"addons": page}
        if rest:
            body["nextToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return ok(body)

    def describe_addon(self, request):
        cluster = request.ctx["cluster"]
        addon = ADDON.match(request.path).group(2)
        status = self.addons.get(cluster, {}).get(addon)
        if status is None:
            return error(404, "ResourceNotFoundException", f"No addon: {addon} found in cluster: {cluster}", clusterName=cluster, addonName=addon)
        region = request.ctx["region"]
        issues = [] if status == "ACTIVE" else [{"code": "Unknown", "message": f"Set to {status} by the stand-in.", "resourceIds": []}]
        return ok({"addon": {
            "addonName": addon,
            "clusterName": cluster,
            "status": status,
            "addonVersion": "v1.0.0-eksbuild.1",
            "health": {"issues": issues},
            "addonArn": f"arn:aws:eks:{region}:{self.account}:addon/{cluster}/{addon}/00000000-0000-0000-0000-000000000000",
            "createdAt": 1700000000.0,
            "modifiedAt": 1700000000.0,
            "tags": {},
        }})

    def addon_write(self, request):
        return error(501, "ServerException", "eks_pod_identity models the read side of add-ons only (ListAddons, DescribeAddon); set them with --addon or /__standin/config")

    def fault_reply(self, op, status, code, message):
        default_code, default_message = FAULTS.get(status, ("ServerException" if status >= 500 else "InvalidRequestException", "Injected by the stand-in."))
        code = code or default_code
        if message is None:
            message = default_message
        if message is None:  # a 404: say what a real miss says
            if "/" in op.resource:
                cluster, association = op.resource.split("/", 1)
                message = f"Association {association} not found in cluster {cluster}."
            else:
                message = f"No cluster found for name: {op.resource}."
        return error(status, code, message)


def public(association):
    return {k: v for k, v in association.items() if not k.startswith("_")}


def summary(association):
    keys = ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId", "ownerArn")
    return {k: association[k] for k in keys if k in association}


def trusts_pod_identity(document):
    """Whether a trust policy lets pods.eks.amazonaws.com sts:AssumeRole and sts:TagSession."""
    try:
        policy = json.loads(document)
    except ValueError:
        return False
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    allowed = set()
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        if "pods.eks.amazonaws.com" not in services:
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        for action in actions:
            if action in ("*", "sts:*"):
                allowed |= {"sts:AssumeRole", "sts:TagSession"}
            allowed.add(action)
    return {"sts:AssumeRole", "sts:TagSession"} <= allowed


def parse_object(request, allow_empty=False, fields=None):
    try:
        body = request.json_body()
    except (ValueError, UnicodeDecodeError):
        raise Invalid(400, "InvalidParameterException", "The request body is not valid JSON.")
    if body is None:
        if allow_empty:
            return {}
        raise Invalid(400, "InvalidParameterException", "The request body is missing.")
    if not isinstance(body, dict):
        raise Invalid(400, "InvalidParameterException", "The request body must be a JSON object.")
    if fields is not None:
        unknown = sorted(set(body) - fields)
        if unknown:
            raise Invalid(400, "InvalidParameterException", f"Unknown field in request: {unknown[0]}")
    return body


def _string(body, key, required=False):
    if key not in body or body[key] is None:
        if required:
            raise Invalid(400, "InvalidParameterException", f"{key} is required.")
        return
    if not isinstance(body[key], str):
        raise Invalid(400, "InvalidParameterException", f"{key} must be a string.")
    if required and not body[key]:
        raise Invalid(400, "InvalidParameterException", f"{key} is required.")


def _role_arn(body, key):
    if body.get(key) and not ROLE_ARN.match(body[key]):
        raise Invalid(400, "InvalidParameterException", f"{key} {body[key]} is not a valid IAM role ARN.")


def _common(body):
    for key in ("clientRequestToken", "targetRoleArn", "policy"):
        _string(body, key)
    if "disableSessionTags" in body and not isinstance(body["disableSessionTags"], bool):
        raise Invalid(400, "InvalidParameterException", "disableSessionTags must be a boolean.")
    token = body.get("clientRequestToken")
    if token is not None and not 1 <= len(token) <= 64:
        raise Invalid(400, "InvalidParameterException", "clientRequestToken must be 1 to 64 characters.")
    _role_arn(body, "roleArn")
    _role_arn(body, "targetRoleArn")
    if body.get("policy"):
        try:
            json.loads(body["policy"])
        except ValueError:
            raise Invalid(400, "InvalidParameterException", "policy is not a valid JSON IAM policy document.")


def validate_create(body):
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise Invalid(400, "InvalidParameterException", f"Unknown field in request: {unknown[0]}")
    for key in ("namespace", "serviceAccount", "roleArn"):
        _string(body, key, required=True)
    _common(body)
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise Invalid(400, "InvalidParameterException", "tags must be a map of strings to strings.")
        if not 1 <= len(tags) <= 50:
            raise Invalid(400, "InvalidParameterException", "tags must have 1 to 50 entries.")
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or len(value) > 256:
                raise Invalid(400, "InvalidParameterException", f"Tag {key!r}: keys are 1-128 and values 0-256 characters.")
            if key.lower().startswith("aws:"):
                raise Invalid(400, "InvalidParameterException", f"Tag key {key!r}: the aws: prefix is reserved.")
    return {k: v for k, v in body.items() if v is not None}


def validate_update(body):
    unknown = sorted(set(body) - UPDATE_FIELDS)
    if unknown:
        raise Invalid(400, "InvalidParameterException", f"Unknown field in request: {unknown[0]}")
    _common(body)
    if "roleArn" in body and not body["roleArn"]:
        raise Invalid(400, "InvalidParameterException", "roleArn must not be empty.")
    return {k: v for k, v in body.items() if v is not None}


def validate_list(query):
    """(namespace, serviceAccount, page size, position after which to start)."""
    def one(name):
        values = query.get(name)
        return None if values is None else values[-1]

    size = one("maxResults")
    if size is None:
        size = PAGE_DEFAULT
    else:
        try:
            size = int(size)
        except ValueError:
            raise Invalid(400, "InvalidParameterException", "maxResults must be an integer.")
        if not 1 <= size <= 100:
            raise Invalid(400, "InvalidParameterException", "maxResults must be between 1 and 100.")
    token = one("nextToken")
    start = None
    if token is not None:
        try:
            start = json.loads(base64.urlsafe_b64decode(token.encode()))
            if not (isinstance(start, list) and len(start) == 2):
                raise ValueError
        except ValueError:
            raise Invalid(400, "InvalidParameterException", "The nextToken is not valid.")
    return one("namespace"), one("serviceAccount"), size, start


def parse_addons(specs):
    """--addon CLUSTER:NAME[:STATUS] values as {cluster: {name: status}}."""
    addons = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise SystemExit(f"eks_pod_identity: --addon {spec!r} is not CLUSTER:NAME[:STATUS]")
        status = parts[2] if len(parts) == 3 else "ACTIVE"
        if status not in ADDON_STATUSES:
            raise SystemExit(f"eks_pod_identity: --addon {spec!r}: status is one of {sorted(ADDON_STATUSES)}")
        addons.setdefault(parts[0], {})[parts[1]] = status
    return addons


def parse_cluster_statuses(specs):
    """--cluster-status CLUSTER:STATUS values as cluster overrides {cluster: {"status": S}}."""
    overrides = {}
    for spec in specs:
        cluster, _, status = spec.partition(":")
        if not cluster or status not in CLUSTER_STATUSES:
            raise SystemExit(f"eks_pod_identity: --cluster-status {spec!r} is not CLUSTER:STATUS with STATUS one of {sorted(CLUSTER_STATUSES)}")
        overrides[cluster] = {"status": status}
    return overrides


def validate_cluster_overrides(overrides):
    """{cluster: {top-level Cluster field: value or null}}, checked; ValueError if not."""
    if not isinstance(overrides, dict) or not all(isinstance(o, dict) for o in overrides.values()):
        raise ValueError("cluster_overrides is {cluster: {Cluster field: value or null}}")
    for cluster, fields in overrides.items():
        unknown = sorted(set(fields) - CLUSTER_FIELDS)
        if unknown:
            raise ValueError(f"cluster {cluster}: {unknown[0]} is not a field of the Cluster shape")
        if fields.get("status") is not None and fields["status"] not in CLUSTER_STATUSES:
            raise ValueError(f"cluster {cluster}: status {fields['status']!r} is not one of {sorted(CLUSTER_STATUSES)}")
    return {str(c): dict(o) for c, o in overrides.items()}


def validate_addon_page(query):
    """(page size, start index) of ListAddons."""
    def one(name):
        values = query.get(name)
        return None if values is None else values[-1]

    size = one("maxResults")
    if size is None:
        size = PAGE_DEFAULT
    else:
        try:
            size = int(size)
        except ValueError:
            raise Invalid(400, "InvalidParameterException", "maxResults must be an integer.")
        if not 1 <= size <= 100:
            raise Invalid(400, "InvalidParameterException", "maxResults must be between 1 and 100.")
    start = 0
    token = one("nextToken")
    if token is not None:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError:
            raise Invalid(400, "InvalidParameterException", "The nextToken is not valid.")
    return size, start


def main():
    parser = base_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", help="http://127.0.0.1:PORT of the moto server that gets every other EKS request")
    parser.add_argument("--cluster", action="append", help="a cluster that exists (repeatable); without it, upstream is asked")
    parser.add_argument("--account", default="123456789012", help="the account in association ARNs (default: moto's)")
    parser.add_argument("--role-check", default="auto", choices=["auto", "off", "exists", "trust"])
    parser.add_argument("--addon", action="append", help="CLUSTER:NAME[:STATUS], an installed EKS add-on (repeatable; status default ACTIVE)")
    parser.add_argument("--cluster-status", action="append", help="CLUSTER:STATUS, the status DescribeCluster answers for that cluster instead of moto's ACTIVE (repeatable)")
    args = parser.parse_args()
    try:
        api = PodIdentity(args)
    except ValueError as failure:
        sys.exit(f"eks_pod_identity: {failure}")
    run(api, args)


if __name__ == "__main__":
    main()
