"""The CBOR codec: round trips, RFC 8949 vectors, and refusal of hostile input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dohost.core import cbor
from dohost.core.cbor import CborError
from dohost.core.errors import Code

# (value, hex) pairs from RFC 8949 appendix A.
VECTORS = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"),
    ([], "80"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
]


@pytest.mark.parametrize(("value", "hexstr"), VECTORS)
def test_rfc_vectors(value: object, hexstr: str) -> None:
    assert cbor.encode(value) == bytes.fromhex(hexstr)
    assert cbor.decode(bytes.fromhex(hexstr)) == value


def test_floats_of_every_width_decode() -> None:
    assert cbor.decode(bytes.fromhex("f93c00")) == 1.0
    assert cbor.decode(bytes.fromhex("fa47c35000")) == 100000.0
    assert cbor.decode(bytes.fromhex("fb3ff199999999999a")) == 1.1
    assert math.isinf(cbor.decode(bytes.fromhex("f97c00")))


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text() | st.binary(), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(json_like)
def test_round_trip(value: object) -> None:
    assert cbor.decode(cbor.encode(value)) == value


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_refuse_cleanly(data: bytes) -> None:
    try:
        cbor.decode(data)
    except CborError as e:
        assert e.code is Code.BAD_ENCODING


@pytest.mark.parametrize(
    ("hexstr", "why"),
    [
        ("", "truncated"),
        ("18", "truncated"),
        ("5f", "indefinite"),
        ("9f01ff", "indefinite"),
        ("c11a514b67b0", "tags"),
        ("f7", "simple"),
        ("62c3", "past the end"),
        ("62c328", "UTF-8"),
        ("0000", "trailing"),
        ("9bffffffffffffffff", "longer than its input"),
        ("bbffffffffffffffff", "longer than its input"),
        ("5bffffffffffffffff", "past the end"),
        ("a18001", "map keys"),
        ("1c", "reserved"),
    ],
)
def test_hostile_inputs_are_refused(hexstr: str, why: str) -> None:
    with pytest.raises(CborError) as ei:
        cbor.decode(bytes.fromhex(hexstr))
    assert why.lower() in ei.value.message.lower()


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(CborError, match="nested deeper"):
        cbor.decode(b"\x81" * 10_000 + b"\x00")


def test_integers_beyond_64_bits_do_not_encode() -> None:
    with pytest.raises(CborError):
        cbor.encode(2**64)
    with pytest.raises(CborError):
        cbor.encode(object())
