"""With `--processes 2`, deleting or renaming a class is refused (the other node's
events of the class would not be waited for: api_classes.single_node_only), and nothing
changes; versions, rollback and deferred deploys work through any node."""

from __future__ import annotations

from pathlib import Path

from api_helpers import ServerProcess, error_code

ROOT = Path(__file__).resolve().parents[2]
COUNTER = (ROOT / "samples" / "counter" / "counter.wasm").read_bytes()


def test_delete_and_rename_are_refused_with_several_processes(tmp_path: Path) -> None:
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
            for r in (
                c.delete("/v1/classes/counter"),
                c.post("/v1/classes/counter/rename", json={"to": "n"}),
            ):
                assert (r.status_code, error_code(r)) == (400, "not_supported")
                assert "--processes" in r.json()["error"]["message"]
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
