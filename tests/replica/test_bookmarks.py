"""Guests' bookmarks (abi/README.md, "Bookmarks") on a host with a real replica store
(a directory and SeaweedFS), driven through the C conformance guest: write, take a
bookmark, write more, restore to it, and the next event sees the old state in a new
instance; forged and foreign bookmarks refused; a failed event's request dropped; the
request outlives the activation's eviction. The host's wall clock is one the test moves
(it stamps every change shipped to the replica)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dohost import Code, DohostError, Host
from dohost.replica.file_store import FileReplicaStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
import test_restore_object as restore_tests
from conformance_helpers import Guest, deploy
from test_restore_object import FAR, Clock, value

# The same host as test_restore_object's: a replica store, a clock the test moves.
world = restore_tests.world


async def test_round_trip_restores_at_the_next_activation(
    world: tuple[Host, Guest, Clock],
) -> None:
    host, g, clock = world
    assert await g.put("k", b"v1") == "0"
    assert await g.text("POST", f"/alarm_set?ms={FAR}") == "0"
    clock.step()
    bookmark = await g.text("GET", "/bookmark_current")
    assert bookmark.startswith("b1-") and len(bookmark) == 52
    clock.step()
    assert await g.put("k", b"v2") == "0"
    assert await g.put("added", b"x") == "0"
    assert await g.text("POST", "/alarm_delete") == "0"
    assert await g.text("GET", "/init_count") == "1"
    clock.step()

    assert await g.text("POST", "/bookmark_restore", bookmark.encode()) == "0"
    # The next event runs in a new instance, on the state at the bookmark.
    assert await g.text("GET", "/init_count") == "1"
    assert (await value(g), await value(g, "added")) == ("v1", None)
    assert await g.text("GET", "/alarm_get") == str(FAR)
    assert [due for _, due, _ in host.pending_alarms("acme")] == [FAR]
    assert host.supervisor.pending_restores == {}

    # The restore is a change of its own: a bookmark from before it undoes it.
    clock.step()
    later = await g.text("GET", f"/bookmark_for_time?ms={clock.ms - 2000}")
    assert later > bookmark  # same object: string order is time order
    assert await g.text("POST", "/bookmark_restore", later.encode()) == "0"
    assert (await value(g), await value(g, "added")) == ("v2", "x")


async def test_forged_foreign_and_failed_requests_change_nothing(
    world: tuple[Host, Guest, Clock],
) -> None:
    host, g, clock = world
    assert await g.put("k", b"v1", obj="other") == "0"
    assert await g.put("k", b"v1") == "0"
    clock.step()
    mine = await g.text("GET", "/bookmark_current")
    foreign = await g.text("GET", "/bookmark_current", obj="other")
    clock.step()
    assert await g.put("k", b"v2") == "0"
    clock.step()

    forged = mine[:-1] + ("0" if mine[-1] != "0" else "1")  # the MAC no longer matches
    shifted = mine[:3] + f"{int(mine[3:19], 16) - 1:016x}" + mine[19:]  # another time
    for bad in (forged, shifted, foreign, "b1-nonsense", "", "x" * 100, mine.upper()):
        text = await g.text("POST", "/bookmark_restore", bad.encode())
        assert text.startswith("-11 invalid_argument not a bookmark"), (bad, text)
    future = mine[:3] + f"{clock.ms + 10_000:016x}" + mine[19:]
    assert (await g.text("POST", "/bookmark_restore", future.encode())).startswith(
        "-11 invalid_argument"
    )
    assert (await g.text("GET", f"/bookmark_for_time?ms={clock.ms + 1}")).startswith(
        "-11 invalid_argument bookmark time"
    )
    assert (await g.text("GET", "/bookmark_for_time?ms=-1")).startswith("-11 invalid_argument")

    # A failed event's request goes with its writes.
    with pytest.raises(DohostError) as e:
        await g.req("POST", "/bookmark_restore?then_fail=1", mine.encode())
    assert e.value.code is Code.OBJECT_ERROR
    assert host.supervisor.pending_restores == {}
    assert (await value(g), await value(g, "fail")) == ("v2", None)
    assert await value(g, obj="other") == "v1"


async def test_the_request_outlives_eviction_and_a_time_before_the_object_empties_it(
    world: tuple[Host, Guest, Clock],
) -> None:
    host, g, clock = world
    clock.step()
    before = await g.text("GET", "/bookmark_current")  # nothing written yet
    clock.step()
    assert await g.put("k", b"v1") == "0"
    clock.step()
    assert await g.text("POST", "/bookmark_restore", before.encode()) == "0"
    assert len(host.supervisor.pending_restores) == 1
    host.supervisor.hibernate_idle(float("inf"))  # the slot goes; the request stays
    assert host.supervisor.slots() == []
    assert await value(g) is None
    assert host.supervisor.pending_restores == {}


async def test_without_a_replica_the_imports_say_so(tmp_path: Path) -> None:
    async with Host(tmp_path / "data", durability="os") as host:
        g = await deploy(host, "c")
        for method, path in [
            ("GET", "/bookmark_current"),
            ("GET", "/bookmark_for_time?ms=0"),
            ("POST", "/bookmark_restore"),
        ]:
            text = await g.text(method, path, b"b1-")
            assert text.startswith("-9 not_supported bookmarks need a replica"), text


async def test_a_restore_that_fails_fails_that_event_and_is_dropped(
    tmp_path: Path, file_store: FileReplicaStore
) -> None:
    """A damaged replica (a segment's bytes changed on the store's disk): the next event
    fails with `replica_corrupt` naming the segment; the request is dropped, so the
    event after runs on the object's current state."""
    clock = Clock()
    async with Host(
        tmp_path / "data", durability="os", replica=file_store, wall_clock_ms=clock
    ) as host:
        g = await deploy(host, "c")
        assert await g.put("k", b"v1") == "0"
        clock.step()
        bookmark = await g.text("GET", "/bookmark_current")
        clock.step()
        assert await g.put("k", b"v2") == "0"
        assert host.replicator is not None and host.replicator.flush(60)
        segments = [k for k in file_store.list("") if "/s" in k]
        first = tmp_path / "replica" / sorted(segments)[0]
        damaged = bytearray(first.read_bytes())
        damaged[-1] ^= 0xFF
        first.chmod(0o644)
        first.write_bytes(bytes(damaged))
        clock.step()
        assert await g.text("POST", "/bookmark_restore", bookmark.encode()) == "0"
        with pytest.raises(DohostError) as e:
            await g.get("k")
        assert e.value.code is Code.REPLICA_CORRUPT
        assert "restoring the object to its bookmark failed" in e.value.message
        assert host.supervisor.pending_restores == {}
        assert await value(g) == "v2"
