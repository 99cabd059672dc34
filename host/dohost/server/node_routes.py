"""The routes only a node's Unix socket serves (server/node.py): object calls from
objects of other nodes, and this node's own metrics for the node that renders the
host's.

    POST /_node/call      x-dohost-call: {"tenant", "class", "id", "name", "chain"}
                          body: the call's request (CBOR, as the guest sent it, with the
                          caller headers) -> 200 the callee's response (CBOR), or the
                          error of a call that could not be made (JSON, its code)
    GET  /_node/metrics   -> this node's metrics alone
"""

from __future__ import annotations

import json
from typing import Any

from dohost.core.envelopes import encode_response
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.server.api_util import error_response, not_found
from dohost.server.http_types import HttpRequest, HttpResponse
from dohost.server.metrics import CONTENT_TYPE as METRICS_TYPE
from dohost.server.node import CALL_HEADER, CALL_PATH, METRICS_PATH, NodeContext
from dohost.server.state import ServerState


async def handle(state: ServerState, node: NodeContext, req: HttpRequest) -> HttpResponse:
    if req.path == METRICS_PATH and req.method == "GET":
        return HttpResponse(200, [("content-type", METRICS_TYPE)], state.metrics.render())
    if req.path == CALL_PATH and req.method == "POST":
        return await _call(state, node, req)
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
