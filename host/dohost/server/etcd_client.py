"""An etcd v3 client for trio, over etcd's JSON gateway (grpc-gateway) with httpx.

etcd 3.4 serves its v3 API as JSON on the client port (`POST /v3/kv/range`, `/v3/kv/txn`,
`/v3/lease/grant`, ...): keys and values are base64, 64-bit integers are strings. httpx
runs on trio through anyio and is already a dependency (the S3 replica store, the API
client), so no gRPC stack is needed; ARCHITECTURE.md ("Cluster mode") has the
measurement behind the choice.

Only what the `etcd` ownership backend needs (server/ownership_etcd.py): range (one key,
a prefix), put, delete, create-if-absent and delete-if-unchanged transactions, and
leases (grant, keep-alive, revoke). Every call has a deadline.

**Endpoints and failover.** The client knows several members' addresses. A call goes to
the current endpoint; a transport failure, a timeout or an "unavailable" answer moves
to the next and tries again, until every endpoint failed once: then `cluster_unavailable`
naming what each one said. A call that timed out may have been applied (a put, a txn):
callers only retry operations whose repetition is harmless (a create-if-absent txn that
finds its own key reads it as claimed; a keep-alive; a range).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from dohost.core.errors import Code, DohostError

DEFAULT_TIMEOUT_S = 2.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with `prefix`."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"  # every key


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def of(cls, d: dict[str, Any]) -> KeyValue:
        return cls(
            _unb64(d.get("key")),
            _unb64(d.get("value")),
            int(d.get("create_revision", 0)),
            int(d.get("mod_revision", 0)),
            int(d.get("lease", 0)),
        )


def parse_endpoints(text: str) -> list[str]:
    """`etcd://HOST:PORT[,HOST:PORT...]` (or the list alone) -> base URLs. Refuses an
    empty list, a port that is not a number, and any other scheme."""
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "etcd":
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"--cluster {text!r}: the scheme must be etcd:// (etcd://HOST:PORT[,HOST:PORT])",
            )
    out: list[str] = []
    for part in rest.split(","):
        part = part.strip().rstrip("/")
        host, sep, port = part.rpartition(":")
        if not part or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"--cluster {text!r}: {part!r} is not HOST:PORT (etcd://HOST:PORT[,HOST:PORT])",
            )
        out.append(f"http://{host}:{int(port)}")
    return out


def parse_cluster_url(text: str) -> tuple[list[str], str]:
    """`etcd://HOST:PORT[,HOST:PORT...][/NAME]` -> (endpoint URLs, cluster name; "default"
    without one). Several clusters can share one etcd under different names."""
    head, sep, name = text.partition("://")
    rest = name if sep else head
    endpoints, slash, cluster = rest.partition("/")
    cluster = cluster.strip("/") if slash else "default"
    if not cluster or "/" in cluster:
        raise DohostError(
            Code.INVALID_ARGUMENT,
            f"--cluster {text!r}: the cluster name after the endpoints is one path part",
        )
    return parse_endpoints(f"{head}://{endpoints}" if sep else endpoints), cluster


class EtcdClient:
    """Calls to an etcd cluster through any of its members. One per node; safe to use
    from several trio tasks at once."""

    def __init__(self, endpoints: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not endpoints:
            raise DohostError(Code.INVALID_ARGUMENT, "no etcd endpoint given")
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self._current = 0
        # Keep-alive connections; the deadline of each call is trio's (fail_after).
        self._http = httpx.AsyncClient(
            timeout=None, limits=httpx.Limits(max_keepalive_connections=8)
        )
        self.calls = 0
        self.failovers = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def call(
        self, path: str, body: dict[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """POST one JSON request, failing over between endpoints (see the module doc)."""
        problems: list[str] = []
        limit = self.timeout_s if timeout_s is None else timeout_s
        for _ in range(len(self.endpoints)):
            i = self._current
            base = self.endpoints[i]
            self.calls += 1
            try:
                with trio.fail_after(limit):
                    r = await self._http.post(base + path, content=json.dumps(body))
                if r.status_code == 200:
                    result: dict[str, Any] = r.json()
                    return result
                problem = _gateway_error(r)
                if r.status_code < 500 and "unavailable" not in problem.lower():
                    raise DohostError(Code.INVALID_ARGUMENT, f"etcd refused {path}: {problem}")
            except trio.TooSlowError:
                problem = f"no answer within {limit:g} s"
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            except ValueError as e:  # not JSON
                problem = f"an answer that is not JSON ({e})"
            problems.append(f"{base}: {problem}")
            if self._current == i:
                self._current = (i + 1) % len(self.endpoints)
                self.failovers += 1
        raise DohostError(
            Code.CLUSTER_UNAVAILABLE,
            f"no etcd endpoint answered {path}: " + "; ".join(problems),
        )

    # ------------------------------------------------------------------ kv

    async def get(self, key: bytes) -> KeyValue | None:
        d = await self.call("/v3/kv/range", {"key": _b64(key)})
        kvs = d.get("kvs") or []
        return KeyValue.of(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: bytes) -> tuple[list[KeyValue], int]:
        """Every key under `prefix` (sorted by key) and the store's revision then."""
        d = await self.call(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        )
        kvs = [KeyValue.of(kv) for kv in d.get("kvs") or []]
        return kvs, int(d.get("header", {}).get("revision", 0))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Returns the revision of the put."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        d = await self.call("/v3/kv/put", body)
        return int(d.get("header", {}).get("revision", 0))

    async def delete(self, key: bytes) -> int:
        """Returns how many keys were deleted (0 or 1)."""
        d = await self.call("/v3/kv/deleterange", {"key": _b64(key)})
        return int(d.get("deleted", 0))

    async def create(self, key: bytes, value: bytes, *, lease: int = 0) -> tuple[bool, KeyValue]:
        """Put `key` only if it does not exist (`create_revision == 0`), in one txn that
        reads it back either way: (created, the key as it now is). Its create revision
        is the claim's epoch (server/ownership_etcd.py)."""
        k = _b64(key)
        put: dict[str, Any] = {"key": k, "value": _b64(value)}
        if lease:
            put["lease"] = str(lease)
        d = await self.call(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                ],
                "success": [{"request_put": put}, {"request_range": {"key": k}}],
                "failure": [{"request_range": {"key": k}}],
            },
        )
        created = bool(d.get("succeeded", False))
        ranges = [r["response_range"] for r in d.get("responses", []) if "response_range" in r]
        kvs = ranges[-1].get("kvs") if ranges else None
        if not kvs:  # deleted between the compare and the range: cannot be, one txn
            raise DohostError(Code.INTERNAL, f"etcd txn on {key!r} returned no key")
        return created, KeyValue.of(kvs[0])

    async def delete_if(self, key: bytes, create_revision: int) -> bool:
        """Delete `key` only if it is still the one created at `create_revision` (a
        claim is released by its holder only, never one made after it)."""
        k = _b64(key)
        d = await self.call(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": k,
                        "target": "CREATE",
                        "result": "EQUAL",
                        "create_revision": str(create_revision),
                    }
                ],
                "success": [{"request_delete_range": {"key": k}}],
            },
        )
        return bool(d.get("succeeded", False))

    async def create_many(self, items: list[tuple[bytes, bytes]], *, lease: int = 0) -> int | None:
        """Put every key only if none of them exists, in one txn: the revision of the
        txn (every key's create revision) if it succeeded, None if some key existed."""
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        for key, value in items:
            k = _b64(key)
            compare.append(
                {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
            )
            put: dict[str, Any] = {"key": k, "value": _b64(value)}
            if lease:
                put["lease"] = str(lease)
            success.append({"request_put": put})
        d = await self.call("/v3/kv/txn", {"compare": compare, "success": success})
        if not d.get("succeeded", False):
            return None
        return int(d.get("header", {}).get("revision", 0))

    async def delete_many_if(self, items: list[tuple[bytes, int]]) -> bool:
        """Delete every key only if each still has its create revision, in one txn."""
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        for key, revision in items:
            k = _b64(key)
            compare.append(
                {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}
            )
            success.append({"request_delete_range": {"key": k}})
        d = await self.call("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(d.get("succeeded", False))

    # ------------------------------------------------------------------ leases

    async def lease_grant(self, ttl_s: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        d = await self.call("/v3/lease/grant", {"TTL": str(ttl_s)})
        if d.get("error"):
            raise DohostError(Code.CLUSTER_UNAVAILABLE, f"etcd granted no lease: {d['error']}")
        return int(d["ID"]), int(d["TTL"])

    async def lease_keepalive(self, lease: int, *, timeout_s: float | None = None) -> int:
        """Renew a lease; returns its TTL from now in seconds, 0 if it has expired (or
        was revoked): then nothing held under it exists any more."""
        d = await self.call("/v3/lease/keepalive", {"ID": str(lease)}, timeout_s=timeout_s)
        result = d.get("result") or {}
        return int(result.get("TTL", 0))

    async def lease_revoke(self, lease: int) -> None:
        """End a lease now: every key held under it is deleted."""
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except DohostError as e:
            if "not found" not in e.message:
                raise


def _gateway_error(r: httpx.Response) -> str:
    try:
        d = r.json()
        msg = d.get("error") or d.get("message") or r.text
    except ValueError:
        msg = r.text
    return f"HTTP {r.status_code}: {str(msg)[:200]}"
