"""Class delete and rename with `serve --processes 2` (server/class_nodes.py): real node
processes, objects with data and pending alarms on both nodes, an event in flight on the
node that did not get the request. Every node stops and drops its activations of the
class, its alarms go (or follow the rename), storage is deleted by the owners (or moved
keeping objects and ids), and a request to either node afterwards sees the change. A
node that cannot take part fails the operation before anything changed. Versions,
rollback and deferred deploys work through any node."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ServerProcess, error_code
from multi_helpers import client_on_node, node_pids, owned_names, wait_until

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes()
CALLTEST = (ROOT / "tests" / "fixtures" / "build" / "calltest.wasm").read_bytes()
HOUR_MS = 3_600_000
SPIN_MS = 3000  # the in-flight event's length (wall time: it must outlast a round trip)


def events_running(s: ServerProcess) -> int:
    with s.admin() as c:
        text = c.get("/metrics").text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("dohost_events_running{")
    )


def alarms_on(s: ServerProcess, token: str, node: int, cls: str) -> list[Any]:
    """The pending alarms of class `cls`, asked through node `node` (GET /v1/alarms
    answers for the whole host; without `?class=`, as a class that is gone is
    unknown_class there)."""
    with client_on_node(s, token, node) as c:
        r = c.get("/v1/alarms")
        assert r.status_code == 200, r.text
        return [a for a in r.json()["alarms"] if a["class"] == cls]


def setup_class(s: ServerProcess, token: str, cls: str, storage: str) -> dict[int, list[str]]:
    """Class `cls` with 8 objects over both nodes, each with x = its name and an alarm
    an hour away; returns node -> its objects."""
    with s.client(token) as c:
        assert c.put(f"/v1/classes/{cls}?storage={storage}", content=CALLTEST).status_code == 201
    owners = owned_names(s, token, cls, 8, path="/alarm_in?ms=3600000", method="POST")
    assert set(owners) == {0, 1}, owners
    with s.client(token) as c:
        for names in owners.values():
            for name in names:
                r = c.post(f"/v1/classes/{cls}/objects/{name}/put?key=x", content=name.encode())
                assert r.status_code == 200, r.text
    return owners


class InFlight:
    """An event that writes `inflight` = "late" and then spins, on a connection of its
    own; it has begun when the constructor returns."""

    def __init__(self, s: ServerProcess, token: str, path: str) -> None:
        self.result: list[httpx.Response] = []
        before = events_running(s)

        def run() -> None:
            with s.client(token) as c:
                url = path + f"/put_spin_ms?key=inflight&ms={SPIN_MS}"
                self.result.append(c.post(url, content=b"late"))

        self.thread = threading.Thread(target=run)
        self.thread.start()
        wait_until(lambda: events_running(s) > before, 30)

    def response(self) -> httpx.Response:
        self.thread.join(60)
        assert self.result, "no answer"
        return self.result[0]


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
def test_delete_reaches_every_node(tmp_path: Path, storage: str) -> None:
    s = ServerProcess(tmp_path / "data", processes=2)
    try:
        token = s.new_tenant()
        owners = setup_class(s, token, "c", storage)
        keep = setup_class(s, token, "keep", storage)
        assert [len(alarms_on(s, token, n, "c")) for n in (0, 1)] == [8, 8]
        # An event in flight on node 1's object while node 0 deletes the class.
        slow = InFlight(s, token, f"/v1/classes/c/objects/{owners[1][0]}")
        with client_on_node(s, token, 0) as c0:
            r = c0.delete("/v1/classes/c")
        assert r.status_code == 200, r.text
        assert r.json() == {"class": "c", "deleted": True, "objects": 8}
        # It finished on the old class (the delete waited for it, then deleted what it
        # wrote: nothing of the class is left below), not refused.
        assert (slow.response().status_code, slow.response().text) == (200, "spun")
        for node in (0, 1):
            with client_on_node(s, token, node) as c:
                assert error_code(c.get("/v1/classes/c")) == "unknown_class"
                for name in owners[0][:1] + owners[1][:1]:
                    r = c.get(f"/v1/classes/c/objects/{name}/get?key=x")
                    assert (r.status_code, error_code(r)) == (404, "unknown_class")
                assert [c["class"] for c in c.get("/v1/classes").json()["classes"]] == ["keep"]
            # Its alarms are gone from every node; the other class's stay.
            assert alarms_on(s, token, node, "c") == []
            assert len(alarms_on(s, token, node, "keep")) == sum(map(len, keep.values()))
        # The name deployed again is a new, empty class on both nodes.
        with s.client(token) as c:
            assert c.put(f"/v1/classes/c?storage={storage}", content=CALLTEST).status_code == 201
            assert c.get("/v1/classes/c/objects").json()["objects"] == []
            for names in owners.values():
                for name in names:
                    r = c.get(f"/v1/classes/c/objects/{name}/get?key=x")
                    assert r.status_code == 404, r.text
                    assert c.get(f"/v1/classes/c/objects/{name}/alarm_get").text == "none"
            # What the tenant stores is counted on both nodes: only `keep`'s objects.
            tenant = s.names[token]
        with s.admin() as a:
            usage = a.get(f"/v1/tenants/{tenant}").json()["usage"]
        assert usage["objects"] == 8 + 0  # keep's 8; the new c has stored nothing
    finally:
        assert s.stop() == 0, s.stderr()


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
def test_rename_reaches_every_node(tmp_path: Path, storage: str) -> None:
    s = ServerProcess(tmp_path / "data", processes=2)
    try:
        token = s.new_tenant()
        owners = setup_class(s, token, "c", storage)
        with s.client(token) as c:
            names = [n for ns in owners.values() for n in ns]
            ids = {n: c.get(f"/v1/classes/c/objects/{n}").json()["id"] for n in names}
            scoped = c.post("/v1/tokens", json={"classes": ["c"]}).json()["token"]
        due = {a["id"]: a["due_ms"] for n in (0, 1) for a in alarms_on(s, token, n, "c")}
        assert len(due) == 8
        slow = InFlight(s, token, f"/v1/classes/c/objects/{owners[0][0]}")
        with client_on_node(s, token, 1) as c1:
            r = c1.post("/v1/classes/c/rename", json={"to": "c2"})
        assert r.status_code == 200, r.text
        assert (r.json()["class"], r.json()["renamed_from"]) == ("c2", "c")
        assert (slow.response().status_code, slow.response().text) == (200, "spun")
        for node in (0, 1):
            with client_on_node(s, token, node) as c:
                assert error_code(c.get("/v1/classes/c/objects/o0/get?key=x")) == "unknown_class"
                # The in-flight event's write moved with the class.
                r = c.get(f"/v1/classes/c2/objects/{owners[0][0]}/get?key=inflight")
                assert (r.status_code, r.text) == (200, "late")
                for names in owners.values():
                    for name in names:
                        # Same id, same data, same alarm, whichever node is asked.
                        assert c.get(f"/v1/classes/c2/objects/{name}").json()["id"] == ids[name]
                        assert c.get(f"/v1/classes/c2/objects/{name}/get?key=x").text == name
                        r = c.get(f"/v1/classes/c2/objects/{name}/alarm_get")
                        assert int(r.text) == due[ids[name]]
            held = alarms_on(s, token, node, "c2")
            assert sorted(a["id"] for a in held) == sorted(ids.values())
            assert alarms_on(s, token, node, "c") == []
            # The scoped token limited to the class follows it on every node.
            with client_on_node(s, scoped, node) as c:
                r = c.get(f"/v1/classes/c2/objects/{owners[1 - node][0]}/get?key=x")
                assert r.status_code == 200, r.text
    finally:
        assert s.stop() == 0, s.stderr()


def test_a_node_that_cannot_take_part_fails_the_operation_and_nothing_changes(
    tmp_path: Path,
) -> None:
    s = ServerProcess(tmp_path / "data", "--forward-timeout", "2", processes=2)
    try:
        token = s.new_tenant()
        owners = setup_class(s, token, "c", "kv")
        with s.client(token) as c:
            assert c.put("/v1/classes/taken", content=CALLTEST).status_code == 201
            r = c.post("/v1/classes/c/rename", json={"to": "taken"})
            assert (r.status_code, error_code(r)) == (409, "already_exists")
            r = c.delete("/v1/classes/nope")
            assert (r.status_code, error_code(r)) == (404, "unknown_class")
        pids = node_pids(s)
        with client_on_node(s, token, 0) as c0:
            os.kill(pids[1], signal.SIGSTOP)
            try:
                for r in (
                    c0.delete("/v1/classes/c"),
                    c0.post("/v1/classes/c/rename", json={"to": "c2"}),
                ):
                    assert (r.status_code, error_code(r)) == (503, "owner_unavailable"), r.text
                    assert "not every node could take part" in r.json()["error"]["message"]
                # Node 0 serves the class again at once.
                r = c0.get(f"/v1/classes/c/objects/{owners[0][0]}/get?key=x")
                assert (r.status_code, r.text) == (200, owners[0][0])
            finally:
                os.kill(pids[1], signal.SIGCONT)

            # Node 1 got the holds late: it refuses them, and serves the class too.
            def node1_serves() -> bool:
                r = c0.get(f"/v1/classes/c/objects/{owners[1][0]}/get?key=x")
                return r.status_code == 200 and r.text == owners[1][0]

            wait_until(node1_serves, 30)
            assert [len(alarms_on(s, token, n, "c")) for n in (0, 1)] == [8, 8]
            r = c0.delete("/v1/classes/c")  # and the operation can be run again
            assert r.json()["objects"] == 8, r.text
    finally:
        assert s.stop() == 0, s.stderr()


def test_versions_rollback_and_deferred_deploys_through_any_node(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path / "data", processes=2)
    try:
        token = s.new_tenant()
        with s.client(token) as c:
            assert c.put("/v1/classes/counter", content=COUNTER).status_code == 201
            assert (
                c.put(
                    "/v1/classes/counter?update=deferred", content=COUNTER + b"\0\x07\x06custom"
                ).status_code
                == 201
            )
            for i in range(4):  # objects on both nodes
                assert c.post(f"/v1/classes/counter/objects/o{i}/incr").text == "1"
            assert (
                c.post("/v1/classes/counter/rollback", json={"version": 1}).json()["version"] == 3
            )
            assert [
                v["version"] for v in c.get("/v1/classes/counter/versions").json()["versions"]
            ] == [1, 2, 3]
            for i in range(4):
                assert c.post(f"/v1/classes/counter/objects/o{i}/incr").text == "2"
    finally:
        assert s.stop() == 0, s.stderr()
