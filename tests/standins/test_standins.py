"""Self-tests of the loopback stand-ins: every strict behaviour, the happy paths through
the real AWS client (botocore), the request log, fault injection, pause/resume, and the
forwarding of every other EKS request to a real moto server.

Run from the repository root with the test venv: .venv/bin/python -m pytest -q tests/standins
"""

import base64
import ipaddress
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

HERE = Path(__file__).resolve().parent
EKS = HERE / "eks_pod_identity.py"
GCP = HERE / "gcp_iam.py"
GCP_PREFLIGHT = HERE / "gcp_preflight.py"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
POD_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}],
}
EMPTY_POLICY_ETAG = "ACAB"
CONCURRENT = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."


# -- helpers --------------------------------------------------------------------------


def assert_loopback(url):
    """Refuses any endpoint that is not on this machine's loopback interface."""
    host = urllib.parse.urlsplit(url).hostname or ""
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    assert loopback, f"refusing non-loopback endpoint {url}: tests only talk to local servers"
    return url


def call(method, url, body=None, headers=None, raw=None):
    """(status, headers as a lower-case dict, parsed JSON or None)."""
    assert_loopback(url)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if data is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, response_headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, response_headers, payload = error.code, error.headers, error.read()
    parsed = json.loads(payload) if payload.strip() else None
    return status, {k.lower(): v for k, v in response_headers.items()}, parsed


