"""The routes only a node's Unix socket serves (server/node.py): object calls from
objects of other nodes, and this node's own metrics for the node that renders the
host's.

    POST /_node/call      x-dohost-call: {"tenant", "class", "id", "name", "chain"}
                          body: the call's request (CBOR, as the guest sent it, with the
                          caller headers) -> 200 the callee's response (CBOR), or the
                          error of a call that could not be made (JSON, its code)
    GET  /_node/metrics   -> this node's metrics alone
    GET  /_node/alarms?tenant=T[&class=C]   -> {"alarms": [...]} of this node's objects
    GET  /_node/tail?tenant=T[&class=&object=&status=&logs=]
                          -> this node's own tail stream (NDJSON, chunked), filtered
    GET  /_node/status    -> {"events": in flight, "websockets": open} (the parent's
                          shutdown message)
    POST /_node/class     a step of another node's class delete or rename
                          (server/class_nodes.py)

These routes trust the tenant they are given: only the nodes and their parent can
connect to the socket (mode 0600 in DATA/run/, 0700).
"""

from __future__ import annotations

import json
from typing import Any

from dohost.core.envelopes import encode_response
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.server import api_dev
from dohost.server.api_util import (
    error_response,
    json_body,
    json_response,
    not_found,
    query_params,
)
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.metrics import CONTENT_TYPE as METRICS_TYPE
from dohost.server.node import (
    ALARMS_PATH,
    CALL_HEADER,
    CALL_PATH,
    CLASS_PATH,
    METRICS_PATH,
    STATUS_PATH,
    TAIL_PATH,
    NodeContext,
)
from dohost.server.state import ServerState


async def handle(state: ServerState, node: NodeContext, req: HttpRequest) -> HttpResponse:
    if req.path == METRICS_PATH and req.method == "GET":
        return HttpResponse(200, [("content-type", METRICS_TYPE)], state.metrics.render())
    if req.path == CALL_PATH and req.method == "POST":
        return await _call(state, node, req)
    if req.method == "GET" and req.path in (ALARMS_PATH, TAIL_PATH):
        params = query_params(req.query)
        tenant = params.get("tenant")
        if not tenant:
            raise DohostError(Code.BAD_REQUEST, f"{req.path} needs ?tenant=")
        if req.path == ALARMS_PATH:
            alarms = api_dev.node_alarms(state, tenant, params.get("class") or None)
            return json_response(200, {"alarms": alarms})
        return api_dev.tail_response(state, api_dev.tail_filter(params, tenant), [], "")
    if req.path == STATUS_PATH and req.method == "GET":
        host = state.host
        status = {
            "events": host.supervisor.events_in_flight(),
            "websockets": host.websockets.open_count(),
        }
        return json_response(200, status)
    if req.path == CLASS_PATH and req.method == "POST" and state.class_holds is not None:
        return json_response(200, await state.class_holds.handle(json_body(req.body)))
    raise not_found(req.path)


async def _call(state: ServerState, node: NodeContext, req: HttpRequest) -> HttpResponse:
    try:
        meta: dict[str, Any] = json.loads(req.header(CALL_HEADER) or "")
        tenant = str(meta["tenant"])
        class_name = str(meta["class"])
        raw = bytes.fromhex(str(meta["id"]))
        name = meta.get("name")
        chain = [(str(c), bytes.fromhex(str(i)), n) for c, i, n in meta["chain"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DohostError(Code.BAD_REQUEST, f"malformed node call: {e}") from None
    if not node.owns(raw):
        raise DohostError(Code.NOT_OWNER, f"node {node.name} does not own the called object")
    host = state.host
    try:
        oid = host.classes.get(tenant, class_name).verified_id(
            ObjectId(raw, name if isinstance(name, str) else None)
        )
    except DohostError as e:
        return error_response(DohostError(Code.CALL_FAILED, f"call to {class_name}: {e.message}"))
    got = await host.supervisor.calls.deliver_remote(tenant, class_name, oid, req.body, chain)
    if isinstance(got, DohostError):
        return error_response(got)
    return HttpResponse(200, [("content-type", "application/cbor")], encode_response(got))
