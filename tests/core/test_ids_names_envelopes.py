"""Object ids (MAC-checked), tenant/class names, and the fetch envelopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dohost.core import cbor
from dohost.core.cbor import CborError
from dohost.core.envelopes import Request, Response, decode_request, decode_response, encode_request
from dohost.core.errors import Code, DohostError
from dohost.core.ids import id_from_name, id_from_string, new_class_key, new_unique_id
from dohost.core.names import check_name

KEY_A = new_class_key()
KEY_B = new_class_key()


def test_name_ids_are_stable_and_per_class() -> None:
    a1 = id_from_name(KEY_A, "room-1")
    assert a1 == id_from_name(KEY_A, "room-1")
    assert a1.raw != id_from_name(KEY_B, "room-1").raw
    assert a1.raw != id_from_name(KEY_A, "room-2").raw
    assert len(a1.hex) == 64 and a1.name == "room-1"


def test_ids_parse_only_in_their_own_class() -> None:
    for oid in (id_from_name(KEY_A, "x"), new_unique_id(KEY_A)):
        assert id_from_string(KEY_A, oid.hex).raw == oid.raw
        with pytest.raises(DohostError) as ei:
            id_from_string(KEY_B, oid.hex)
        assert ei.value.code is Code.INVALID_ID


@pytest.mark.parametrize("text", ["", "zz" * 32, "AB" * 32, "ab" * 31, "ab" * 33, "../" * 21 + "a"])
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(DohostError) as ei:
        id_from_string(KEY_A, text)
    assert ei.value.code is Code.INVALID_ID


def test_a_forged_id_fails_the_mac() -> None:
    real = new_unique_id(KEY_A).hex
    forged = ("0" if real[0] != "0" else "1") + real[1:]
    with pytest.raises(DohostError):
        id_from_string(KEY_A, forged)


@given(st.text(max_size=50))
def test_any_name_maps_to_a_valid_id(name: str) -> None:
    try:
        oid = id_from_name(KEY_A, name)
    except DohostError as e:
        assert e.code is Code.INVALID_NAME  # e.g. lone surrogates are not UTF-8
        return
    assert id_from_string(KEY_A, oid.hex).raw == oid.raw


def test_object_names_are_limited_to_1_kib() -> None:
    id_from_name(KEY_A, "x" * 1024)
    with pytest.raises(DohostError) as ei:
        id_from_name(KEY_A, "x" * 1025)
    assert ei.value.code is Code.INVALID_NAME


@pytest.mark.parametrize("name", ["a", "acme", "my-class_2", "0" * 63])
def test_valid_names(name: str) -> None:
    assert check_name("class", name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "-x", "_x", "a/b", "..", "a.b", "x" * 64, "a\n", "é", "a\0"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(DohostError) as ei:
        check_name("tenant", name)
    assert ei.value.code is Code.INVALID_NAME


def test_request_encoding_round_trips() -> None:
    req = Request(
        "POST",
        "/a b/%2e",
        "x=1&y",
        [("Content-Type", "text/plain"), ("x-a", "1"), ("x-a", "2")],
        b"\0body",
    )
    enc = encode_request(req)
    assert cbor.decode(enc) == {
        "method": "POST",
        "path": "/a b/%2e",
        "query": "x=1&y",
        "headers": [["content-type", "text/plain"], ["x-a", "1"], ["x-a", "2"]],
        "body": b"\0body",
    }
    back = decode_request(enc)
    assert back.method == "POST" and back.header("X-A") == "1" and back.body == b"\0body"


def test_response_defaults_and_hop_by_hop_headers() -> None:
    r = decode_response(
        cbor.encode({"body": "hi", "headers": [["Content-Length", "99"], ["x-y", "z"]]})
    )
    assert r == Response(200, [("x-y", "z")], b"hi")


@pytest.mark.parametrize(
    "msg",
    [
        [],
        {"status": 99},
        {"status": 600},
        {"status": True},
        {"status": "200"},
        {"headers": {"a": "b"}},
        {"headers": [["a"]]},
        {"headers": [["bad name", "v"]]},
        {"headers": [["x", "a\r\nset-cookie: 1"]]},
        {"body": 5},
    ],
)
def test_malformed_responses_are_refused(msg: object) -> None:
    with pytest.raises(CborError):
        decode_response(cbor.encode(msg))


def test_error_codes_are_distinct_and_stable() -> None:
    # Two codes with equal (abi, http) statuses once became enum aliases of each other.
    assert len({c.code for c in Code}) == len(list(Code)) == len(Code.__members__)
    assert all(c.code == name.lower() for name, c in Code.__members__.items())
    abi = [c.abi_status for c in Code if c.abi_status is not None]
    assert len(abi) == len(set(abi))


response_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.integers(0, 1000) | st.text(max_size=3) | st.booleans(),
        "headers": st.lists(
            st.lists(
                st.text(max_size=8) | st.sampled_from(["x-a", "Content-Type", "connection"]),
                min_size=0,
                max_size=3,
            ),
            max_size=4,
        ),
        "body": st.binary(max_size=300) | st.text(max_size=50) | st.integers(-(2**63), 2**63 - 1),
        "other": st.integers(-(2**63), 2**63 - 1),
    },
)


def _outcome(data: bytes) -> object:
    try:
        return decode_response(data)
    except CborError:
        return "refused"


@given(response_like)
def test_fast_and_general_response_decoders_agree(msg: dict[str, object]) -> None:
    from dohost.core.envelopes import _decode_response_fast, _Unusual

    data = cbor.encode(msg)
    general: object
    try:
        m = cbor.decode(data)
        assert isinstance(m, dict)
        general = _outcome(data)
    except CborError:
        general = "refused"
    try:
        fast: object = _decode_response_fast(data)
    except (_Unusual, IndexError, UnicodeDecodeError):
        return  # the general path decides, which decode_response uses
    assert fast == general


@given(st.binary(max_size=120))
def test_response_decoder_never_raises_anything_but_cbor_errors(data: bytes) -> None:
    if data:
        _outcome(data)