class Server:
    def __init__(self, process, port, log):
        self.process = process
        self.port = port
        self.url = assert_loopback(f"http://127.0.0.1:{port}")
        self.log = log

    def control(self, method, name, body=None):
        status, _, payload = call(method, f"{self.url}/__standin/{name}", body if body is not None else ({} if method == "POST" else None))
        assert status == 200, (name, status, payload)
        return payload

    def log_lines(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(script, tmp_path, *args):
    """Starts a stand-in on an ephemeral port and waits for its READY line."""
    log = tmp_path / f"{script.stem}-{time.monotonic_ns()}.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--log", str(log), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise AssertionError(f"{script.name} did not start: {line!r} {process.stderr.read()}")
    return Server(process, int(line.split()[1]), log)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_headers(region=REGION, service="eks"):
    """A SigV4-shaped Authorization header (the stand-in does not verify signatures)."""
    return {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{region}/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        "X-Amz-Date": "20260101T000000Z",
    }


BEARER = {"Authorization": "Bearer test-token"}


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto():
    """A real moto server from the venv, with an EKS cluster and two IAM roles."""
    program = Path(sys.executable).parent / "moto_server"
    assert program.exists(), f"{program} is missing: run with the venv scripts/test builds"
    port = free_port()
    url = assert_loopback(f"http://127.0.0.1:{port}")
    process = subprocess.Popen([str(program), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not answer within 60s"
            assert process.poll() is None, "moto_server exited"
            time.sleep(0.1)
    iam = aws_client("iam", url)
    good = iam.create_role(RoleName="pod-role", Path="/strata/", AssumeRolePolicyDocument=json.dumps(POD_TRUST))["Role"]["Arn"]
    other = iam.create_role(RoleName="other-role", AssumeRolePolicyDocument=json.dumps(POD_TRUST))["Role"]["Arn"]
    no_tag = dict(POD_TRUST, Statement=[dict(POD_TRUST["Statement"][0], Action="sts:AssumeRole")])
    untagged = iam.create_role(RoleName="no-tag-session", AssumeRolePolicyDocument=json.dumps(no_tag))["Role"]["Arn"]
    aws_client("eks", url).create_cluster(name="prod", roleArn=good, resourcesVpcConfig={})
    yield {"url": url, "role": good, "other_role": other, "untagged_role": untagged}
    process.terminate()
    process.wait(10)


def aws_client(service, url, region=REGION, attempts=1):
    return boto3.client(
        service,
        endpoint_url=assert_loopback(url),
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def eks_server(moto, tmp_path_factory):
    server = start(EKS, tmp_path_factory.mktemp("eks"), "--upstream", moto["url"])
    yield server
    server.stop()


@pytest.fixture
def eks(eks_server):
    eks_server.control("POST", "reset", {"truncate_log": True})
    return eks_server


@pytest.fixture
def client(eks):
    return aws_client("eks", eks.url)


@pytest.fixture(scope="module")
def gcp_server(tmp_path_factory):
    server = start(GCP, tmp_path_factory.mktemp("gcp"), "--project", "proj-a", "--project", "proj-b", "--workload-pools", "proj-a")
    yield server
    server.stop()


@pytest.fixture
def gcp(gcp_server):
    gcp_server.control("POST", "reset", {"truncate_log": True})
    gcp_server.control("POST", "config", {"not_yet_reads": 0, "require_etag": False, "projects": ["proj-a", "proj-b"], "workload_pools": ["proj-a"]})
    return gcp_server


def aws_error(excinfo):
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


# -- the shared server behaviour ----------------------------------------------------


@pytest.mark.parametrize("script,extra", [(EKS, ["--cluster", "x"]), (GCP, ["--project", "p"])])
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_refuses_to_bind_anything_but_loopback(script, extra, host, tmp_path):
    result = subprocess.run([sys.executable, str(script), "--host", host, "--port", "0", *extra], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "refusing to bind" in result.stderr
    assert "READY" not in result.stdout


def test_binds_ipv6_loopback_and_writes_the_port_file(tmp_path):
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback")
    port_file = tmp_path / "port"
    process = subprocess.Popen([sys.executable, str(GCP), "--host", "::1", "--port", "0", "--port-file", str(port_file), "--project", "p"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline().split()[1])
        assert int(port_file.read_text()) == port
        status, _, body = call("GET", f"http://[::1]:{port}/__standin/health")
        assert (status, body) == (200, {"ok": True, "name": "gcp_iam"})
    finally:
        process.terminate()
        process.wait(10)


def test_refuses_a_non_loopback_upstream(tmp_path):
    for upstream in ("http://10.0.0.1:5000", "https://eks.eu-west-1.amazonaws.com", "http://example.com"):
        result = subprocess.run([sys.executable, str(EKS), "--upstream", upstream], capture_output=True, text=True, timeout=30)
        assert result.returncode != 0
        assert "refusing non-loopback upstream" in result.stderr


def test_the_test_helpers_refuse_remote_endpoints():
    for remote in ("https://iam.googleapis.com/v1", "http://10.1.2.3:80", "https://eks.us-east-1.amazonaws.com"):
        with pytest.raises(AssertionError):
            call("GET", remote)
        with pytest.raises(AssertionError):
            aws_client("eks", remote)


def test_unknown_control_endpoint_and_bad_fault_are_refused(gcp):
    assert call("POST", f"{gcp.url}/__standin/nope", {})[0] == 404
    status, _, body = call("POST", f"{gcp.url}/__standin/faults", {"status": 200})
    assert status == 400 and "4xx or 5xx" in body["message"]
    status, _, body = call("POST", f"{gcp.url}/__standin/faults", {"op": "get"})
    assert status == 400 and "needs a status" in body["message"]
    status, _, body = call("POST", f"{gcp.url}/__standin/faults", {"status": 500, "kind": "sometimes"})
    assert status == 400 and "kind" in body["message"]


# -- EKS Pod Identity: happy paths through botocore ---------------------------------


def test_eks_all_five_operations_through_botocore(client, moto, eks):
    created = client.create_pod_identity_association(
        clusterName="prod", namespace="apps", serviceAccount="web", roleArn=moto["role"], tags={"team": "core"}
    )["association"]
    association = created["associationId"]
    assert re.fullmatch(r"a-[a-z0-9]{17}", association)
    assert created["associationArn"] == f"arn:aws:eks:{REGION}:{ACCOUNT}:podidentityassociation/prod/{association}"
    assert created["clusterName"] == "prod"
    assert (created["namespace"], created["serviceAccount"], created["roleArn"]) == ("apps", "web", moto["role"])
    assert created["tags"] == {"team": "core"}
    assert created["disableSessionTags"] is False
    assert created["createdAt"] == created["modifiedAt"]
    assert abs(created["createdAt"].timestamp() - time.time()) < 60
    assert "targetRoleArn" not in created and "externalId" not in created

    listed = client.list_pod_identity_associations(clusterName="prod")
    assert listed["associations"] == [
        {
            "clusterName": "prod",
            "namespace": "apps",
            "serviceAccount": "web",
            "associationArn": created["associationArn"],
            "associationId": association,
        }
    ]
    assert "nextToken" not in listed

    described = client.describe_pod_identity_association(clusterName="prod", associationId=association)["association"]
    assert described == created

    time.sleep(0.01)
    updated = client.update_pod_identity_association(clusterName="prod", associationId=association, roleArn=moto["other_role"])["association"]
    assert updated["roleArn"] == moto["other_role"]
    assert updated["createdAt"] == created["createdAt"]
    assert updated["modifiedAt"] > created["modifiedAt"]

    deleted = client.delete_pod_identity_association(clusterName="prod", associationId=association)["association"]
    assert deleted["associationId"] == association and deleted["roleArn"] == moto["other_role"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.describe_pod_identity_association(clusterName="prod", associationId=association)
    assert aws_error(excinfo) == (404, "ResourceNotFoundException", f"Association {association} not found in cluster prod.")
    assert client.list_pod_identity_associations(clusterName="prod")["associations"] == []

    ops = [(line["op"], line["mutating"], line["status"]) for line in eks.log_lines()]
    assert ops == [
        ("CreatePodIdentityAssociation", True, 200),
        ("ListPodIdentityAssociations", False, 200),
        ("DescribePodIdentityAssociation", False, 200),
        ("UpdatePodIdentityAssociation", True, 200),
        ("DeletePodIdentityAssociation", True, 200),
        ("DescribePodIdentityAssociation", False, 404),
        ("ListPodIdentityAssociations", False, 200),
    ]
    assert sum(line["mutating"] for line in eks.log_lines()) == 3


def test_eks_target_role_gets_an_external_id(client, moto):
    created = client.create_pod_identity_association(
        clusterName="prod", namespace="apps", serviceAccount="chain", roleArn=moto["role"], targetRoleArn=moto["other_role"], disableSessionTags=True
    )["association"]
    assert created["targetRoleArn"] == moto["other_role"]
    assert re.fullmatch(r"[0-9a-f-]{36}", created["externalId"])
    assert created["disableSessionTags"] is True
    # The target role must exist; its trust policy is not the pod identity one.
    chained = client.create_pod_identity_association(
        clusterName="prod", namespace="apps", serviceAccount="chain2", roleArn=moto["role"], targetRoleArn=moto["untagged_role"]
    )["association"]
    assert chained["targetRoleArn"] == moto["untagged_role"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(
            clusterName="prod", namespace="apps", serviceAccount="chain3", roleArn=moto["role"], targetRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ghost"
        )
    assert aws_error(excinfo) == (400, "InvalidParameterException", "Role provided in the request does not exist")


def test_eks_list_filters_and_pages(client, moto):
    for namespace, account in [("a", "one"), ("a", "two"), ("b", "one"), ("b", "two"), ("b", "three")]:
        client.create_pod_identity_association(clusterName="prod", namespace=namespace, serviceAccount=account, roleArn=moto["role"])
    only_b = client.list_pod_identity_associations(clusterName="prod", namespace="b")["associations"]
    assert sorted(a["serviceAccount"] for a in only_b) == ["one", "three", "two"]
    ones = client.list_pod_identity_associations(clusterName="prod", serviceAccount="one")["associations"]
    assert sorted(a["namespace"] for a in ones) == ["a", "b"]
    exact = client.list_pod_identity_associations(clusterName="prod", namespace="b", serviceAccount="two")["associations"]
    assert [(a["namespace"], a["serviceAccount"]) for a in exact] == [("b", "two")]

    first = client.list_pod_identity_associations(clusterName="prod", maxResults=2)
    assert len(first["associations"]) == 2 and first["nextToken"]
    second = client.list_pod_identity_associations(clusterName="prod", maxResults=2, nextToken=first["nextToken"])
    third = client.list_pod_identity_associations(clusterName="prod", maxResults=2, nextToken=second["nextToken"])
    assert len(second["associations"]) == 2 and len(third["associations"]) == 1 and "nextToken" not in third
    seen = [a["associationId"] for page in (first, second, third) for a in page["associations"]]
    assert len(set(seen)) == 5
    paged = client.get_paginator("list_pod_identity_associations").paginate(clusterName="prod", PaginationConfig={"PageSize": 2})
    assert sorted(a["associationId"] for page in paged for a in page["associations"]) == sorted(seen)


def test_eks_list_refuses_bad_page_parameters(eks):
    base = f"{eks.url}/clusters/prod/pod-identity-associations"
    for query, message in [("maxResults=0", "maxResults must be between 1 and 100."), ("maxResults=101", "maxResults must be between 1 and 100."), ("maxResults=x", "maxResults must be an integer."), ("nextToken=garbage", "The nextToken is not valid.")]:
        status, headers, body = call("GET", f"{base}?{query}", headers=aws_headers())
        assert (status, headers["x-amzn-errortype"], body["message"]) == (400, "InvalidParameterException", message), query


def test_eks_idempotent_create_with_the_same_client_token(client, moto):
    args = dict(clusterName="prod", namespace="apps", serviceAccount="web", roleArn=moto["role"], clientRequestToken="token-1")
    first = client.create_pod_identity_association(**args)["association"]
    again = client.create_pod_identity_association(**args)["association"]
    assert again == first
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(**dict(args, serviceAccount="other"))
    assert aws_error(excinfo) == (400, "InvalidRequestException", "The client request token was already used with different parameters.")


# -- EKS Pod Identity: strictness ---------------------------------------------------


def test_eks_requires_sigv4_authorization(eks):
    url = f"{eks.url}/clusters/prod/pod-identity-associations"
    status, headers, body = call("GET", url)
    assert (status, headers["x-amzn-errortype"], body) == (403, "MissingAuthenticationTokenException", {"message": "Missing Authentication Token"})
    status, headers, body = call("GET", url, headers={"Authorization": "Bearer abc"})
    assert (status, headers["x-amzn-errortype"]) == (403, "IncompleteSignatureException")
    status, headers, body = call("GET", url, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/eks/aws4_request"})
    assert (status, headers["x-amzn-errortype"]) == (403, "IncompleteSignatureException")
    assert "SignedHeaders" in body["message"]
    status, headers, body = call("GET", url, headers=aws_headers(service="iam"))
    assert (status, headers["x-amzn-errortype"], body["message"]) == (403, "InvalidSignatureException", "Credential should be scoped to correct service: 'eks'. ")
    no_date = {"Authorization": aws_headers()["Authorization"]}
    status, headers, body = call("GET", url, headers=no_date)
    assert (status, headers["x-amzn-errortype"]) == (403, "IncompleteSignatureException")
    assert "X-Amz-Date" in body["message"]
    empty_key = {"Authorization": aws_headers()["Authorization"].replace("Credential=test/", "Credential=/"), "X-Amz-Date": "20260101T000000Z"}
    status, headers, body = call("GET", url, headers=empty_key)
    assert (status, headers["x-amzn-errortype"]) == (403, "UnrecognizedClientException")
    assert call("GET", url, headers=aws_headers())[0] == 200
    # Refused requests are logged, and none of them was a write that happened.
    statuses = [(line["op"], line["status"], line["error"]) for line in eks.log_lines()]
    assert statuses[0] == ("ListPodIdentityAssociations", 403, "MissingAuthenticationTokenException")
    assert len(statuses) == 7


def test_eks_refuses_unknown_fields(eks, moto):
    url = f"{eks.url}/clusters/prod/pod-identity-associations"
    body = {"namespace": "apps", "serviceAccount": "web", "roleArn": moto["role"], "clusterName": "prod"}
    status, headers, reply = call("POST", url, body, aws_headers())
    assert (status, headers["x-amzn-errortype"], reply["message"]) == (400, "InvalidParameterException", "Unknown field in request: clusterName")
    body = {"namespace": "apps", "serviceAccount": "web", "roleArn": moto["role"], "role_arn": "x"}
    assert call("POST", url, body, aws_headers())[2]["message"] == "Unknown field in request: role_arn"
    status, _, reply = call("POST", url, raw=b"{not json", headers=aws_headers())
    assert (status, reply["message"]) == (400, "The request body is not valid JSON.")
    for missing in ("namespace", "serviceAccount", "roleArn"):
        partial = {"namespace": "apps", "serviceAccount": "web", "roleArn": moto["role"]}
        del partial[missing]
        assert call("POST", url, partial, aws_headers())[:1] == (400,)
        assert call("POST", url, partial, aws_headers())[2]["message"] == f"{missing} is required."
    assert eks.control("GET", "state")["associations"] == []


def test_eks_refuses_a_second_association_for_the_same_service_account(client, moto):
    first = client.create_pod_identity_association(clusterName="prod", namespace="apps", serviceAccount="web", roleArn=moto["role"])["association"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(clusterName="prod", namespace="apps", serviceAccount="web", roleArn=moto["other_role"])
    assert aws_error(excinfo) == (409, "ResourceInUseException", f"Association already exists: {first['associationId']}")
    # Another namespace or service account is another association.
    client.create_pod_identity_association(clusterName="prod", namespace="other", serviceAccount="web", roleArn=moto["role"])


def test_eks_unknown_cluster_is_404_and_clusters_are_per_region(eks, moto):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        aws_client("eks", eks.url).create_pod_identity_association(clusterName="nope", namespace="a", serviceAccount="b", roleArn=moto["role"])
    assert aws_error(excinfo) == (404, "ResourceNotFoundException", "No cluster found for name: nope.")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        aws_client("eks", eks.url, region="us-east-1").list_pod_identity_associations(clusterName="prod")
    assert aws_error(excinfo) == (404, "ResourceNotFoundException", "No cluster found for name: prod.")


def test_eks_refuses_role_arns_that_are_not_roles(client, moto):
    for arn in ("arn:aws:iam::123456789012:user/bob", "not-an-arn", "arn:aws:iam::12345:role/short-account", "arn:aws:s3:::bucket"):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=arn)
        assert aws_error(excinfo) == (400, "InvalidParameterException", f"roleArn {arn} is not a valid IAM role ARN.")


def test_eks_checks_the_role_exists_and_trusts_pod_identity(client, moto):
    missing = f"arn:aws:iam::{ACCOUNT}:role/does-not-exist"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=missing)
    assert aws_error(excinfo) == (400, "InvalidParameterException", "Role provided in the request does not exist")
    wrong_path = f"arn:aws:iam::{ACCOUNT}:role/pod-role"  # it lives under /strata/
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=wrong_path)
    assert aws_error(excinfo)[2] == "Role provided in the request does not exist"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["untagged_role"])
    assert aws_error(excinfo) == (400, "InvalidParameterException", "Trust policy of the role provided is invalid. Follow the official documentation to resolve the issue.")
    created = client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])["association"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.update_pod_identity_association(clusterName="prod", associationId=created["associationId"], roleArn=missing)
    assert aws_error(excinfo)[1:] == ("InvalidParameterException", "Role provided in the request does not exist")


def test_eks_association_id_must_be_19_characters(client):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.describe_pod_identity_association(clusterName="prod", associationId="a-short")
    assert aws_error(excinfo) == (400, "InvalidParameterException", "The parameter associationId should be 19 characters long.")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.delete_pod_identity_association(clusterName="prod", associationId="a-0123456789abcdefg")
    assert aws_error(excinfo)[:2] == (404, "ResourceNotFoundException")


def test_eks_refuses_bad_tags(eks, moto):
    url = f"{eks.url}/clusters/prod/pod-identity-associations"
    base = {"namespace": "a", "serviceAccount": "b", "roleArn": moto["role"]}
    for tags in ({"aws:owner": "x"}, {"k" * 129: "v"}, {"k": 1}, {f"k{i}": "v" for i in range(51)}):
        status, headers, _ = call("POST", url, dict(base, tags=tags), aws_headers())
        assert (status, headers["x-amzn-errortype"]) == (400, "InvalidParameterException"), tags


# -- EKS: forwarding to moto ----------------------------------------------------------


def test_eks_forwards_everything_else_to_moto(client, eks):
    cluster = client.describe_cluster(name="prod")["cluster"]
    assert cluster["name"] == "prod"
    assert cluster["arn"] == f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/prod"
    assert client.list_nodegroups(clusterName="prod")["nodegroups"] == []
    assert "prod" in client.list_clusters()["clusters"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.describe_cluster(name="missing")
    assert aws_error(excinfo) == (404, "ResourceNotFoundException", "No cluster found for name: missing.")
    lines = eks.log_lines()
    assert [(line["path"], line["forwarded"], line["status"], line["op"]) for line in lines] == [
        ("/clusters/prod", True, 200, None),
        ("/clusters/prod/node-groups", True, 200, None),
        ("/clusters", True, 200, None),
        ("/clusters/missing", True, 404, None),
    ]
    assert lines[3]["error"] == "ResourceNotFoundException"


def test_eks_sees_clusters_created_in_moto_later(client, moto):
    moto_eks = aws_client("eks", moto["url"])
    moto_eks.create_cluster(name="late", roleArn=moto["role"], resourcesVpcConfig={})
    try:
        client.create_pod_identity_association(clusterName="late", namespace="a", serviceAccount="b", roleArn=moto["role"])
    finally:
        moto_eks.delete_cluster(name="late")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.list_pod_identity_associations(clusterName="late")
    assert aws_error(excinfo)[:2] == (404, "ResourceNotFoundException")


def test_eks_static_clusters_without_upstream(tmp_path):
    server = start(EKS, tmp_path, "--cluster", "alpha", "--cluster", "beta")
    try:
        client = aws_client("eks", server.url)
        created = client.create_pod_identity_association(clusterName="alpha", namespace="a", serviceAccount="b", roleArn=f"arn:aws:iam::{ACCOUNT}:role/anything")
        assert created["association"]["clusterName"] == "alpha"
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.list_pod_identity_associations(clusterName="gamma")
        assert aws_error(excinfo) == (404, "ResourceNotFoundException", "No cluster found for name: gamma.")
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.describe_cluster(name="alpha")
        assert aws_error(excinfo)[:2] == (404, "UnknownOperationException")
        assert server.control("GET", "state")["role_check"] == "off"
    finally:
        server.stop()
    result = subprocess.run([sys.executable, str(EKS), "--cluster", "alpha", "--role-check", "trust"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "needs --upstream" in result.stderr
    result = subprocess.run([sys.executable, str(EKS)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "--upstream" in result.stderr


# -- EKS: faults, pause, log ------------------------------------------------------------


def test_eks_injected_write_faults(client, eks, moto):
    eks.control("POST", "faults", {"kind": "write", "status": 500})
    eks.control("POST", "faults", {"op": "CreatePodIdentityAssociation", "status": 429})
    eks.control("POST", "faults", {"op": "CreatePodIdentityAssociation", "status": 409, "message": "busy"})
    args = dict(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])
    expected = [(500, "ServerException", "Injected by the stand-in."), (429, "ThrottlingException", "Rate exceeded"), (409, "ResourceInUseException", "busy")]
    for want in expected:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.create_pod_identity_association(**args)
        assert aws_error(excinfo) == want
    assert eks.control("GET", "state")["associations"] == []
    client.create_pod_identity_association(**args)
    assert [f["remaining"] for f in eks.control("GET", "faults")["faults"]] == [0, 0, 0]
    faults = [line["fault"] for line in eks.log_lines()]
    assert faults == [1, 2, 3, None]


def test_eks_fault_after_the_write_happened(client, eks, moto):
    eks.control("POST", "faults", {"op": "CreatePodIdentityAssociation", "status": 500, "after": True})
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])
    assert aws_error(excinfo)[:2] == (500, "ServerException")
    assert len(client.list_pod_identity_associations(clusterName="prod")["associations"]) == 1
    assert eks.log_lines()[0]["fault_hid_status"] == 200


def test_eks_retry_after_a_lost_answer_is_idempotent(eks, moto):
    # The SDK sends the same clientRequestToken on its retry, so EKS answers with the
    # association the first (lost) attempt made instead of 409.
    eks.control("POST", "faults", {"op": "CreatePodIdentityAssociation", "status": 500, "after": True})
    retrying = aws_client("eks", eks.url, attempts=2)
    created = retrying.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])["association"]
    assert [a["associationId"] for a in eks.control("GET", "state")["associations"]] == [created["associationId"]]
    assert [line["status"] for line in eks.log_lines()] == [500, 200]


def test_eks_retrying_client_gets_through_a_throttle(eks, moto):
    eks.control("POST", "faults", {"op": "CreatePodIdentityAssociation", "status": 429, "count": 2})
    retrying = aws_client("eks", eks.url, attempts=3)
    retrying.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])
    assert [line["status"] for line in eks.log_lines()] == [429, 429, 200]


def test_eks_next_reads_of_one_association_are_not_found(client, eks, moto):
    created = client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])["association"]
    association = created["associationId"]
    eks.control("POST", "faults", {"kind": "read", "resource": association, "status": 404, "count": 2})
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.describe_pod_identity_association(clusterName="prod", associationId=association)
        assert aws_error(excinfo) == (404, "ResourceNotFoundException", f"Association {association} not found in cluster prod.")
    # Lists are reads of the cluster, not of the association: not matched.
    assert len(client.list_pod_identity_associations(clusterName="prod")["associations"]) == 1
    assert client.describe_pod_identity_association(clusterName="prod", associationId=association)["association"] == created


def test_eks_pause_forces_two_creates_to_race(eks, moto):
    eks.control("POST", "pause", {"op": "CreatePodIdentityAssociation"})
    results = []

    def create():
        try:
            aws_client("eks", eks.url).create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])
            results.append(200)
        except botocore.exceptions.ClientError as error:
            results.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert eks.control("GET", "paused?wait=2&timeout=20")["waiting"] == 2
    assert results == []
    eks.control("POST", "resume")
    for thread in threads:
        thread.join(30)
    assert sorted(map(str, results)) == ["200", "ResourceInUseException"]
    assert [line["paused"] for line in eks.log_lines()] == [True, True]


