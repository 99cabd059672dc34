"""Decoders stop at their limit before doing work proportional to the guest's numbers
(issue 15): item budgets, counts read from a message's head, response header limits."""

from __future__ import annotations

import time

import pytest

from dohost.core import cbor
from dohost.core.envelopes import MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADERS, decode_response
from dohost.core.errors import Code, DohostError
from dohost.core.websocket import decode_tags


def test_an_item_budget_stops_before_decoding() -> None:
    data = cbor.encode([b""] * 1_000_000)
    t0 = time.perf_counter()
    with pytest.raises(cbor.CborTooMany) as e:
        cbor.decode(data, 129)
    assert time.perf_counter() - t0 < 0.05  # (the full decode takes ~0.3 s)
    assert e.value.code is Code.LIMIT_EXCEEDED
    nested = {"a": [1, 2, {"b": b"x"}]}  # 8 items
    assert cbor.decode(cbor.encode(nested), 8) == nested
    with pytest.raises(cbor.CborTooMany):
        cbor.decode(cbor.encode(nested), 7)


def test_malformed_input_is_left_to_the_decoder() -> None:
    deep = b"\x81" * 2000 + b"\x00"  # nested past MAX_DEPTH: bad_encoding, not a count
    with pytest.raises(cbor.CborError, match="nested deeper"):
        cbor.decode(deep, 300)
    with pytest.raises(cbor.CborError, match="longer than its input"):
        cbor.decode(b"\x9a\x00\x0f\x42\x40", 10)  # a claimed count and nothing behind it


def test_head_count() -> None:
    assert cbor.head_count(b"\x9a\x00\x0f\x42\x40") == 1_000_000
    assert cbor.head_count(cbor.encode({"a": 1})) == 1
    assert cbor.head_count(b"\x40") is None and cbor.head_count(b"") is None


def _response(headers: list[list[str]]) -> bytes:
    return cbor.encode({"status": 200, "headers": headers, "body": b""})


def test_response_headers_have_a_count_and_a_size_limit() -> None:
    ok = decode_response(_response([["x-a", "b"]] * MAX_RESPONSE_HEADERS))
    assert len(ok.headers) == MAX_RESPONSE_HEADERS
    for headers in (
        [["x-a", "b"]] * (MAX_RESPONSE_HEADERS + 1),
        [["x-a", "b"]] * 10_000,
        [["x-a", "v" * (MAX_RESPONSE_HEADER_BYTES // 2)]] * 2,
    ):
        with pytest.raises(DohostError) as e:
            decode_response(_response(headers))
        assert e.value.code is Code.LIMIT_EXCEEDED, e.value


def test_websocket_tags_are_counted_from_the_head() -> None:
    with pytest.raises(ValueError, match="invalid_argument"):
        decode_tags(cbor.encode(["t"] * 100_000))
    assert decode_tags(cbor.encode(["t"] * 40)) == ("t",)  # repeats collapse
