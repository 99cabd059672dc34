"""Fuzzing the pure parsers a hostile guest or client reaches first: the CBOR codec, the
fetch envelopes, object ids and tenant/class/object names.

tests/core/ has the fixed vectors and a few small properties (round trip of JSON-like
values, raw random bytes into the decoders). This file adds what those do not cover:
mutations of *valid* encodings (random bytes mostly die at the first byte), every proper
prefix and every trailing suffix, nesting depth at and around the limit, re-encoding
stability of whatever decodes, the hand-written request encoder against the generic
codec, safety invariants of any response a guest can get accepted, and ids and names
against arbitrary text. Every property: nothing but the documented error type escapes.
"""

from __future__ import annotations

import os.path
import re
import string
from typing import Any

from fuzz_support import budgets, run_property
from hypothesis import strategies as st

from dohost.core import cbor
from dohost.core.cbor import MAX_DEPTH, CborError
from dohost.core.envelopes import (
    HOP_BY_HOP,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from dohost.core.errors import Code, DohostError
from dohost.core.ids import (
    ID_HEX_CHARS,
    MAX_OBJECT_NAME_BYTES,
    ObjectId,
    check_object_name,
    id_from_name,
    id_from_string,
    new_class_key,
    new_unique_id,
)
from dohost.core.names import check_name
from dohost.server.http_server import _encode_response
from dohost.server.http_types import HttpResponse

KEY_A = new_class_key()
KEY_B = new_class_key()

# ------------------------------------------------------------------------------ strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
map_keys = st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=8) | st.text(max_size=8)
cbor_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(map_keys, inner, max_size=6),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few random edits: byte flips, inserts, deletes, cuts."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            # Head bytes that change meaning most: lengths 24-27, indefinite 31, tags,
            # simple values, breaks.
            data[pos] = draw(
                st.sampled_from([0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x5F, 0x7F, 0x9F, 0xBF, 0xC0])
                | st.integers(0, 255)
            )
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup" and data:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def _stable(value: Any) -> bytes:
    """Re-encoding of a decoded value; compared as bytes, so NaN compares equal to itself."""
    return cbor.encode(value)


# ------------------------------------------------------------------------------ CBOR


@budgets(60, 2_400)
def test_cbor_mutated_encodings_refuse_cleanly_or_decode_stably(examples: int) -> None:
    def prop(data: bytes) -> None:
        try:
            value = cbor.decode(data)
        except CborError as e:
            assert e.code is Code.BAD_ENCODING
            return
        # Whatever a mutation left decodable re-encodes, and that encoding is a fixed point.
        again = _stable(value)
        assert _stable(cbor.decode(again)) == again

    run_property(prop, examples, mutated(cbor_values.map(cbor.encode)))


@budgets(50, 2_000)
def test_cbor_every_proper_prefix_is_refused(examples: int) -> None:
    def prop(value: Any) -> None:
        data = cbor.encode(value)
        # An item spans its whole encoding, so any strict prefix is incomplete.
        for cut in range(len(data)):
            try:
                cbor.decode(data[:cut])
            except CborError as e:
                assert e.code is Code.BAD_ENCODING
            else:
                raise AssertionError(f"prefix {data[:cut].hex()} of {data.hex()} decoded")

    run_property(prop, examples, cbor_values)


@budgets(50, 2_000)
def test_cbor_trailing_bytes_are_refused(examples: int) -> None:
    def prop(value: Any, tail: bytes) -> None:
        try:
            cbor.decode(cbor.encode(value) + tail)
        except CborError as e:
            assert e.code is Code.BAD_ENCODING
        else:
            raise AssertionError("trailing bytes accepted")

    run_property(prop, examples, cbor_values, st.binary(min_size=1, max_size=10))


@budgets(50, 1_200)
def test_cbor_nesting_limit_is_the_same_for_encode_and_decode(examples: int) -> None:
    def prop(kinds: list[bool], leaf: Any) -> None:
        value = leaf
        for as_map in kinds:
            value = {0: value} if as_map else [value]
        ok = len(kinds) <= MAX_DEPTH
        try:
            data = cbor.encode(value)
        except CborError:
            assert not ok
            data = b"".join(b"\xa1\x00" if m else b"\x81" for m in reversed(kinds))
            data += cbor.encode(leaf)
        else:
            assert ok
        try:
            cbor.decode(data)
        except CborError as e:
            assert not ok and "nested" in e.message
        else:
            assert ok

    run_property(
        prop,
        examples,
        st.lists(st.booleans(), min_size=MAX_DEPTH - 3, max_size=MAX_DEPTH + 60),
        scalars,
    )