def test_eks_resume_one_at_a_time(eks, moto):
    eks.control("POST", "pause", {"kind": "write"})
    done = []
    thread = threading.Thread(target=lambda: done.append(aws_client("eks", eks.url).create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])))
    thread.start()
    assert eks.control("GET", "paused?wait=1&timeout=20")["waiting"] == 1
    # Reads are not paused by a write pause.
    assert aws_client("eks", eks.url).list_pod_identity_associations(clusterName="prod")["associations"] == []
    eks.control("POST", "resume", {"count": 1})
    thread.join(30)
    assert len(done) == 1
    assert eks.control("GET", "paused")["paused"] is True
    eks.control("POST", "resume")
    assert eks.control("GET", "paused")["paused"] is False


def test_eks_request_log_and_requests_endpoint(client, eks, moto):
    client.create_pod_identity_association(clusterName="prod", namespace="a", serviceAccount="b", roleArn=moto["role"])
    client.list_pod_identity_associations(clusterName="prod", namespace="a")
    lines = eks.log_lines()
    assert lines[1]["seq"] == lines[0]["seq"] + 1  # seq counts from the server's start
    assert lines[1]["query"] == "namespace=a"
    for line in lines:
        assert set(line) >= {"seq", "time", "method", "path", "query", "op", "mutating", "status", "error", "forwarded", "fault", "paused", "resource"}
    writes = eks.control("GET", "requests?mutating=true")["requests"]
    assert [w["op"] for w in writes] == ["CreatePodIdentityAssociation"]
    assert eks.control("GET", "requests?op=ListPodIdentityAssociations")["requests"][0]["resource"] == "prod"
    eks.control("POST", "reset")
    assert eks.control("GET", "requests")["requests"] == []
    assert eks.control("GET", "state")["associations"] == []
    assert len(eks.log_lines()) == 2  # reset keeps the log file unless asked


