"""AWS Signature Version 4 for S3 requests, as a pure function.

The replica store talks to S3-compatible storage through httpx (already a dependency, and
usable from trio as well as from threads) rather than boto3: ARCHITECTURE.md,
"Replication", has the measurement. This module computes the headers one request needs:
`x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (temporary credentials) and
`Authorization`. The time is an argument (no clock here); the payload is signed by its
SHA-256, so a body altered in transit is refused by the server.

Reference: the AWS documentation "Signature Version 4 signing process" and its S3 examples
(tests/core/test_sigv4.py checks the published GET Object example).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret in a log or a traceback
        return f"Credentials(access_key={self.access_key!r}, secret_key=***)"


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else
    %XX in upper case; '/' kept in a path, encoded in a query."""
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


def canonical_query(params: dict[str, str]) -> str:
    pairs = sorted(
        (uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False))
        for k, v in params.items()
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret_key).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def amz_date(unix_seconds: float) -> str:
    t = datetime.datetime.fromtimestamp(int(unix_seconds), datetime.UTC)
    return t.strftime("%Y%m%dT%H%M%SZ")


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    unix_seconds: float,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to add to a request (`headers` are extra ones to sign, such as
    `if-none-match` or `range`). `path` is the decoded path ("/bucket/key"), encoded
    here once; `host` is the Host header as sent (with its port if not the default)."""
    stamp = amz_date(unix_seconds)
    date = stamp[:8]
    added = {"x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    to_sign = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    to_sign.update(added)
    to_sign["host"] = host
    names = sorted(to_sign)
    signed_headers = ";".join(names)
    canonical_headers = "".join(f"{n}:{to_sign[n]}\n" for n in names)
    canonical_request = "\n".join(
        (
            method,
            uri_encode(path, keep_slash=True),
            canonical_query(query),
            canonical_headers,
            signed_headers,
            payload_sha256,
        )
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    key = signing_key(credentials.secret_key, date, region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return added
