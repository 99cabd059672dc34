"""Breaking the claim under a running server (issue 13): a real `dohost serve` process
serves a counter; the test replaces the lock files under it, claims every partition from
this process (epoch + 1) and writes. From then on the server commits nothing: its
writes answer `fenced`, soon its reads too, and nothing it did surfaces. Both backends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from api_helpers import ROOT, ServerProcess, error_code

from dohost import Host, Request

COUNTER = ROOT / "samples" / "counter" / "counter.wasm"


def replace_file(path: Path) -> None:
    """Put a new, empty file in place of `path` (the holder keeps the old inode)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(b"")
    os.replace(tmp, path)


async def fetch_text(host: Host, tenant: str, method: str) -> tuple[int, str]:
    path = "/incr" if method == "POST" else "/"
    r = await host.fetch(tenant, "counter", "x", Request(method, path, "", [], b""))
    return r.status, r.text


@pytest.mark.parametrize("storage", ["kv", "sqlite"])
async def test_a_server_whose_claim_was_taken_commits_nothing(tmp_path: Path, storage: str) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        token = server.new_tenant()
        tenant = server.names[token]
        with server.client(token) as c:
            r = c.put(f"/v1/classes/counter?storage={storage}", content=COUNTER.read_bytes())
            assert r.status_code < 300, r.text
            for n in range(1, 4):
                r = c.post("/v1/classes/counter/objects/x/incr")
                assert (r.status_code, r.text) == (200, str(n))

            # Break both locks under the running server, then take the data set over.
            replace_file(data / "dohost.lock")
            replace_file(data / "partitions.lock")
            async with Host(data, durability="os") as taker:
                p = taker.partition_of(taker.id_from_name(tenant, "counter", "x"))
                assert taker.serving()[p] == 2  # epoch + 1
                assert await fetch_text(taker, tenant, "POST") == (200, "4")

                # The server's next increment is refused, and so is the one after
                # (its slot was reset: the fresh storage is still under the old claim).
                for _ in range(2):
                    r = c.post("/v1/classes/counter/objects/x/incr")
                    assert r.status_code == 503, r.text
                    assert error_code(r) == "fenced"
                # Its reads stop too: at once where the read needs the storage (a sqlite
                # object reopened after the reset meets the newer fence), else once the
                # server has noticed its broken claims (checked every 0.25 s).
                deadline = time.monotonic() + 10
                while True:
                    r = c.get("/v1/classes/counter/objects/x/")
                    if r.status_code == 503:
                        assert error_code(r) == "fenced"
                        break
                    assert r.status_code == 200 and r.text in ("3", "4"), r.text
                    assert time.monotonic() < deadline, "the server went on serving reads"
                    time.sleep(0.01)
                # Nothing the server tried after the takeover surfaced.
                assert await fetch_text(taker, tenant, "GET") == (200, "4")
                assert await fetch_text(taker, tenant, "POST") == (200, "5")
        assert server.stop() == 0
        async with Host(data, durability="os") as after:
            assert await fetch_text(after, tenant, "GET") == (200, "5")
    finally:
        server.stop()