# -- GCP IAM: happy paths ----------------------------------------------------------------


def sa_url(server, project, account=""):
    base = f"{server.url}/v1/projects/{project}/serviceAccounts"
    return f"{base}/{account}" if account else base


def create_sa(server, account_id="app-runner", project="proj-a", **fields):
    status, _, body = call("POST", sa_url(server, project), {"accountId": account_id, "serviceAccount": fields}, BEARER)
    assert status == 200, body
    return body


def test_gcp_service_account_lifecycle(gcp):
    created = create_sa(gcp, displayName="App runner", description="runs the app")
    email = "app-runner@proj-a.iam.gserviceaccount.com"
    assert set(created) == {"name", "projectId", "uniqueId", "email", "displayName", "description", "etag", "oauth2ClientId"}
    assert created["name"] == f"projects/proj-a/serviceAccounts/{email}"
    assert (created["projectId"], created["email"], created["displayName"], created["description"]) == ("proj-a", email, "App runner", "runs the app")
    assert re.fullmatch(r"\d{21}", created["uniqueId"]) and created["oauth2ClientId"] == created["uniqueId"]
    assert base64.b64decode(created["etag"])

    for project, key in (("proj-a", email), ("-", email), ("-", created["uniqueId"])):
        status, _, body = call("GET", sa_url(gcp, project, key), headers=BEARER)
        assert (status, body) == (200, created)

    create_sa(gcp, "second-one")
    create_sa(gcp, "in-b-project", project="proj-b")
    status, _, listed = call("GET", sa_url(gcp, "proj-a"), headers=BEARER)
    assert status == 200 and [a["email"] for a in listed["accounts"]] == [email, "second-one@proj-a.iam.gserviceaccount.com"]
    assert "nextPageToken" not in listed
    status, _, page = call("GET", sa_url(gcp, "proj-a") + "?pageSize=1", headers=BEARER)
    assert [a["email"] for a in page["accounts"]] == [email]
    status, _, rest = call("GET", sa_url(gcp, "proj-a") + "?pageSize=1&pageToken=" + page["nextPageToken"], headers=BEARER)
    assert [a["email"] for a in rest["accounts"]] == ["second-one@proj-a.iam.gserviceaccount.com"] and "nextPageToken" not in rest

    status, _, patched = call("PATCH", sa_url(gcp, "-", email), {"serviceAccount": {"displayName": "Renamed"}, "updateMask": "displayName"}, BEARER)
    assert status == 200 and patched["displayName"] == "Renamed" and patched["description"] == "runs the app"

    status, _, body = call("DELETE", sa_url(gcp, "proj-a", email), headers=BEARER)
    assert (status, body) == (200, {})
    status, _, body = call("GET", sa_url(gcp, "-", email), headers=BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (404, "NOT_FOUND", "Unknown service account")
    status, _, body = call("GET", sa_url(gcp, "proj-b"), headers=BEARER)
    assert [a["email"] for a in body["accounts"]] == ["in-b-project@proj-b.iam.gserviceaccount.com"]

    ops = [(line["op"], line["mutating"]) for line in gcp.log_lines()]
    assert sum(m for _, m in ops) == 5  # three creates, one patch, one delete


def test_gcp_empty_list_is_an_empty_object(gcp):
    assert call("GET", sa_url(gcp, "proj-b"), headers=BEARER)[:3:2] == (200, {})


def test_gcp_iam_policy_read_modify_write(gcp):
    email = create_sa(gcp)["email"]
    url = sa_url(gcp, "-", email)
    status, _, policy = call("POST", f"{url}:getIamPolicy", headers=BEARER)
    assert (status, policy) == (200, {"version": 1, "etag": EMPTY_POLICY_ETAG})
    member = "serviceAccount:proj-a.svc.id.goog[apps/web]"
    new = {"etag": policy["etag"], "bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}
    status, _, set_reply = call("POST", f"{url}:setIamPolicy", {"policy": new}, BEARER)
    assert status == 200
    assert set_reply["bindings"] == new["bindings"] and set_reply["version"] == 1
    assert set_reply["etag"] != policy["etag"]
    assert base64.b64decode(set_reply["etag"]) == (1).to_bytes(8, "big")
    status, _, again = call("POST", f"{url}:getIamPolicy?options.requestedPolicyVersion=3", headers=BEARER)
    assert (status, again) == (200, set_reply)
    # Another set changes the etag again; the old one is now stale.
    status, _, second = call("POST", f"{url}:setIamPolicy", {"policy": dict(new, etag=set_reply["etag"])}, BEARER)
    assert status == 200 and second["etag"] not in (policy["etag"], set_reply["etag"])
    status, _, body = call("POST", f"{url}:setIamPolicy", {"policy": dict(new, etag=set_reply["etag"])}, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (409, "ABORTED", CONCURRENT)
    status, _, body = call("POST", f"{url}:setIamPolicy", {"policy": dict(new, etag=EMPTY_POLICY_ETAG)}, BEARER)
    assert (status, body["error"]["status"]) == (409, "ABORTED")
    writes = [line for line in gcp.log_lines() if line["mutating"]]
    assert [(w["op"], w["status"], w.get("etag_sent")) for w in writes] == [
        ("create", 200, None),
        ("setIamPolicy", 200, True),
        ("setIamPolicy", 200, True),
        ("setIamPolicy", 409, True),
        ("setIamPolicy", 409, True),
    ]
    assert [line["op"] for line in gcp.log_lines() if not line["mutating"]] == ["getIamPolicy", "getIamPolicy"]


def test_gcp_policy_is_normalized(gcp):
    email = create_sa(gcp)["email"]
    other = create_sa(gcp, "other-account")["email"]
    bindings = [
        {"role": "roles/iam.serviceAccountUser", "members": ["user:b@example.com", "user:a@example.com", "user:a@example.com"]},
        {"role": "roles/iam.serviceAccountTokenCreator", "members": [f"serviceAccount:{other}"]},
        {"role": "roles/iam.serviceAccountUser", "members": ["group:ops@example.com"]},
        {"role": "roles/iam.serviceAccountViewer", "members": []},
    ]
    status, _, policy = call("POST", f"{sa_url(gcp, '-', email)}:setIamPolicy", {"policy": {"bindings": bindings, "version": 3}}, BEARER)
    assert status == 200
    assert policy["bindings"] == [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": [f"serviceAccount:{other}"]},
        {"role": "roles/iam.serviceAccountUser", "members": ["group:ops@example.com", "user:a@example.com", "user:b@example.com"]},
    ]
    status, _, empty = call("POST", f"{sa_url(gcp, '-', email)}:setIamPolicy", {"policy": {"bindings": []}}, BEARER)
    assert status == 200 and "bindings" not in empty


def test_gcp_set_without_etag_is_a_blind_write_unless_required(gcp):
    email = create_sa(gcp)["email"]
    url = f"{sa_url(gcp, '-', email)}:setIamPolicy"
    policy = {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]}]}
    assert call("POST", url, {"policy": policy}, BEARER)[0] == 200
    assert gcp.log_lines()[-1]["etag_sent"] is False
    gcp.control("POST", "config", {"require_etag": True})
    status, _, body = call("POST", url, {"policy": policy}, BEARER)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "policy.etag is required" in body["error"]["message"]