@budgets(50, 2_000)
def test_cbor_round_trips_floats_ints_and_nested_maps(examples: int) -> None:
    def prop(value: Any) -> None:
        data = cbor.encode(value)
        assert _stable(cbor.decode(data)) == data

    run_property(prop, examples, cbor_values)


# ------------------------------------------------------------------------------ envelopes

header_name_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))
requests = st.builds(
    Request,
    method=st.text(min_size=1, max_size=12) | st.sampled_from(["GET", "POST", "PUT", "M-SEARCH"]),
    path=st.text(max_size=300).map(lambda s: "/" + s),
    query=st.text(max_size=40),
    headers=st.lists(
        st.tuples(st.text(header_name_chars, min_size=1, max_size=20), st.text(max_size=300)),
        max_size=8,
    ),
    body=st.binary(max_size=300) | st.sampled_from([b"x" * 70_000, b"\0" * 256]),
)


@budgets(60, 2_400)
def test_request_encoder_agrees_with_the_generic_codec_and_round_trips(examples: int) -> None:
    def prop(req: Request) -> None:
        data = encode_request(req)
        as_dict = {
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "headers": [[k.lower(), v] for k, v in req.headers],
            "body": req.body,
        }
        assert data == cbor.encode(as_dict)  # the hand-written fast path is the same bytes
        back = decode_request(data)
        assert back == Request(
            req.method, req.path, req.query, [(k.lower(), v) for k, v in req.headers], req.body
        )

    run_property(prop, examples, requests)


@budgets(60, 2_400)
def test_request_decoder_refuses_mutations_cleanly(examples: int) -> None:
    def prop(data: bytes) -> None:
        try:
            req = decode_request(data)
        except CborError as e:
            assert e.code is Code.BAD_ENCODING
            return
        assert isinstance(req.method, str) and isinstance(req.body, bytes)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in req.headers)

    small = requests.filter(lambda r: len(r.body) < 1000)
    run_property(prop, examples, mutated(small.map(encode_request)))


TOKEN_CHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
valid_responses = st.builds(
    Response,
    status=st.integers(100, 599),
    headers=st.lists(
        st.tuples(
            st.text(TOKEN_CHARS, min_size=1, max_size=30).filter(
                lambda k: k.lower() not in HOP_BY_HOP
            ),
            st.text(st.characters(max_codepoint=0xFF), max_size=60).filter(
                lambda v: re.fullmatch(r"[\t\x20-\x7e\x80-\xff]*", v) is not None
            ),
        ),
        max_size=6,
    ),
    body=st.binary(max_size=300),
)


@budgets(75, 3_000)
def test_valid_responses_round_trip(examples: int) -> None:
    def prop(resp: Response) -> None:
        assert decode_response(encode_response(resp)) == resp

    run_property(prop, examples, valid_responses)


# Responses a guest might try: header names and values with CR/LF/NUL, hop-by-hop names,
# statuses out of range, bodies of the wrong type; then mutated at the byte level too.
hostile_headers = st.lists(
    st.lists(
        st.text(max_size=12)
        | st.sampled_from(["x-ok", "Connection", "Content-Length", "TE", "set-cookie", "a b"]),
        min_size=0,
        max_size=3,
    )
    | st.tuples(
        st.just("x-inject"),
        st.sampled_from(["a\r\nx-evil: 1", "a\nb", "a\0b", "ok", "\u20ac", "\x01", "\x7f", "\xe9"]),
    ),
    max_size=5,
)
hostile_responses = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([99, 100, 101, 199, 200, 204, 304, 599, 600])
        | st.integers(-5, 1000)
        | st.booleans()
        | st.floats()
        | st.text(max_size=3),
        "headers": hostile_headers | st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
        "body": st.binary(max_size=200)
        | st.text(max_size=50)
        | st.integers(-(2**63), 2**63)
        | st.none(),
        "extra": st.integers(0, 2**64 - 1),
    },
).map(cbor.encode)


@budgets(100, 4_000)
def test_any_accepted_response_is_safe_to_send(examples: int) -> None:
    def prop(data: bytes) -> None:
        try:
            resp = decode_response(data)
        except CborError as e:
            assert e.code is Code.BAD_ENCODING
            return
        # What the host would put on the wire: no header injection, no framing headers
        # chosen by the guest, a real status.
        assert 100 <= resp.status <= 599 and type(resp.status) is int
        assert isinstance(resp.body, bytes)
        for k, v in resp.headers:
            assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}", k), k
            assert k.lower() not in HOP_BY_HOP
            assert re.fullmatch(r"[\t\x20-\x7e\x80-\xff]*", v), v
        # ... and the HTTP server can put it on the wire (it once raised on "\u20ac"). A
        # 1xx is a valid response between objects, refused at the HTTP boundary (api.py).
        if resp.status >= 200:
            _encode_response(HttpResponse(resp.status, resp.headers, resp.body), False, True, False)

    run_property(prop, examples, hostile_responses | mutated(hostile_responses))


