"""A loopback stand-in for the Google IAM v1 JSON API: service accounts and their IAM
policies (iam.googleapis.com, shapes from the iam/v1 discovery document).

    gcp_iam.py --project P [--project Q ...] [--workload-pools P,Q] [--port 0]
               [--port-file F] [--log FILE] [--not-yet-reads N]
               [--not-yet-ops get,getIamPolicy] [--require-etag] [--token T]

Serves, under /v1/projects/{project}/serviceAccounts:
  create        POST   .../serviceAccounts              {accountId, serviceAccount}
  list          GET    .../serviceAccounts              ?pageSize=&pageToken=
  get           GET    .../serviceAccounts/{email|uniqueId}
  patch         PATCH  .../serviceAccounts/{email|uniqueId}  {serviceAccount, updateMask}
  delete        DELETE .../serviceAccounts/{email|uniqueId}
  getIamPolicy  POST   .../serviceAccounts/{email}:getIamPolicy  ?options.requestedPolicyVersion=
  setIamPolicy  POST   .../serviceAccounts/{email}:setIamPolicy  {policy, updateMask?}
`-` stands for the project wherever a service account is named.

Projects: only those given with --project exist (others get 403 PERMISSION_DENIED, as
Google answers for a project that does not exist or that you may not see). Workload
identity pools: a member serviceAccount:P.svc.id.goog[NS/KSA] is accepted only for a
project P in --workload-pools.

Eventual consistency: each new service account answers its first N reads (the ops in
--not-yet-ops, default get and getIamPolicy) with 404 as if not yet visible; N is
--not-yet-reads (default 0), or set per account with POST /__standin/not-visible
{"account": EMAIL, "reads": N, "ops": [...]}.

See README.md beside this file for what is and is not modelled, and standin.py for
the request log, fault injection and /__standin/ control endpoints.
"""

import base64
import binascii
import json
import os
import re
import secrets
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin import Api, Op, Reply, base_arguments, run  # noqa: E402

COLLECTION = re.compile(r"^/v1/projects/([^/:]+)/serviceAccounts$")
ITEM = re.compile(r"^/v1/projects/([^/:]+)/serviceAccounts/([^/:]+)$")
METHOD = re.compile(r"^/v1/projects/([^/:]+)/serviceAccounts/([^/:]+):([A-Za-z]+)$")
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
SA_EMAIL = re.compile(r"^([a-z][-a-z0-9]*)@([a-z][-a-z0-9]*)\.iam\.gserviceaccount\.com$")
WORKLOAD = re.compile(r"^([a-z][-a-z0-9.:]*[a-z0-9])\.svc\.id\.goog\[([^/\[\]]+)/([^/\[\]]+)\]$")
DOMAIN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$")
ROLE = re.compile(r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/]+/roles/[A-Za-z0-9_.]+)$")
# Predefined roles that grant permissions on a service account (others are refused
# with "Role ... is not supported for this resource.", as Google does).
SERVICE_ACCOUNT_ROLES = {
    "roles/owner",
    "roles/editor",
    "roles/viewer",
    "roles/iam.workloadIdentityUser",
    "roles/iam.serviceAccountUser",
    "roles/iam.serviceAccountTokenCreator",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountKeyAdmin",
    "roles/iam.serviceAccountOpenIdTokenCreator",
    "roles/iam.serviceAccountViewer",
    "roles/iam.securityAdmin",
    "roles/iam.securityReviewer",
}
SYSTEM_PARAMETERS = {"alt", "prettyPrint", "fields", "quotaUser", "$.xgafv", "key", "userIp", "callback", "upload_protocol", "uploadType"}
SERVICE_ACCOUNT_FIELDS = {"name", "projectId", "uniqueId", "email", "displayName", "etag", "description", "oauth2ClientId", "disabled"}
ACCOUNT_ETAG = "MDEwMjE5MjA="  # what Google answers as every service account's etag
EMPTY_POLICY_ETAG = "ACAB"  # what Google answers for a policy never set
CONCURRENT = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
UNAUTHENTICATED = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
STATUS = {
    400: ("INVALID_ARGUMENT", "badRequest"),
    401: ("UNAUTHENTICATED", "unauthorized"),
    403: ("PERMISSION_DENIED", "forbidden"),
    404: ("NOT_FOUND", "notFound"),
    409: ("ABORTED", "aborted"),
    429: ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
    500: ("INTERNAL", "backendError"),
    501: ("NOT_IMPLEMENTED", "notImplemented"),
    503: ("UNAVAILABLE", "backendError"),
}
FAULT_MESSAGES = {
    400: "Injected by the stand-in.",
    403: "Permission denied (injected by the stand-in).",
    404: "Unknown service account",
    409: CONCURRENT,
    429: "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service 'iam.googleapis.com'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
PERMISSIONS = {
    "create": "iam.serviceAccounts.create",
    "list": "iam.serviceAccounts.list",
    "get": "iam.serviceAccounts.get",
    "patch": "iam.serviceAccounts.update",
    "delete": "iam.serviceAccounts.delete",
    "getIamPolicy": "iam.serviceAccounts.getIamPolicy",
    "setIamPolicy": "iam.serviceAccounts.setIamPolicy",
}
READS = ("get", "getIamPolicy", "setIamPolicy")


class Refusal(Exception):
    def __init__(self, reply):
        super().__init__(reply.status)
        self.reply = reply


def google_error(status, message, code=None, reason=None, details=None):
    default_code, default_reason = STATUS.get(status, ("UNKNOWN", "unknown"))
    error = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason or default_reason}],
        "status": code or default_code,
    }
    if details:
        error["details"] = details
    return Reply.json(status, {"error": error}, error=code or default_code, content_type="application/json; charset=UTF-8")