# -- GCP IAM: strictness ----------------------------------------------------------------


def test_gcp_requires_a_bearer_token(gcp, tmp_path):
    url = sa_url(gcp, "proj-a")
    status, headers, body = call("GET", url)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert body["error"]["code"] == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    assert body["error"]["message"].startswith("Request is missing required authentication credential.")
    for header in ("Basic dXNlcjpwdw==", "Bearer ", "Bearer"):
        status, _, body = call("GET", url, headers={"Authorization": header})
        assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED"), header
        assert body["error"]["message"].startswith("Request had invalid authentication credentials.")
    assert call("POST", url, {"accountId": "no-auth-here"})[0] == 401
    assert gcp.control("GET", "state")["accounts"] == []
    server = start(GCP, tmp_path, "--project", "p1", "--token", "right")
    try:
        assert call("GET", sa_url(server, "p1"), headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call("GET", sa_url(server, "p1"), headers={"Authorization": "Bearer right"})[0] == 200
    finally:
        server.stop()


def test_gcp_refuses_unknown_fields(gcp):
    url = sa_url(gcp, "proj-a")
    cases = [
        ({"accountId": "app-runner", "accountName": "x"}, 'Invalid JSON payload received. Unknown name "accountName": Cannot find field.'),
        ({"accountId": "app-runner", "account_id": "x"}, 'Invalid JSON payload received. Duplicate value for field "accountId".'),
        ({"accountId": 12345678}, "Invalid value at 'account_id' (TYPE_STRING), 12345678"),
        ({"accountId": "app-runner", "serviceAccount": {"displayName": "x", "labels": {}}}, "Invalid JSON payload received. Unknown name \"labels\" at 'service_account': Cannot find field."),
    ]
    for body, message in cases:
        status, _, reply = call("POST", url, body, BEARER)
        assert (status, reply["error"]["status"], reply["error"]["message"]) == (400, "INVALID_ARGUMENT", message)
    email = create_sa(gcp)["email"]
    set_url = f"{sa_url(gcp, '-', email)}:setIamPolicy"
    status, _, reply = call("POST", set_url, {"policy": {"bindings": [], "owner": "x"}}, BEARER)
    assert (status, reply["error"]["message"]) == (400, "Invalid JSON payload received. Unknown name \"owner\" at 'policy': Cannot find field.")
    status, _, reply = call("POST", set_url, {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "member": "user:a@example.com"}]}}, BEARER)
    assert (status, reply["error"]["message"]) == (400, "Invalid JSON payload received. Unknown name \"member\" at 'policy.bindings[0]': Cannot find field.")
    status, _, reply = call("POST", set_url, {"bindings": []}, BEARER)
    assert (status, reply["error"]["message"]) == (400, 'Invalid JSON payload received. Unknown name "bindings": Cannot find field.')
    status, _, reply = call("GET", url + "?filter=x", headers=BEARER)
    assert (status, reply["error"]["message"]) == (400, "Invalid JSON payload received. Unknown name \"filter\": Cannot bind query parameter. Field 'filter' could not be found in request message.")
    assert call("GET", url + "?alt=json&prettyPrint=false", headers=BEARER)[0] == 200


def test_gcp_accepts_snake_case_field_names_like_google(gcp):
    # Google's JSON parser takes a proto field's own name as well as its camelCase one.
    status, _, created = call("POST", sa_url(gcp, "proj-a"), {"account_id": "snake-case", "service_account": {"display_name": "Snake"}}, BEARER)
    assert (status, created["displayName"]) == (200, "Snake")
    url = sa_url(gcp, "-", created["email"])
    policy = {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]}]}, "update_mask": "bindings"}
    assert call("POST", f"{url}:setIamPolicy", policy, BEARER)[0] == 200
    assert call("POST", f"{url}:getIamPolicy?options.requested_policy_version=3", headers=BEARER)[0] == 200
    status, _, page = call("GET", sa_url(gcp, "proj-a") + "?page_size=1", headers=BEARER)
    assert status == 200 and len(page["accounts"]) == 1


