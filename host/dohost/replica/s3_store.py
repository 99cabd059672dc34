"""`s3://bucket/prefix`: a replica store on S3-compatible object storage.

A small client over httpx with our own SigV4 signer (core/sigv4.py) rather than boto3:
ARCHITECTURE.md, "Replication", has the measurement that chose it. Path-style addressing
(`endpoint/bucket/key`), which S3-compatible servers (SeaweedFS, MinIO, Ceph) and AWS all
accept. Create-only writes are `PUT` with `If-None-Match: *`; a taken key answers 412
(AWS answers 409 while a conflicting conditional write is in flight: reported as a
failure to retry, after which the loser sees 412). One attempt per call: retries and
their pacing are the caller's, which knows whether it is waiting for an acknowledgement.

Thread-safe: httpx's connection pool is shared by the threads that call the store.
"""

from __future__ import annotations

import hashlib
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import check_key, check_prefix
from dohost.core.sigv4 import Credentials, canonical_query, sign, uri_encode
from dohost.replica.store import ReplicaKeyExists, S3Options, replica_unavailable

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DEFAULT_REGION = "us-east-1"
_NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}


def _bad(message: str) -> DohostError:
    return DohostError(Code.INVALID_ARGUMENT, message)


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """S3's error code and message from an error body (XML), if there is one."""
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError:
        return "", response.text[:200]
    code = root.findtext("Code") or ""
    return code, root.findtext("Message") or ""


class S3ReplicaStore:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        options: S3Options,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise _bad(f"{bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
        if prefix:
            check_key(prefix)
        if not options.access_key or not options.secret_key:
            raise _bad(
                "an s3:// replica needs credentials: --replica-access-key and "
                "--replica-secret-key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        self.region = options.region or DEFAULT_REGION
        endpoint = options.endpoint or f"https://s3.{self.region}.amazonaws.com"
        url = httpx.URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise _bad(f"{endpoint!r} is not an S3 endpoint (http[s]://host[:port])")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self._origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        self._host = url.netloc.decode("ascii")
        self._credentials = Credentials(
            options.access_key, options.secret_key, options.session_token
        )
        self._clock = clock
        self._client = httpx.Client(timeout=options.timeout_s, follow_redirects=False)
        self.page_size = 1000  # keys per ListObjectsV2 answer (S3's maximum)
        self.pages_listed = 0
        self.description = f"s3://{bucket}/{prefix} at {self._origin}"

    # ------------------------------------------------------------------ requests

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        query = query or {}
        extra = headers or {}
        signed = sign(
            method=method,
            host=self._host,
            path=path,
            query=query,
            headers=extra,
            payload_sha256=hashlib.sha256(body).hexdigest(),
            credentials=self._credentials,
            region=self.region,
            unix_seconds=self._clock(),
        )
        url = self._origin + uri_encode(path, keep_slash=True)
        if query:
            url += "?" + canonical_query(query)
        try:
            return self._client.request(
                method, url, content=body, headers={**extra, **signed, "host": self._host}
            )
        except httpx.HTTPError as e:
            raise replica_unavailable(
                f"replica store {self.description}: {what} failed: {type(e).__name__}: {e}"
            ) from e

    def _failure(self, what: str, response: httpx.Response) -> DohostError:
        code, message = _error_detail(response)
        return replica_unavailable(
            f"replica store {self.description}: {what} failed: HTTP {response.status_code}"
            f" {code} {message}".rstrip()
        )

    def _object_path(self, key: str) -> str:
        return f"/{self.bucket}/{self.prefix}{check_key(key)}"

    # ---------------------------------------------------------------- operations

    def put_new(self, key: str, data: bytes) -> None:
        what = f"writing {key!r}"
        r = self._request(
            "PUT", self._object_path(key), what, body=data, headers={"if-none-match": "*"}
        )
        if r.status_code == 412:
            raise ReplicaKeyExists(f"{key!r} ({self.description})")
        if r.status_code != 200:
            raise self._failure(what, r)

    def get(self, key: str) -> bytes:
        what = f"reading {key!r}"
        r = self._request("GET", self._object_path(key), what)
        if r.status_code == 200:
            return r.content
        if r.status_code == 404 and _error_detail(r)[0] in ("NoSuchKey", ""):
            raise DohostError(
                Code.NOT_FOUND, f"{key!r} is not in the replica store {self.description}"
            )
        raise self._failure(what, r)

    def list(self, prefix: str) -> list[str]:
        what = f"listing {prefix!r}"
        full = self.prefix + check_prefix(prefix)
        keys: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": full, "max-keys": str(self.page_size)}
            if token is not None:
                query["continuation-token"] = token
            r = self._request("GET", f"/{self.bucket}", what, query=query)
            self.pages_listed += 1
            if r.status_code != 200:
                raise self._failure(what, r)
            try:
                root = ET.fromstring(r.content)
            except ET.ParseError as e:
                raise replica_unavailable(
                    f"replica store {self.description}: {what}: unreadable answer ({e})"
                ) from e
            for item in root.iterfind("s3:Contents", _NS):
                key = item.findtext("s3:Key", "", _NS)
                if key.startswith(self.prefix):
                    keys.append(key[len(self.prefix) :])
            token = root.findtext("s3:NextContinuationToken", None, _NS)
            truncated = root.findtext("s3:IsTruncated", "", _NS) == "true"
            if not truncated or token is None:
                break
        keys.sort()
        return keys

    def delete(self, key: str) -> None:
        what = f"deleting {key!r}"
        r = self._request("DELETE", self._object_path(key), what)
        if r.status_code not in (200, 204, 404):
            raise self._failure(what, r)

    def create_bucket(self) -> None:
        """Create the bucket (tests and first-time setup); an existing one of ours is fine."""
        what = f"creating bucket {self.bucket!r}"
        r = self._request("PUT", f"/{self.bucket}", what)
        if r.status_code == 200:
            return
        if r.status_code == 409 and _error_detail(r)[0] == "BucketAlreadyOwnedByYou":
            return
        raise self._failure(what, r)

    def close(self) -> None:
        self._client.close()
