"""HTTP API v1: the routes for watching and inspecting a tenant's objects.

    GET  /v1/tail?class=&object=&status=&logs=0    tenant: a stream of NDJSON records
    GET  /v1/alarms?class=                         tenant: pending alarms
    POST /v1/classes/{class}/objects/{name}/storage/sql   (ids/{id} alike) tenant:
         {"sql": "SELECT ...", "params": [...]} read-only, on a sqlite-backed object

The tail stream holds one record per line (server/tail.py, `TailRecord.to_json`) and a
heartbeat (an empty line) every 15 s, so a client notices a dead server and a proxy
keeps the connection; it ends when the client goes away or the server stops.

With `serve --processes N` both answer for the whole host, whichever node a request
lands on: the tail merges every node's stream (each other node's own stream, filtered
there, through `GET /_node/tail` on its Unix socket, followed across its restarts), and
the alarms are every node's (`GET /_node/alarms`), earliest first; a node that does not
answer makes the listing 503 `owner_unavailable` rather than silently short.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import trio

from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.server.api_util import MethodNotAllowed, json_body, json_response, query_params
from dohost.server.http_types import HttpRequest, HttpResponse, StreamResponse, StreamWriter
from dohost.server.node import ALARMS_PATH, TAIL_PATH
from dohost.server.state import ServerState
from dohost.server.tail import SUBSCRIBER_BUFFER, TailFilter, TailRecord
from dohost.server.tenancy import Principal
from dohost.storage import sql_inspect

ROUTES = ("/v1/tail", "/v1/alarms")
HEARTBEAT_S = 15.0


async def handle(
    state: ServerState, req: HttpRequest, principal: Principal, path: str
) -> HttpResponse:
    tenant = principal.tenant
    assert tenant is not None
    if req.method != "GET":
        raise MethodNotAllowed(req.method, "GET")
    params = query_params(req.query)
    class_name = params.get("class") or None
    scope = principal.scope
    if scope is not None:
        # Inspection, not object traffic; a token limited to some classes names one.
        scope.check(class_name, False, req.method)
        if scope.classes is not None and class_name is None:
            raise DohostError(
                Code.FORBIDDEN, "this token is limited to some classes: pass ?class=NAME"
            )
    if class_name is not None:
        state.host.class_info(tenant, class_name)  # an unknown class is 404
    if path == "/v1/alarms":
        return await _alarms(state, tenant, class_name)
    return _tail(state, tenant, class_name, params)


async def _alarms(state: ServerState, tenant: str, class_name: str | None) -> HttpResponse:
    alarms = node_alarms(state, tenant, class_name)
    if state.node is not None:
        query = {"tenant": tenant} | ({} if class_name is None else {"class": class_name})
        for peer, body in await state.node.ask_peers(ALARMS_PATH + "?" + urlencode(query)):
            if body is None:
                raise DohostError(
                    Code.OWNER_UNAVAILABLE,
                    f"node {peer} did not answer, so its objects' alarms cannot be listed "
                    "now; retry in a moment",
                )
            alarms += json.loads(body)["alarms"]
        alarms.sort(key=lambda a: (a["due_ms"], a["class"], a["id"]))
    return json_response(200, {"alarms": alarms})


def node_alarms(state: ServerState, tenant: str, class_name: str | None) -> list[dict[str, Any]]:
    """This node's pending alarms of a tenant (all of them with one process)."""
    return [
        {
            "class": e.class_name,
            "id": e.object_id.hex(),
            "name": e.name,
            "due_ms": due,
            "retry_count": retries,
        }
        for e, due, retries in state.host.pending_alarms(tenant, class_name)
    ]


def _tail(
    state: ServerState, tenant: str, class_name: str | None, params: dict[str, str]
) -> HttpResponse:
    status = params.get("status") or None
    if status is not None and status not in ("ok", "error") and not status.isdigit():
        raise DohostError(Code.INVALID_ARGUMENT, "status must be ok, error or a number")
    flt = tail_filter(params, tenant)
    node = state.node
    query = urlencode({k: v for k, v in params.items() if k in _TAIL_PARAMS} | {"tenant": tenant})
    return tail_response(state, flt, [] if node is None else node.others(), query)


_TAIL_PARAMS = ("class", "object", "status", "logs")


def tail_filter(params: dict[str, str], tenant: str) -> TailFilter:
    return TailFilter(
        tenant=tenant,
        class_name=params.get("class") or None,
        object=params.get("object") or None,
        status=params.get("status") or None,
        logs=params.get("logs", "1") != "0",
    )


def tail_response(
    state: ServerState, flt: TailFilter, peers: list[int], query: str
) -> StreamResponse:
    """This node's records matching `flt`, and those of `peers` (relayed, `query`
    asking each for the same filter), as one NDJSON stream with heartbeats."""
    hub = state.host.tail
    node = state.node

    async def produce(write: StreamWriter) -> None:
        send, lines = trio.open_memory_channel[bytes](SUBSCRIBER_BUFFER)
        with hub.subscribe(flt) as records:
            await write(b"\n")  # the head and a first byte: the client knows it is on
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_encode_records, records, send.clone())
                for peer in peers:
                    assert node is not None
                    target = TAIL_PATH + "?" + query
                    nursery.start_soon(node.relay_tail, peer, target, send.clone())
                while True:
                    with trio.move_on_after(HEARTBEAT_S):
                        await write(await lines.receive())
                        continue
                    await write(b"\n")

    return StreamResponse(
        200,
        [("content-type", "application/x-ndjson"), ("cache-control", "no-store")],
        produce=produce,
    )


async def _encode_records(
    records: trio.MemoryReceiveChannel[TailRecord], send: trio.MemorySendChannel[bytes]
) -> None:
    async with send:
        async for record in records:
            await send.send(json.dumps(record.to_json()).encode() + b"\n")


async def sql(
    state: ServerState, req: HttpRequest, tenant: str, class_name: str, oid: ObjectId
) -> HttpResponse:
    if req.method != "POST":
        raise MethodNotAllowed(req.method, "POST")
    body = json_body(req.body)
    text = body.get("sql")
    params: Any = body.get("params", [])
    if not isinstance(text, str) or not text.strip():
        raise DohostError(Code.INVALID_ARGUMENT, 'give the query as {"sql": "SELECT ..."}')
    if not isinstance(params, list):
        raise DohostError(Code.INVALID_ARGUMENT, "params must be a list")
    info = state.host.class_info(tenant, class_name)
    if info.storage != "sqlite":
        raise DohostError(
            Code.NOT_SUPPORTED,
            f"class {class_name} uses kv storage, which has no SQL; `dohost storage` shows "
            "its keys (SQL needs a class deployed with --storage sqlite)",
        )
    path = state.host.storage.sqlite_path(tenant, class_name, oid.raw)
    result = await trio.to_thread.run_sync(sql_inspect.query, path, text, params)
    return json_response(
        200,
        {
            "class": class_name,
            "id": oid.hex,
            "columns": result.columns,
            "rows": result.rows,
            "truncated": result.truncated,
        },
    )