@pytest.mark.parametrize(
    "account_id,message",
    [
        ("abc", 'The account ID "abc" does not have a length between 6 and 30.'),
        ("a" * 31, f'The account ID "{"a" * 31}" does not have a length between 6 and 30.'),
        ("Upper-case", "Upper-case does not match [a-z]([-a-z0-9]*[a-z0-9])."),
        ("1starts-digit", "1starts-digit does not match [a-z]([-a-z0-9]*[a-z0-9])."),
        ("ends-with-", "ends-with- does not match [a-z]([-a-z0-9]*[a-z0-9])."),
        ("under_score", "under_score does not match [a-z]([-a-z0-9]*[a-z0-9])."),
        ("", "Account ID is required."),
    ],
)
def test_gcp_account_id_rules(gcp, account_id, message):
    status, _, body = call("POST", sa_url(gcp, "proj-a"), {"accountId": account_id}, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (400, "INVALID_ARGUMENT", message)


def test_gcp_account_id_limits_are_inclusive(gcp):
    for account_id in ("a" * 6, "a" + "-b" * 14 + "c"):
        assert len(account_id) in (6, 30)
        create_sa(gcp, account_id)


def test_gcp_create_existing_is_409_already_exists(gcp):
    create_sa(gcp)
    status, _, body = call("POST", sa_url(gcp, "proj-a"), {"accountId": "app-runner"}, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (409, "ALREADY_EXISTS", "Service account app-runner already exists within project projects/proj-a.")
    assert body["error"]["details"] == [{"@type": "type.googleapis.com/google.rpc.ResourceInfo", "resourceName": "projects/proj-a/serviceAccounts/app-runner@proj-a.iam.gserviceaccount.com"}]
    # The same id in another project is another account.
    create_sa(gcp, project="proj-b")


def test_gcp_unknown_project_is_permission_denied(gcp):
    status, _, body = call("POST", sa_url(gcp, "no-such-project"), {"accountId": "app-runner"}, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.create' denied on resource (or it may not exist).")
    status, _, body = call("GET", sa_url(gcp, "no-such-project", "x@no-such-project.iam.gserviceaccount.com"), headers=BEARER)
    assert (status, body["error"]["message"]) == (403, "Permission 'iam.serviceAccounts.get' denied on resource (or it may not exist).")


def test_gcp_account_named_under_the_wrong_project_is_not_found(gcp):
    email = create_sa(gcp)["email"]
    assert call("GET", sa_url(gcp, "proj-b", email), headers=BEARER)[0] == 404


def test_gcp_workload_identity_member_needs_an_existing_pool(gcp):
    email = create_sa(gcp)["email"]
    url = f"{sa_url(gcp, '-', email)}:setIamPolicy"
    member = "serviceAccount:proj-b.svc.id.goog[apps/web]"
    status, _, body = call("POST", url, {"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}}, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (
        400,
        "INVALID_ARGUMENT",
        "Identity Pool does not exist (proj-b.svc.id.goog). Please check that you specified a valid resource name as returned in the `name` attribute in the configuration API.",
    )
    gcp.control("POST", "config", {"workload_pools": ["proj-a", "proj-b"]})
    assert call("POST", url, {"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}}, BEARER)[0] == 200


@pytest.mark.parametrize(
    "member,message",
    [
        ("alice@example.com", "Invalid member: alice@example.com"),
        ("user:not-an-email", "Invalid member: user:not-an-email"),
        ("robot:x@example.com", "Invalid member: robot:x@example.com"),
        ("serviceAccount:proj-a.svc.id.goog[no-ksa]", "Invalid member: serviceAccount:proj-a.svc.id.goog[no-ksa]"),
        ("serviceAccount:ghost-account@proj-a.iam.gserviceaccount.com", "Service account ghost-account@proj-a.iam.gserviceaccount.com does not exist."),
        ("domain:not a domain", "Invalid member: domain:not a domain"),
    ],
)
def test_gcp_member_syntax(gcp, member, message):
    email = create_sa(gcp)["email"]
    status, _, body = call("POST", f"{sa_url(gcp, '-', email)}:setIamPolicy", {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": [member]}]}}, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (400, "INVALID_ARGUMENT", message)


def test_gcp_accepted_member_kinds(gcp):
    email = create_sa(gcp)["email"]
    members = [
        "allUsers",
        "allAuthenticatedUsers",
        "user:a@example.com",
        "group:g@example.com",
        "domain:example.com",
        f"serviceAccount:{email}",
        "serviceAccount:robot@elsewhere.iam.gserviceaccount.com",
        "serviceAccount:proj-a.svc.id.goog[apps/web]",
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
        "deleted:user:old@example.com?uid=123",
    ]
    status, _, body = call("POST", f"{sa_url(gcp, '-', email)}:setIamPolicy", {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": members}]}}, BEARER)
    assert status == 200, body
    assert body["bindings"][0]["members"] == sorted(members)


def test_gcp_roles_and_unmodelled_policy_features(gcp):
    email = create_sa(gcp)["email"]
    url = f"{sa_url(gcp, '-', email)}:setIamPolicy"
    status, _, body = call("POST", url, {"policy": {"bindings": [{"role": "roles/storage.admin", "members": ["user:a@example.com"]}]}}, BEARER)
    assert (status, body["error"]["message"]) == (400, "Role roles/storage.admin is not supported for this resource.")
    status, _, body = call("POST", url, {"policy": {"bindings": [{"role": "storage.admin", "members": ["user:a@example.com"]}]}}, BEARER)
    assert (status, body["error"]["message"]) == (400, "Role storage.admin is not valid.")
    custom = {"role": "projects/proj-a/roles/myRole", "members": ["user:a@example.com"]}
    assert call("POST", url, {"policy": {"bindings": [custom]}}, BEARER)[0] == 200
    condition = {"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"], "condition": {"expression": "true", "title": "t"}}
    status, _, body = call("POST", url, {"policy": {"bindings": [condition], "version": 3}}, BEARER)
    assert (status, body["error"]["status"]) == (501, "NOT_IMPLEMENTED")
    status, _, body = call("POST", url, {"policy": {"bindings": [], "version": 2}}, BEARER)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, _, body = call("POST", url, {"policy": {"etag": "not base64!"}}, BEARER)
    assert (status, body["error"]["message"]) == (400, 'Invalid value at \'policy.etag\' (TYPE_BYTES), Base64 decoding failed for "not base64!"')
    status, _, body = call("POST", url, {"policy": {"bindings": []}, "updateMask": "owners"}, BEARER)
    assert status == 400
    assert call("POST", url, {"policy": {"bindings": []}, "updateMask": "bindings,etag"}, BEARER)[0] == 200


def test_gcp_get_iam_policy_options(gcp):
    email = create_sa(gcp)["email"]
    url = f"{sa_url(gcp, '-', email)}:getIamPolicy"
    for query in ("?options.requestedPolicyVersion=0", "?options.requestedPolicyVersion=1", "?options.requestedPolicyVersion=3"):
        assert call("POST", url + query, headers=BEARER)[:3:2] == (200, {"version": 1, "etag": EMPTY_POLICY_ETAG})
    assert call("POST", url, {"options": {"requestedPolicyVersion": 3}}, BEARER)[0] == 200
    status, _, body = call("POST", url + "?options.requestedPolicyVersion=2", headers=BEARER)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, _, body = call("POST", url, {"options": {"version": 3}}, BEARER)
    assert (status, body["error"]["message"]) == (400, "Invalid JSON payload received. Unknown name \"version\" at 'options': Cannot find field.")


def test_gcp_patch_needs_an_update_mask_of_display_name_or_description(gcp):
    email = create_sa(gcp, displayName="x")["email"]
    url = sa_url(gcp, "-", email)
    assert call("PATCH", url, {"serviceAccount": {"displayName": "y"}}, BEARER)[0] == 400
    status, _, body = call("PATCH", url, {"serviceAccount": {"email": "x"}, "updateMask": "email"}, BEARER)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, _, body = call("PATCH", url, {"serviceAccount": {"description": "d"}, "updateMask": "description"}, BEARER)
    assert status == 200 and (body["displayName"], body["description"]) == ("x", "d")


def test_gcp_unmodelled_methods_say_so(gcp):
    email = create_sa(gcp)["email"]
    status, _, body = call("POST", f"{sa_url(gcp, '-', email)}:disable", {}, BEARER)
    assert (status, body["error"]["status"]) == (501, "NOT_IMPLEMENTED")
    assert gcp.log_lines()[-1]["op"] == "unmodelled"


# -- GCP IAM: eventual consistency, faults, pause ---------------------------------------


def test_gcp_not_yet_visible_reads_after_create(gcp):
    gcp.control("POST", "config", {"not_yet_reads": 2})
    email = create_sa(gcp)["email"]
    url = sa_url(gcp, "-", email)
    status, _, body = call("GET", url, headers=BEARER)
    assert (status, body["error"]["message"]) == (404, "Unknown service account")
    assert call("POST", f"{url}:getIamPolicy", headers=BEARER)[0] == 404
    assert call("GET", url, headers=BEARER)[0] == 200
    assert call("POST", f"{url}:getIamPolicy", headers=BEARER)[0] == 200
    assert [line.get("not_yet_visible", False) for line in gcp.log_lines()] == [False, True, True, False, False]


def test_gcp_not_yet_visible_flag_and_set_iam_policy(tmp_path):
    server = start(GCP, tmp_path, "--project", "p1", "--not-yet-reads", "1", "--not-yet-ops", "setIamPolicy")
    try:
        email = create_sa(server, project="p1")["email"]
        url = f"{sa_url(server, '-', email)}:setIamPolicy"
        policy = {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]}]}}
        assert call("GET", sa_url(server, "-", email), headers=BEARER)[0] == 200
        assert call("POST", url, policy, BEARER)[0] == 404
        assert call("POST", url, policy, BEARER)[0] == 200
    finally:
        server.stop()


def test_gcp_not_visible_control_endpoint(gcp):
    email = create_sa(gcp)["email"]
    gcp.control("POST", "not-visible", {"account": email, "reads": 3, "ops": ["getIamPolicy"]})
    url = sa_url(gcp, "-", email)
    assert call("GET", url, headers=BEARER)[0] == 200
    assert [call("POST", f"{url}:getIamPolicy", headers=BEARER)[0] for _ in range(4)] == [404, 404, 404, 200]
    assert gcp.control("GET", "state")["hidden"][email]["reads"] == 0


def test_gcp_injected_faults(gcp):
    email = create_sa(gcp)["email"]
    url = f"{sa_url(gcp, '-', email)}:setIamPolicy"
    policy = {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]}]}}
    gcp.control("POST", "faults", {"op": "setIamPolicy", "status": 429})
    gcp.control("POST", "faults", {"op": "setIamPolicy", "status": 500, "after": True})
    gcp.control("POST", "faults", {"op": "setIamPolicy", "status": 503, "error": "UNAVAILABLE", "message": "try later"})
    status, _, body = call("POST", url, policy, BEARER)
    assert (status, body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    status, _, body = call("POST", url, policy, BEARER)
    assert (status, body["error"]["status"], body["error"]["message"]) == (500, "INTERNAL", "Internal error encountered.")
    # The write behind the lost answer happened: the policy has a new etag.
    status, _, policy_now = call("POST", f"{sa_url(gcp, '-', email)}:getIamPolicy", headers=BEARER)
    assert policy_now["etag"] != EMPTY_POLICY_ETAG and policy_now["bindings"]
    status, _, body = call("POST", url, policy, BEARER)
    assert (status, body["error"]["message"]) == (503, "try later")
    assert call("POST", url, policy, BEARER)[0] == 200
    status, _, body = call("POST", sa_url(gcp, "proj-a"), {"accountId": "app-runner"}, BEARER)
    assert body["error"]["status"] == "ALREADY_EXISTS"


def test_gcp_fault_on_create_conflict_defaults_to_already_exists(gcp):
    gcp.control("POST", "faults", {"op": "create", "status": 409})
    status, _, body = call("POST", sa_url(gcp, "proj-a"), {"accountId": "app-runner"}, BEARER)
    assert (status, body["error"]["status"]) == (409, "ALREADY_EXISTS")
    assert gcp.control("GET", "state")["accounts"] == []


def test_gcp_delay_only_fault(gcp):
    gcp.control("POST", "faults", {"op": "list", "delay": 0.3})
    started = time.monotonic()
    assert call("GET", sa_url(gcp, "proj-a"), headers=BEARER)[0] == 200
    assert time.monotonic() - started >= 0.3


def test_gcp_concurrent_set_iam_policy_one_wins(gcp):
    email = create_sa(gcp)["email"]
    url = sa_url(gcp, "-", email)
    etag = call("POST", f"{url}:getIamPolicy", headers=BEARER)[2]["etag"]
    gcp.control("POST", "pause", {"op": "setIamPolicy"})
    results = []

    def set_policy(user):
        policy = {"policy": {"etag": etag, "bindings": [{"role": "roles/iam.serviceAccountUser", "members": [f"user:{user}@example.com"]}]}}
        results.append(call("POST", f"{url}:setIamPolicy", policy, BEARER)[0])

    threads = [threading.Thread(target=set_policy, args=(user,)) for user in ("a", "b")]
    for thread in threads:
        thread.start()
    assert gcp.control("GET", "paused?wait=2&timeout=20")["waiting"] == 2
    gcp.control("POST", "resume")
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [200, 409]


def test_gcp_pause_times_out_and_is_logged(gcp):
    gcp.control("POST", "pause", {"op": "list", "timeout": 0.2})
    assert call("GET", sa_url(gcp, "proj-a"), headers=BEARER)[0] == 200
    line = gcp.log_lines()[-1]
    assert (line["paused"], line["pause_timeout"]) == (True, True)


def test_gcp_state_dump_and_reset(gcp):
    email = create_sa(gcp)["email"]
    call("POST", f"{sa_url(gcp, '-', email)}:setIamPolicy", {"policy": {"bindings": [{"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]}]}}, BEARER)
    state = gcp.control("GET", "state")
    assert [a["email"] for a in state["accounts"]] == [email]
    assert state["policies"][email]["bindings"] == [{"role": "roles/iam.serviceAccountUser", "members": ["user:a@example.com"]}]
    gcp.control("POST", "reset", {"truncate_log": True})
    state = gcp.control("GET", "state")
    assert (state["accounts"], state["policies"]) == ([], {})
    assert gcp.log.read_text() == ""


# -- EKS add-ons (read side) ----------------------------------------------------------


def test_eks_addons_list_and_describe_through_botocore(client, eks):
    eks.control("POST", "config", {"addons": {"prod": {"eks-pod-identity-agent": "ACTIVE", "aws-mountpoint-s3-csi-driver": "DEGRADED"}}})
    assert client.list_addons(clusterName="prod")["addons"] == ["aws-mountpoint-s3-csi-driver", "eks-pod-identity-agent"]
    first = client.list_addons(clusterName="prod", maxResults=1)
    assert first["addons"] == ["aws-mountpoint-s3-csi-driver"]
    assert client.list_addons(clusterName="prod", nextToken=first["nextToken"])["addons"] == ["eks-pod-identity-agent"]
    agent = client.describe_addon(clusterName="prod", addonName="eks-pod-identity-agent")["addon"]
    assert (agent["addonName"], agent["clusterName"], agent["status"], agent["health"]["issues"]) == ("eks-pod-identity-agent", "prod", "ACTIVE", [])
    assert agent["addonArn"].startswith(f"arn:aws:eks:{REGION}:{ACCOUNT}:addon/prod/eks-pod-identity-agent/")
    degraded = client.describe_addon(clusterName="prod", addonName="aws-mountpoint-s3-csi-driver")["addon"]
    assert degraded["status"] == "DEGRADED" and degraded["health"]["issues"]
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        client.describe_addon(clusterName="prod", addonName="vpc-cni")
    assert aws_error(missing) == (404, "ResourceNotFoundException", "No addon: vpc-cni found in cluster: prod")
    with pytest.raises(botocore.exceptions.ClientError) as no_cluster:
        client.list_addons(clusterName="nope")
    assert aws_error(no_cluster)[:2] == (404, "ResourceNotFoundException")
    with pytest.raises(botocore.exceptions.ClientError) as bad_page:
        client.list_addons(clusterName="prod", maxResults=101)
    assert aws_error(bad_page)[:2] == (400, "InvalidParameterException")


def test_eks_addon_writes_are_refused_and_logged_as_mutating(client, eks):
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.create_addon(clusterName="prod", addonName="eks-pod-identity-agent")
    assert aws_error(refused)[0] == 501
    logged = [(r["op"], r["mutating"]) for r in eks.log_lines()]
    assert logged == [("CreateAddon", True)]
    assert eks.control("GET", "state")["addons"] == {}


def test_eks_addons_from_the_command_line_survive_a_reset(moto, tmp_path):
    server = start(EKS, tmp_path, "--upstream", moto["url"], "--addon", "prod:eks-pod-identity-agent", "--addon", "prod:vpc-cni:CREATING")
    try:
        server.control("POST", "reset", {})
        assert server.control("GET", "state")["addons"] == {"prod": {"eks-pod-identity-agent": "ACTIVE", "vpc-cni": "CREATING"}}
        status, _, payload = call("POST", f"{server.url}/__standin/config", {"addons": {"prod": {"x": "BROKEN"}}})
        assert status == 400, payload
    finally:
        server.stop()


def test_eks_describe_cluster_overrides_what_moto_cannot_show(client, eks):
    assert client.describe_cluster(name="prod")["cluster"]["status"] == "ACTIVE"
    assert client.describe_cluster(name="prod")["cluster"]["identity"]["oidc"]["issuer"]
    eks.control("POST", "config", {"cluster_overrides": {"prod": {"status": "CREATING", "identity": None}}})
    cluster = client.describe_cluster(name="prod")["cluster"]
    assert cluster["status"] == "CREATING" and "identity" not in cluster
    # Everything else is still moto's, and other clusters are untouched.
    assert cluster["arn"] == f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/prod"
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        client.describe_cluster(name="missing")
    assert aws_error(missing)[:2] == (404, "ResourceNotFoundException")
    lines = eks.log_lines()
    assert [(line["path"], line.get("overridden")) for line in lines] == [
        ("/clusters/prod", None),
        ("/clusters/prod", None),
        ("/clusters/prod", ["identity", "status"]),
        ("/clusters/missing", None),
    ]
    assert not any(line["mutating"] for line in lines)
    for bad in ({"prod": {"status": "BROKEN"}}, {"prod": {"stauts": "ACTIVE"}}, ["prod"]):
        status, _, payload = call("POST", f"{eks.url}/__standin/config", {"cluster_overrides": bad})
        assert status == 400, payload
    eks.control("POST", "reset", {})
    assert client.describe_cluster(name="prod")["cluster"]["status"] == "ACTIVE"


def test_eks_cluster_status_from_the_command_line_survives_a_reset(moto, tmp_path):
    server = start(EKS, tmp_path, "--upstream", moto["url"], "--cluster-status", "prod:UPDATING")
    try:
        client = aws_client("eks", server.url)
        assert client.describe_cluster(name="prod")["cluster"]["status"] == "UPDATING"
        server.control("POST", "reset", {})
        assert server.control("GET", "state")["cluster_overrides"] == {"prod": {"status": "UPDATING"}}
    finally:
        server.stop()
    refused = subprocess.run([sys.executable, str(EKS), "--upstream", moto["url"], "--cluster-status", "prod:SLEEPING"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "--cluster-status 'prod:SLEEPING'" in refused.stderr


# -- GKE clusters and Cloud DNS zones (read side) -----------------------------------


@pytest.fixture(scope="module")
def preflight_server(tmp_path_factory):
    server = start(
        GCP_PREFLIGHT,
        tmp_path_factory.mktemp("gcp-preflight"),
        "--project", "proj-a",
        "--cluster", "proj-a/europe-west1/main",
        "--zone", "proj-a/root/example.com",
        "--zone", "proj-a/dev/dev.example.com.",
        "--zone", "proj-a/inside/corp.example.com/private",
    )
    yield server
    server.stop()


@pytest.fixture
def gke(preflight_server):
    preflight_server.control("POST", "reset", {"truncate_log": True})
    return preflight_server


def test_gke_cluster_get_has_the_published_shape(gke):
    url = f"{gke.url}/v1/projects/proj-a/locations/europe-west1/clusters/main"
    status, _, cluster = call("GET", url, headers=BEARER)
    assert status == 200, cluster
    assert cluster["status"] == "RUNNING"
    assert cluster["workloadIdentityConfig"] == {"workloadPool": "proj-a.svc.id.goog"}
    assert cluster["addonsConfig"]["gcsFuseCsiDriverConfig"] == {"enabled": True}
    status, _, missing = call("GET", url.replace("/main", "/other"), headers=BEARER)
    assert (status, missing["error"]["status"]) == (404, "NOT_FOUND")
    status, _, denied = call("GET", url.replace("proj-a", "proj-z"), headers=BEARER)
    assert (status, denied["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, _, _ = call("GET", url)
    assert status == 401
    gke.control("POST", "config", {"clusters": [{"project": "proj-a", "location": "europe-west1", "name": "main", "status": "PROVISIONING", "workloadPool": None, "gcsFuse": False}]})
    status, _, cluster = call("GET", url, headers=BEARER)
    assert cluster["status"] == "PROVISIONING" and "workloadIdentityConfig" not in cluster
    assert cluster["addonsConfig"]["gcsFuseCsiDriverConfig"] == {"enabled": False}


def test_cloud_dns_lists_pages_and_gets_zones(gke):
    base = f"{gke.url}/dns/v1/projects/proj-a/managedZones"
    status, _, listed = call("GET", base, headers=BEARER)
    assert status == 200 and listed["kind"] == "dns#managedZonesListResponse"
    assert [(z["name"], z["dnsName"], z["visibility"]) for z in listed["managedZones"]] == [
        ("dev", "dev.example.com.", "public"),
        ("inside", "corp.example.com.", "private"),
        ("root", "example.com.", "public"),
    ]
    status, _, page = call("GET", f"{base}?maxResults=2", headers=BEARER)
    assert len(page["managedZones"]) == 2 and page["nextPageToken"]
    status, _, rest = call("GET", f"{base}?maxResults=2&pageToken={page['nextPageToken']}", headers=BEARER)
    assert [z["name"] for z in rest["managedZones"]] == ["root"] and "nextPageToken" not in rest
    status, _, zone = call("GET", f"{base}/dev", headers=BEARER)
    assert (status, zone["dnsName"]) == (200, "dev.example.com.")
    status, _, missing = call("GET", f"{base}/gone", headers=BEARER)
    assert (status, missing["error"]["status"]) == (404, "NOT_FOUND")


def test_gcp_preflight_refuses_writes_and_logs_them_as_mutating(gke):
    status, _, _ = call("POST", f"{gke.url}/dns/v1/projects/proj-a/managedZones", {"name": "x", "dnsName": "x.example.com."}, headers=BEARER)
    assert status == 501
    status, _, _ = call("DELETE", f"{gke.url}/dns/v1/projects/proj-a/managedZones/dev", headers=BEARER)
    assert status == 501
    logged = [(r["op"], r["mutating"]) for r in gke.log_lines()]
    assert logged == [("managedZones.create", True), ("dns.delete", True)]
    assert len(gke.control("GET", "state")["zones"]) == 3
