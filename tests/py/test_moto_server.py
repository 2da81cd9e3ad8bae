"""Self-test of moto_server.py (run by scripts/test with the stand-ins' tests): a
CreateBucket's tags are applied with the create, and only by the call that created the
bucket."""

import http.client
import os
import socket
import subprocess
import sys
import time

import pytest

SERVER = os.path.join(os.path.dirname(__file__), "moto_server.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, SERVER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        try:
            call(port, "GET", "/moto-api/")
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto_server.py did not start")
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(10)


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Length": str(len(body or b""))}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def create_body(tags, region=None):
    location = f"<LocationConstraint>{region}</LocationConstraint>" if region else ""
    tag_xml = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in tags.items())
    tags_xml = f"<Tags>{tag_xml}</Tags>" if tags else ""
    return (
        '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{location}{tags_xml}</CreateBucketConfiguration>"
    ).encode()


def test_tags_of_the_create_are_on_the_bucket(moto):
    status, _ = call(moto, "PUT", "/tagged-at-create", create_body({"managed-by": "strata", "team": "data"}))
    assert status == 200
    status, body = call(moto, "GET", "/tagged-at-create?tagging")
    assert status == 200
    assert "<Key>managed-by</Key><Value>strata</Value>" in body
    assert "<Key>team</Key><Value>data</Value>" in body


def test_tags_with_a_location_constraint(moto):
    status, _ = call(moto, "PUT", "/tagged-in-eu", create_body({"managed-by": "strata"}, "eu-west-1"))
    assert status == 200
    status, body = call(moto, "GET", "/tagged-in-eu?tagging")
    assert status == 200
    assert "<Key>managed-by</Key><Value>strata</Value>" in body


def test_a_repeated_create_leaves_the_existing_tags_alone(moto):
    assert call(moto, "PUT", "/created-once", create_body({"owner": "first"}))[0] == 200
    # us-east-1 answers a repeat by the owner with 200 and changes nothing.
    call(moto, "PUT", "/created-once", create_body({"owner": "second"}))
    status, body = call(moto, "GET", "/created-once?tagging")
    assert status == 200
    assert "<Value>first</Value>" in body
    assert "second" not in body


def test_a_create_without_tags_leaves_the_bucket_untagged(moto):
    assert call(moto, "PUT", "/no-tags", b"")[0] == 200
    status, body = call(moto, "GET", "/no-tags?tagging")
    assert status == 404, body
    assert "NoSuchTagSet" in body


def test_a_drops_tags_bucket_keeps_motos_own_behaviour(moto):
    assert call(moto, "PUT", "/it-drops-tags-1", create_body({"managed-by": "strata"}))[0] == 200
    status, body = call(moto, "GET", "/it-drops-tags-1?tagging")
    assert status == 404, body