# ------------------------------------------------------------------------------ ids


def _expect_invalid_id(key: bytes, text: str) -> None:
    try:
        oid = id_from_string(key, text)
    except DohostError as e:
        assert e.code is Code.INVALID_ID
    else:
        raise AssertionError(f"{text!r} was accepted as {oid}")


@budgets(150, 6_000)
def test_arbitrary_text_is_never_an_id(examples: int) -> None:
    hexish = st.text(
        st.sampled_from("0123456789abcdefABCDEF \x00\u0660\uff10/.%-"),
        min_size=ID_HEX_CHARS - 2,
        max_size=ID_HEX_CHARS + 2,
    )

    def prop(text: str) -> None:
        _expect_invalid_id(KEY_A, text)

    run_property(prop, examples, st.text(max_size=200) | hexish)


@budgets(150, 6_000)
def test_forged_and_foreign_ids_are_refused(examples: int) -> None:
    def prop(raw: bytes, name: str, pos: int, digit: str, use_name: bool) -> None:
        real = id_from_name(KEY_A, name) if use_name else new_unique_id(KEY_A)
        assert id_from_string(KEY_A, real.hex).raw == real.raw
        # The same id in another class (another key) does not exist there.
        _expect_invalid_id(KEY_B, real.hex)
        # One hex digit changed anywhere (object half or MAC half).
        if real.hex[pos] != digit:
            _expect_invalid_id(KEY_A, real.hex[:pos] + digit + real.hex[pos + 1 :])
        # Halves swapped, and a MAC taken from a different object.
        _expect_invalid_id(KEY_A, real.hex[32:] + real.hex[:32])
        other = new_unique_id(KEY_A)
        _expect_invalid_id(KEY_A, real.hex[:32] + other.hex[32:])
        # Random bytes: a MAC guess.
        _expect_invalid_id(KEY_A, raw.hex())

    run_property(
        prop,
        examples,
        st.binary(min_size=32, max_size=32),
        st.text(max_size=30),
        st.integers(0, ID_HEX_CHARS - 1),
        st.sampled_from("0123456789abcdef"),
        st.booleans(),
    )


@budgets(75, 3_000)
def test_object_names_are_accepted_exactly_up_to_1_kib(examples: int) -> None:
    def prop(name: str) -> None:
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError:
            raw = None
        try:
            got = check_object_name(name)
        except DohostError as e:
            assert e.code is Code.INVALID_NAME
            assert raw is None or len(raw) > MAX_OBJECT_NAME_BYTES
            return
        assert got == raw and len(got) <= MAX_OBJECT_NAME_BYTES
        oid = id_from_name(KEY_A, name)
        assert isinstance(oid, ObjectId) and id_from_string(KEY_A, oid.hex).raw == oid.raw

    run_property(
        prop,
        examples,
        st.text(max_size=40)
        | st.text(st.characters(), min_size=250, max_size=600)  # 1-4 bytes a character
        | st.integers(1015, 1030).map(lambda n: "x" * n)
        | st.text(st.characters(categories=("Cs",)), min_size=1, max_size=3),
    )


# ------------------------------------------------------------------------------ names

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@budgets(100, 4_000)
def test_accepted_tenant_and_class_names_are_safe_path_parts(examples: int) -> None:
    def prop(name: str) -> None:
        try:
            check_name("class", name)
        except DohostError as e:
            assert e.code is Code.INVALID_NAME
            assert not _NAME_RE.fullmatch(name)
            assert len(e.message) < 400  # the name is quoted cut short
            return
        assert _NAME_RE.fullmatch(name)
        # Names become one directory level under DATA/tenants: nothing that climbs,
        # separates, ends a C string, or reads as a command-line option.
        assert name not in (".", "..") and not name.startswith("-")
        assert not set(name) & set("/\\\0.%:")
        root = "/data/tenants"
        assert os.path.dirname(os.path.normpath(os.path.join(root, name))) == root

    run_property(
        prop,
        examples,
        st.text(max_size=70)
        | st.from_regex(_NAME_RE, fullmatch=True)
        | st.sampled_from(["..", ".", "a/..", "a%2e", "a\0", "ａ", "a\u0301", "A", "x" * 64])
        | st.from_regex(r"[a-z0-9./%_\-\x00]{1,10}", fullmatch=True),
    )