def invalid(message):
    return Refusal(google_error(400, message))


def ok(body):
    return Reply.json(200, body, content_type="application/json; charset=UTF-8")


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def known_fields(value, allowed, where=None):
    """`value` with snake_case names turned lowerCamelCase (Google's JSON parser
    accepts both spellings of a field), or a 400 for a name the message lacks."""
    out = {}
    for name, item in value.items():
        field = name if name in allowed else camel(name)
        if field not in allowed:
            raise unknown_name(name, where)
        if field in out:
            at = f" at '{where}'" if where else ""
            raise invalid(f'Invalid JSON payload received. Duplicate value for field "{field}"{at}.')
        out[field] = item
    return out


def unknown_name(name, where=None):
    at = f" at '{where}'" if where else ""
    return invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


class Iam(Api):
    name = "gcp_iam"

    def __init__(self, args):
        super().__init__(args)
        self.projects = sorted(set(split_list(args.project)))
        if not self.projects:
            sys.exit("gcp_iam: give at least one --project")
        self.pools = sorted(set(split_list(args.workload_pools)))
        self.not_yet_reads = args.not_yet_reads
        self.not_yet_ops = split_list([args.not_yet_ops]) if args.not_yet_ops else ["get", "getIamPolicy"]
        self.require_etag = args.require_etag
        self.token = args.token
        self.reset()

    def reset(self):
        self.accounts = {}  # email -> service account (with "_project")
        self.policies = {}  # email -> {"version", "etag", "bindings"}
        self.hidden = {}  # email -> {"reads": N, "ops": [...]}
        self.etag_counter = 0

    def dump(self):
        return {
            "projects": self.projects,
            "workload_pools": self.pools,
            "not_yet_reads": self.not_yet_reads,
            "not_yet_ops": self.not_yet_ops,
            "require_etag": self.require_etag,
            "accounts": [public(a) for a in self.accounts.values()],
            "policies": self.policies,
            "hidden": self.hidden,
        }

    def configure(self, settings):
        allowed = {"projects", "workload_pools", "not_yet_reads", "not_yet_ops", "require_etag"}
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        if "projects" in settings:
            self.projects = sorted(set(settings["projects"]))
        if "workload_pools" in settings:
            self.pools = sorted(set(settings["workload_pools"]))
        if "not_yet_reads" in settings:
            self.not_yet_reads = int(settings["not_yet_reads"])
        if "not_yet_ops" in settings:
            self.not_yet_ops = [op for op in settings["not_yet_ops"] if op in READS]
        if "require_etag" in settings:
            self.require_etag = bool(settings["require_etag"])
        return {k: v for k, v in self.dump().items() if k in allowed}

    def control(self, method, name, query, data):
        if name == "not-visible" and method == "POST":
            account = data["account"]
            ops = data.get("ops", self.not_yet_ops)
            if any(op not in READS for op in ops):
                raise ValueError(f"ops are among {list(READS)}")
            self.hidden[account] = {"reads": int(data["reads"]), "ops": list(ops)}
            return Reply.json(200, {"ok": True})
        return None

    # -- routing and authentication -------------------------------------------------

    def route(self, request):
        method, path = request.method, request.path
        match = COLLECTION.match(path)
        if match:
            project = match.group(1)
            if method == "POST":
                return self._op("create", True, request, project, None)
            if method == "GET":
                return self._op("list", False, request, project, None)
            return self._unmodelled(request)
        match = ITEM.match(path)
        if match:
            project, account = match.groups()
            if method == "GET":
                return self._op("get", False, request, project, account)
            if method == "DELETE":
                return self._op("delete", True, request, project, account)
            if method == "PATCH":
                return self._op("patch", True, request, project, account)
            return self._unmodelled(request)
        match = METHOD.match(path)
        if match and method == "POST" and match.group(3) in ("getIamPolicy", "setIamPolicy"):
            project, account, verb = match.groups()
            op = self._op(verb, verb == "setIamPolicy", request, project, account)
            if verb == "setIamPolicy":
                try:
                    body = request.json_body()
                    etag = body.get("policy", {}).get("etag") if isinstance(body, dict) else None
                except (ValueError, AttributeError, UnicodeDecodeError):
                    etag = None
                request.notes["etag_sent"] = bool(etag)
            return op
        return self._unmodelled(request)

    def _op(self, verb, mutating, request, project, account):
        handler = getattr(self, "op_" + verb)
        resource = f"projects/{project}/serviceAccounts/{account}" if account else f"projects/{project}"

        def guarded(request):
            try:
                self._check_query(verb, request.query)
                return handler(request, project, account)
            except Refusal as refusal:
                return refusal.reply

        return Op(verb, mutating, guarded, resource)

    def _unmodelled(self, request):
        def refuse(request):
            return google_error(501, f"gcp_iam stand-in: {request.method} {request.path} is not modelled.")

        return Op("unmodelled", request.method not in ("GET", "HEAD"), refuse, request.path)

    def authenticate(self, request):
        header = request.headers.get("Authorization")
        if not header:
            return self._unauthenticated(UNAUTHENTICATED, "CREDENTIALS_MISSING")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._unauthenticated(INVALID_CREDENTIALS, "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        if self.token is not None and token.strip() != self.token:
            return self._unauthenticated(INVALID_CREDENTIALS, "ACCESS_TOKEN_EXPIRED")
        return None

    def _unauthenticated(self, message, reason):
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com", "metadata": {"service": "iam.googleapis.com"}}
        reply = google_error(401, message, details=[info])
        reply.headers.append(("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"'))
        return reply

    def _check_query(self, verb, query):
        allowed = set(SYSTEM_PARAMETERS)
        if verb == "list":
            allowed |= {"pageSize", "pageToken"}
        if verb == "getIamPolicy":
            allowed |= {"options.requestedPolicyVersion"}
        for name in list(query):
            spelled = ".".join(camel(part) for part in name.split("."))
            if name not in allowed and spelled in allowed:
                query.setdefault(spelled, []).extend(query.pop(name))
                continue
            if name not in allowed:
                raise invalid(f"Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message.")
        if query.get("alt", ["json"])[-1] != "json":
            raise invalid("Invalid value for alt: only json is served by the stand-in.")

    # -- helpers --------------------------------------------------------------------

    def _project(self, project, verb, allow_wildcard):
        if project == "-" and allow_wildcard:
            return
        if project == "-" or project not in self.projects:
            permission = PERMISSIONS[verb]
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": permission},
            }
            raise Refusal(google_error(403, f"Permission '{permission}' denied on resource (or it may not exist).", details=[info]))

    def _account(self, project, key, verb, request=None):
        """The service account named by project and email or uniqueId; 404 when none,
        or while it is not yet visible to `verb` (then the log line says so)."""
        self._project(project, verb, allow_wildcard=True)
        account = self.accounts.get(key)
        if account is None:
            account = next((a for a in self.accounts.values() if a["uniqueId"] == key), None)
        if account is None or project not in ("-", account["projectId"]):
            raise Refusal(google_error(404, "Unknown service account"))
        hidden = self.hidden.get(account["email"])
        if hidden and hidden["reads"] > 0 and verb in hidden["ops"]:
            hidden["reads"] -= 1
            if request is not None:
                request.notes["not_yet_visible"] = True
            raise Refusal(google_error(404, "Unknown service account"))
        return account

    def _body(self, request, allowed, where=None, required=True):
        try:
            body = request.json_body()
        except (ValueError, UnicodeDecodeError):
            raise invalid("Invalid JSON payload received. Unexpected token.")
        if body is None:
            if required:
                raise invalid("Invalid JSON payload received. Expected an object.")
            return {}
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received. Expected an object.")
        return known_fields(body, allowed, where)

    def _service_account_fields(self, value, where="service_account"):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise invalid(f"Invalid value at '{where}': expected an object.")
        value = known_fields(value, SERVICE_ACCOUNT_FIELDS, where)
        for name in ("displayName", "description"):
            if name in value and not isinstance(value[name], str):
                raise invalid(f"Invalid value at '{where}.{snake(name)}' (TYPE_STRING), {value[name]!r}")
        if len(value.get("displayName", "")) > 100:
            raise invalid("Display name must be at most 100 characters.")
        if len(value.get("description", "").encode()) > 256:
            raise invalid("Description must be at most 256 bytes.")
        return value

    def _next_etag(self):
        self.etag_counter += 1
        return base64.b64encode(struct.pack(">Q", self.etag_counter)).decode()

    # -- the operations -------------------------------------------------------------

    def op_create(self, request, project, _account):
        self._project(project, "create", allow_wildcard=False)
        body = self._body(request, {"accountId", "serviceAccount"})
        account_id = body.get("accountId")
        if account_id is not None and not isinstance(account_id, str):
            raise invalid(f"Invalid value at 'account_id' (TYPE_STRING), {json.dumps(account_id)}")
        if not account_id:
            raise invalid("Account ID is required.")
        if not 6 <= len(account_id) <= 30:
            raise invalid(f'The account ID "{account_id}" does not have a length between 6 and 30.')
        if not ACCOUNT_ID.match(account_id):
            raise invalid(f"{account_id} does not match [a-z]([-a-z0-9]*[a-z0-9]).")
        fields = self._service_account_fields(body.get("serviceAccount"))
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        if email in self.accounts:
            info = {"@type": "type.googleapis.com/google.rpc.ResourceInfo", "resourceName": f"projects/{project}/serviceAccounts/{email}"}
            raise Refusal(google_error(409, f"Service account {account_id} already exists within project projects/{project}.", "ALREADY_EXISTS", "alreadyExists", [info]))
        unique = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
        account = {
            "name": f"projects/{project}/serviceAccounts/{email}",
            "projectId": project,
            "uniqueId": unique,
            "email": email,
            "etag": ACCOUNT_ETAG,
            "oauth2ClientId": unique,
        }
        for name in ("displayName", "description"):
            if fields.get(name):
                account[name] = fields[name]
        self.accounts[email] = account
        self.policies.pop(email, None)
        if self.not_yet_reads:
            self.hidden[email] = {"reads": self.not_yet_reads, "ops": list(self.not_yet_ops)}
        else:
            self.hidden.pop(email, None)
        return ok(public(account))

    def op_list(self, request, project, _account):
        self._project(project, "list", allow_wildcard=False)
        self._body(request, set(), required=False)
        size = request.query.get("pageSize", ["20"])[-1]
        try:
            size = int(size)
        except ValueError:
            raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), \"{size}\"")
        if size <= 0:
            size = 20
        size = min(size, 100)
        rows = sorted((a for a in self.accounts.values() if a["projectId"] == project), key=lambda a: a["email"])
        token = request.query.get("pageToken", [""])[-1]
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise invalid("Invalid page token.")
            rows = [a for a in rows if a["email"] > after]
        page, rest = rows[:size], rows[size:]
        body = {}
        if page:
            body["accounts"] = [public(a) for a in page]
        if rest:
            body["nextPageToken"] = base64.urlsafe_b64encode(page[-1]["email"].encode()).decode()
        return ok(body)

    def op_get(self, request, project, key):
        self._body(request, set(), required=False)
        return ok(public(self._reading(request, project, key, "get")))

    def _reading(self, request, project, key, verb):
        return self._account(project, key, verb, request)

    def op_delete(self, request, project, key):
        self._body(request, set(), required=False)
        account = self._account(project, key, "delete")
        del self.accounts[account["email"]]
        self.policies.pop(account["email"], None)
        self.hidden.pop(account["email"], None)
        return ok({})

    def op_patch(self, request, project, key):
        body = self._body(request, {"serviceAccount", "updateMask"})
        account = self._account(project, key, "patch")
        fields = self._service_account_fields(body.get("serviceAccount"))
        mask = body.get("updateMask")
        if not isinstance(mask, str) or not mask.strip():
            raise invalid("update_mask is required.")
        paths = [p.strip() for p in mask.split(",")]
        for path in paths:
            if path not in ("displayName", "description", "display_name"):
                raise invalid(f"Invalid update_mask path: {path}. Only display_name and description can be updated.")
        for path in paths:
            name = "displayName" if path in ("displayName", "display_name") else "description"
            if fields.get(name):
                account[name] = fields[name]
            else:
                account.pop(name, None)
        return ok(public(account))

    def op_getIamPolicy(self, request, project, key):
        body = self._body(request, {"options"}, required=False)
        versions = request.query.get("options.requestedPolicyVersion", [])
        options = body.get("options")
        if options is not None:
            if not isinstance(options, dict):
                raise invalid("Invalid value at 'options': expected an object.")
            options = known_fields(options, {"requestedPolicyVersion"}, "options")
            versions = versions + [options.get("requestedPolicyVersion", 0)]
        for version in versions:
            try:
                version = int(version)
            except (TypeError, ValueError):
                raise invalid(f"Invalid value at 'options.requested_policy_version' (TYPE_INT32), \"{version}\"")
            if version not in (0, 1, 3):
                raise invalid(f"Invalid requested policy version: {version}. Valid versions are 0, 1 and 3.")
        account = self._reading(request, project, key, "getIamPolicy")
        return ok(self._policy(account["email"]))

    def _policy(self, email):
        stored = self.policies.get(email)
        if stored is None:
            return {"version": 1, "etag": EMPTY_POLICY_ETAG}
        policy = {"version": 1, "etag": stored["etag"]}
        if stored["bindings"]:
            policy["bindings"] = [dict(b, members=list(b["members"])) for b in stored["bindings"]]
        return policy

    def op_setIamPolicy(self, request, project, key):
        body = self._body(request, {"policy", "updateMask"})
        policy = body.get("policy")
        if not isinstance(policy, dict):
            raise invalid("policy is required.")
        policy = known_fields(policy, {"bindings", "etag", "version", "auditConfigs"}, "policy")
        mask = body.get("updateMask")
        if mask is not None:
            for path in str(mask).split(","):
                if path.strip() not in ("bindings", "etag", "version", "auditConfigs", "audit_configs"):
                    raise invalid(f"Invalid update_mask path: {path.strip()}.")
        version = policy.get("version", 0)
        if not isinstance(version, int) or version not in (0, 1, 3):
            raise invalid(f"Invalid policy version: {version}. Valid versions are 0, 1 and 3.")
        if policy.get("auditConfigs"):
            raise Refusal(google_error(501, "gcp_iam stand-in: auditConfigs are not modelled."))
        bindings = self._bindings(policy.get("bindings", []))
        etag = policy.get("etag")
        sent = None
        if etag is not None:
            if not isinstance(etag, str):
                raise invalid("Invalid value at 'policy.etag' (TYPE_BYTES)")
            try:
                sent = base64.b64decode(etag.encode(), validate=True)
            except (binascii.Error, ValueError):
                raise invalid(f"Invalid value at 'policy.etag' (TYPE_BYTES), Base64 decoding failed for \"{etag}\"")
        account = self._reading(request, project, key, "setIamPolicy")
        email = account["email"]
        if sent is None and self.require_etag:
            raise invalid("gcp_iam stand-in (--require-etag): policy.etag is required.")
        if sent is not None:
            current = self._policy(email)["etag"]
            if sent != base64.b64decode(current):
                raise Refusal(google_error(409, CONCURRENT, "ABORTED", "aborted"))
        self.policies[email] = {"etag": self._next_etag(), "bindings": bindings}
        return ok(self._policy(email))

    def _bindings(self, bindings):
        """Validated bindings, merged by role, members sorted and deduplicated."""
        if not isinstance(bindings, list):
            raise invalid("Invalid value at 'policy.bindings': expected a list.")
        merged = {}
        for index, binding in enumerate(bindings):
            where = f"policy.bindings[{index}]"
            if not isinstance(binding, dict):
                raise invalid(f"Invalid value at '{where}': expected an object.")
            binding = known_fields(binding, {"role", "members", "condition"}, where)
            if binding.get("condition") is not None:
                raise Refusal(google_error(501, "gcp_iam stand-in: IAM conditions are not modelled."))
            role = binding.get("role")
            if not isinstance(role, str) or not role:
                raise invalid("Role is required.")
            if not ROLE.match(role):
                raise invalid(f"Role {role} is not valid.")
            if role.startswith("roles/") and role not in SERVICE_ACCOUNT_ROLES:
                raise invalid(f"Role {role} is not supported for this resource.")
            members = binding.get("members", [])
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise invalid(f"Invalid value at '{where}.members': expected a list of strings.")
            for member in members:
                self._member(member)
            merged.setdefault(role, set()).update(members)
        return [{"role": role, "members": sorted(members)} for role, members in sorted(merged.items()) if members]

    def _member(self, member):
        kind, colon, rest = member.partition(":")
        if member in ("allUsers", "allAuthenticatedUsers"):
            return
        if kind in ("principal", "principalSet") and rest.startswith("//"):
            return
        if kind == "deleted" and rest.split(":", 1)[0] in ("user", "group", "serviceAccount"):
            return
        if not colon or not rest:
            raise invalid(f"Invalid member: {member}")
        if kind in ("user", "group"):
            if not EMAIL.match(rest):
                raise invalid(f"Invalid member: {member}")
            return
        if kind == "domain":
            if not DOMAIN.match(rest):
                raise invalid(f"Invalid member: {member}")
            return
        if kind == "serviceAccount":
            workload = WORKLOAD.match(rest)
            if workload:
                pool = workload.group(1)
                if pool not in self.pools:
                    raise invalid(
                        f"Identity Pool does not exist ({pool}.svc.id.goog). Please check that you specified a valid "
                        "resource name as returned in the `name` attribute in the configuration API."
                    )
                return
            if "svc.id.goog" in rest or not EMAIL.match(rest):
                raise invalid(f"Invalid member: {member}")
            known = SA_EMAIL.match(rest)
            if known and known.group(2) in self.projects and rest not in self.accounts:
                raise invalid(f"Service account {rest} does not exist.")
            return
        raise invalid(f"Invalid member: {member}")

    def fault_reply(self, op, status, code, message):
        if message is None:
            message = FAULT_MESSAGES.get(status, "Injected by the stand-in.")
        if code is None and status == 409 and op.name == "create":
            code = "ALREADY_EXISTS"
        return google_error(status, message, code)


def public(account):
    return {k: v for k, v in account.items() if not k.startswith("_")}


def snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def split_list(values):
    out = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def main():
    parser = base_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--project", action="append", default=[], help="a project that exists (repeatable, or comma-separated)")
    parser.add_argument("--workload-pools", action="append", default=[], help="projects whose PROJECT.svc.id.goog pool exists (repeatable, or comma-separated)")
    parser.add_argument("--not-yet-reads", type=int, default=0, help="reads of a new service account that answer 404 (default 0)")
    parser.add_argument("--not-yet-ops", help="which reads those are: get,getIamPolicy (default) and/or setIamPolicy")
    parser.add_argument("--require-etag", action="store_true", help="refuse setIamPolicy without policy.etag (Google does not)")
    parser.add_argument("--token", help="accept only this bearer token (default: any non-empty one)")
    args = parser.parse_args()
    api = Iam(args)
    if any(op not in READS for op in api.not_yet_ops):
        sys.exit(f"gcp_iam: --not-yet-ops takes {','.join(READS)}")
    run(api, args)


if __name__ == "__main__":
    main()
