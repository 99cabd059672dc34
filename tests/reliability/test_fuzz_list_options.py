"""Fuzzing kv_list options (prefix/start/end/reverse/limit) against a brute-force model,
on both backends.

tests/storage/ checks every combination over a fixed key set and a stateful model over
a three-letter alphabet. Here keys and bounds are arbitrary bytes (0x00, 0x7f/0x80 and
0xff runs weighted up, where memcmp order and prefix successors go wrong), limits go up
to 2^62, and the caps are both the real ones and tiny ones, so `more` is exercised.
Each case lists the event's view (committed rows, the event's own puts and deletes on
top, kv cache warm or cold) and the operators' view (`object_entries`, committed only).

The last property goes through everything: a real `dohost serve`, the kvtest guest's
/list route (the C SDK's kv_list iterator, which pages with `start`), over HTTP.
"""

from __future__ import annotations

import itertools
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import budgets, run_property
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
for helpers in ("server", "storage"):
    if str(ROOT / "tests" / helpers) not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / helpers))

from api_helpers import ServerProcess  # noqa: E402
from storage_helpers import model_list  # noqa: E402

from dohost.core.errors import Code, DohostError  # noqa: E402
from dohost.core.limits import LIST_MAX_BYTES, LIST_MAX_ENTRIES  # noqa: E402
from dohost.storage.api import Backend, Durability, ListOptions  # noqa: E402
from dohost.storage.manager import StorageManager  # noqa: E402

TINY_CAPS = (3, 24)
REAL_CAPS = (LIST_MAX_ENTRIES, LIST_MAX_BYTES)

edge_bytes = st.sampled_from([0x00, 0x01, 0x61, 0x62, 0x7F, 0x80, 0xFE, 0xFF])
keys = st.binary(min_size=1, max_size=6) | st.lists(edge_bytes, min_size=1, max_size=5).map(bytes)
bounds = st.none() | keys | st.just(b"")
limits = st.integers(0, 12) | st.sampled_from([2**31, 2**62])
options = st.builds(
    ListOptions,
    prefix=st.just(b"") | keys.map(lambda k: k[:2]),
    start=bounds,
    end=bounds,
    reverse=st.booleans(),
    limit=limits,
)
stores = st.dictionaries(keys, st.binary(max_size=12), max_size=25)
event_ops = st.lists(st.tuples(keys, st.none() | st.binary(max_size=12)), max_size=10)


@pytest.fixture(
    scope="module",
    params=list(itertools.product([Backend.KV, Backend.SQLITE], ["tiny", "real"])),
    ids=lambda p: f"{p[0]}-{p[1]}-caps",
)
def storage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StorageManager, str, tuple[int, int]]]:
    backend, which = request.param
    caps = TINY_CAPS if which == "tiny" else REAL_CAPS
    m = StorageManager(
        tmp_path_factory.mktemp("lists"),
        Durability.OS,
        list_max_entries=caps[0],
        list_max_bytes=caps[1],
    )
    yield m, backend, caps
    m.close()


@budgets(40, 1_000)
def test_list_options_match_the_model(
    storage: tuple[StorageManager, str, tuple[int, int]], examples: int
) -> None:
    manager, backend, caps = storage
    serial = itertools.count(1)

    def prop(
        committed: dict[bytes, bytes],
        ops: list[tuple[bytes, bytes | None]],
        opts_list: list[ListOptions],
        warm: list[bytes],
    ) -> None:
        # A fresh object per case; the first 4 bytes vary, so kv cases spread over shards.
        oid = next(serial).to_bytes(4, "big") + b"\x5a" * 28
        o = manager.open_object("t", "c", oid, None, backend)
        try:
            o.begin_event()
            o.put_many(committed)
            assert o.commit_event().wait(10) is None
            o.begin_event()
            for k in warm:  # some keys cached (present and known-absent)
                assert o.get(k) == committed.get(k)
            current = dict(committed)
            for k, v in ops:
                if v is None:
                    assert o.delete(k) == (k in current)
                    current.pop(k, None)
                else:
                    o.put(k, v)
                    current[k] = v
            for opts in opts_list:
                assert o.list(opts) == model_list(current, opts, *caps), opts
            o.rollback_event()
            for opts in opts_list:
                assert o.list(opts) == model_list(committed, opts, *caps), opts
                admin = manager.object_entries("t", "c", oid, backend, opts)
                assert admin == model_list(committed, opts, *caps), opts
        finally:
            o.close()

    run_property(
        prop,
        examples,
        stores,
        event_ops,
        st.lists(options, min_size=1, max_size=6),
        st.lists(keys, max_size=4),
    )


