"""SigV4 against the examples AWS publishes for S3 ("Signature Calculations for the
Authorization Header", GET Object / PUT Object / GET Bucket), byte for byte. The
replica tests then have a real server (SeaweedFS) check our signatures."""

from __future__ import annotations

import calendar
import hashlib
import time

from dohost.core.sigv4 import EMPTY_SHA256, Credentials, canonical_query, sign, uri_encode

CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
WHEN = calendar.timegm(time.strptime("20130524T000000Z", "%Y%m%dT%H%M%SZ"))
HOST = "examplebucket.s3.amazonaws.com"


def _signature(headers: dict[str, str]) -> str:
    return headers["authorization"].rpartition("Signature=")[2]


def test_get_object_example() -> None:
    h = sign(
        method="GET",
        host=HOST,
        path="/test.txt",
        query={},
        headers={"Range": "bytes=0-9"},
        payload_sha256=EMPTY_SHA256,
        credentials=CREDS,
        region="us-east-1",
        unix_seconds=WHEN,
    )
    assert h["x-amz-date"] == "20130524T000000Z"
    assert h["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="
    )
    assert _signature(h) == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_put_object_example_encodes_the_path_once() -> None:
    body = b"Welcome to Amazon S3."
    h = sign(
        method="PUT",
        host=HOST,
        path="/test$file.text",
        query={},
        headers={
            "Date": "Fri, 24 May 2013 00:00:00 GMT",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
        },
        payload_sha256=hashlib.sha256(body).hexdigest(),
        credentials=CREDS,
        region="us-east-1",
        unix_seconds=WHEN,
    )
    assert _signature(h) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_get_bucket_example_sorts_and_encodes_the_query() -> None:
    h = sign(
        method="GET",
        host=HOST,
        path="/",
        query={"prefix": "J", "max-keys": "2"},
        headers={},
        payload_sha256=EMPTY_SHA256,
        credentials=CREDS,
        region="us-east-1",
        unix_seconds=WHEN,
    )
    assert _signature(h) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_encoding_rules() -> None:
    assert uri_encode("/a b/c~d$e", keep_slash=True) == "/a%20b/c~d%24e"
    assert uri_encode("a/b", keep_slash=False) == "a%2Fb"
    assert canonical_query({"b": "2", "a": "x y", "list-type": "2"}) == "a=x%20y&b=2&list-type=2"


def test_a_session_token_is_sent_and_signed_and_the_secret_never_printed() -> None:
    creds = Credentials("AK", "SECRET", session_token="TOKEN")
    h = sign(
        method="GET",
        host="127.0.0.1:8333",
        path="/b/k",
        query={},
        headers={},
        payload_sha256=EMPTY_SHA256,
        credentials=creds,
        region="us-east-1",
        unix_seconds=WHEN,
    )
    assert h["x-amz-security-token"] == "TOKEN"
    assert "x-amz-security-token" in h["authorization"]
    assert "SECRET" not in repr(creds)
