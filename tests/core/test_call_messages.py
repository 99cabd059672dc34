"""core/calls.py: the call target and request a guest passes to `call` (abi/call.cddl,
abi/request.cddl), and the error response a failed callee becomes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dohost.core import cbor
from dohost.core.calls import (
    MAX_CALL_BODY_BYTES,
    CallTarget,
    chain_text,
    decode_call_request,
    decode_target,
    error_response,
)
from dohost.core.envelopes import Request
from dohost.core.errors import Code, DohostError


def test_targets_by_name_and_by_id() -> None:
    assert decode_target(cbor.encode({"class": "k", "name": "a"})) == CallTarget("k", "a")
    t = decode_target(cbor.encode({"class": "k", "id": "ab" * 32, "future": 1}))
    assert t == CallTarget("k", None, "ab" * 32)
    assert t.label() == "k/#" + "ab" * 8
    assert CallTarget("k", "room 1").label() == "k/room 1"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ([], "must be a CBOR map"),
        ({"name": "a"}, '"class"'),
        ({"class": 1, "name": "a"}, '"class"'),
        ({"class": "k"}, "exactly one"),
        ({"class": "k", "name": "a", "id": "b"}, "exactly one"),
        ({"class": "k", "name": b"a"}, '"name" must be text'),
        ({"class": "k", "id": 7}, '"id" must be text'),
    ],
)
def test_bad_targets(value: Any, text: str) -> None:
    with pytest.raises(DohostError) as ei:
        decode_target(cbor.encode(value))
    assert ei.value.code is Code.BAD_ENCODING
    assert text in ei.value.message


def test_bad_cbor_is_bad_encoding() -> None:
    with pytest.raises(DohostError) as ei:
        decode_target(b"\xff")
    assert ei.value.code is Code.BAD_ENCODING


def test_requests_take_defaults_and_lower_case_header_names() -> None:
    assert decode_call_request(cbor.encode({})) == Request("GET", "/", "", [], b"")
    r = decode_call_request(
        cbor.encode(
            {
                "method": "POST",
                "path": "/a/b%20c",
                "query": "x=1&y",
                "headers": [["X-Thing", "v"], ["x-thing", "w"]],
                "body": "text body",
                "unknown": [1, 2],
            }
        )
    )
    assert r == Request(
        "POST", "/a/b%20c", "x=1&y", [("x-thing", "v"), ("x-thing", "w")], b"text body"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ([], "must be a CBOR map"),
        ({"method": ""}, "method"),
        ({"method": "GET /"}, "method"),
        ({"method": 1}, "method"),
        ({"path": "relative"}, "path"),
        ({"path": "/a b"}, "path"),
        ({"path": "/a\nb"}, "path"),
        ({"query": "a b"}, "query"),
        ({"headers": {}}, "headers must be an array"),
        ({"headers": [["a"]]}, "[text, text] pair"),
        ({"headers": [["bad name", "v"]]}, "not a valid HTTP header"),
        ({"headers": [["x", "a\r\nb"]]}, "not a valid HTTP header"),
        ({"headers": [["x", "v"]] * 101}, "limit is 100"),
        ({"body": 3}, "body"),
    ],
)
def test_bad_requests(value: Any, text: str) -> None:
    with pytest.raises(DohostError) as ei:
        decode_call_request(cbor.encode(value))
    assert ei.value.code is Code.BAD_ENCODING
    assert text in ei.value.message


def test_a_body_above_the_http_limit_is_value_too_large() -> None:
    with pytest.raises(DohostError) as ei:
        decode_call_request(cbor.encode({"body": b"x" * (MAX_CALL_BODY_BYTES + 1)}))
    assert ei.value.code is Code.VALUE_TOO_LARGE


def test_error_response_is_what_the_front_door_answers() -> None:
    r = error_response(DohostError(Code.CPU_LIMIT, "exceeded the CPU time limit"))
    assert r.status == 500
    assert r.header("content-type") == "application/json"
    assert json.loads(r.body) == {
        "error": {"code": "cpu_limit", "message": "exceeded the CPU time limit"}
    }


def test_chain_text() -> None:
    assert chain_text(["k/a", "k/b", "k/a"]) == "k/a → k/b → k/a"