@budgets(30, 300)
def test_negative_limits_are_invalid_argument(
    storage: tuple[StorageManager, str, tuple[int, int]], examples: int
) -> None:
    manager, backend, _ = storage
    oid = b"\xee" * 32

    def prop(opts: ListOptions, limit: int) -> None:
        bad = ListOptions(opts.prefix, opts.start, opts.end, opts.reverse, limit)
        o = manager.open_object("t", "c", oid, None, backend)
        try:
            o.begin_event()
            for call in (
                lambda: o.list(bad),
                lambda: manager.object_entries("t", "c", oid, backend, bad),
            ):
                with pytest.raises(DohostError) as ei:
                    call()
                assert ei.value.code is Code.INVALID_ARGUMENT
        finally:
            o.close()

    run_property(prop, examples, options, st.integers(-(2**63), -1))


# ------------------------------------------------------------------------------ via a guest

KVTEST = ROOT / "tests" / "fixtures" / "build" / "kvtest.wasm"
# The kvtest /list output is "k=v\n" lines of raw bytes: keep '=' and '\n' out of keys
# and values so the lines split unambiguously (NUL, '&', '%' and 0xff stay in).
wire_bytes = st.sampled_from([0x00, 0x25, 0x26, 0x2B, 0x61, 0x62, 0x7F, 0x80, 0xFF])
wire_keys = st.lists(wire_bytes, min_size=1, max_size=4).map(bytes)
wire_options = st.builds(
    ListOptions,
    prefix=st.just(b"") | wire_keys.map(lambda k: k[:1]),
    start=st.none() | wire_keys,
    end=st.none() | wire_keys,
    reverse=st.booleans(),
    limit=st.integers(0, 6),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    s = ServerProcess(tmp_path_factory.mktemp("list-http") / "data")
    token = s.new_tenant("lists", quotas={"requests_per_s": 100_000})
    with s.client(token) as c:
        for backend in (Backend.KV, Backend.SQLITE):
            r = c.put(f"/v1/classes/kv-{backend}?storage={backend}", content=KVTEST.read_bytes())
            assert r.status_code == 201, r.text
    yield s, token
    assert s.stop() == 0, s.stderr()
    assert "Traceback" not in s.stderr()


def _q(b: bytes) -> str:
    return urllib.parse.quote_from_bytes(b, safe="")


@pytest.mark.parametrize("backend", [Backend.KV, Backend.SQLITE])
@budgets(15, 500)
def test_guest_kv_list_over_http_matches_the_model(
    server: tuple[ServerProcess, str], backend: str, examples: int
) -> None:
    s, token = server
    serial = itertools.count()
    with s.client(token) as c:

        def prop(data: dict[bytes, bytes], opts: ListOptions) -> None:
            obj = f"/v1/classes/kv-{backend}/objects/o{next(serial)}"
            if data:
                form = "&".join(f"{_q(k)}={_q(v)}" for k, v in data.items())
                r = c.post(f"{obj}/put_many", content=form.encode())
                assert (r.status_code, r.text) == (200, "0")
            params = [f"prefix={_q(opts.prefix)}", f"reverse={int(opts.reverse)}"]
            params += [f"limit={opts.limit}"]
            if opts.start is not None:
                params.append(f"start={_q(opts.start)}")
            if opts.end is not None:
                params.append(f"end={_q(opts.end)}")
            r = c.get(f"{obj}/list?" + "&".join(params))
            assert r.status_code == 200, r.text
            head, _, rest = r.content.partition(b"\n")
            count = int(head.split(b" ")[0])
            lines = rest.split(b"\n")[:-1]
            got = [tuple(line.split(b"=", 1)) for line in lines]
            # The SDK pages through the host's caps itself: the full range, no `more`.
            want = model_list(data, opts, 1 << 30, 1 << 40).entries
            assert count == len(want) and got == want

        run_property(
            prop,
            examples,
            st.dictionaries(wire_keys, st.lists(wire_bytes, max_size=4).map(bytes), max_size=8),
            wire_options,
        )
