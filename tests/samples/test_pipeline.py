"""samples/pipeline (C SDK) end to end through the HTTP API handler (in process, as the
front door calls it) over `dohost.Host`, with time on trio's MockClock: stage timeouts are
alarms, and the clock moves only when a test jumps it.

Two classes: "pipeline" (samples/pipeline/pipeline.c) and "run" (run.c). The pipeline
starts runs by calling them; a run reports back by calling its pipeline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from dohost import Code, DohostError, Host, ObjectId
from dohost.server.api import Api
from dohost.server.http_types import HttpRequest
from dohost.server.quotas import Quotas
from dohost.server.state import ServerState
from dohost.storage.api import CommitTicket, ObjectStorage

ROOT = Path(__file__).resolve().parents[2]
BASE_MS = 1_700_000_000_000
TIMEOUT_MS = 60_000


@dataclass
class Ci:
    host: Host
    api: Api
    token: str
    clock: MockClock
    backend: str

    async def http(
        self,
        method: str,
        target: str,
        body: Any = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else b""
        path, _, query = ("/v1/classes/" + target).partition("?")
        hdrs = [("host", "test"), ("authorization", f"Bearer {self.token}"), *(headers or [])]
        r = await self.api.handle(
            HttpRequest(method, path, query, hdrs, data, ("127.0.0.1", 1), "1.1")
        )
        return r.status, json.loads(r.body) if r.body else None

    async def pipeline(self, method: str, path: str, body: Any = None) -> Any:
        status, out = await self.http(method, f"pipeline/objects/main{path}", body)
        assert status < 300, (status, out)
        return out

    async def run(self, n: int, method: str = "GET", path: str = "/", body: Any = None) -> Any:
        status, out = await self.http(method, f"run/objects/main%2F{n}{path}", body)
        assert status < 300, (status, out)
        return out

    async def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)
        await self.host.alarms.settled()

    async def states(self) -> dict[int, str]:
        return {r["run"]: r["state"] for r in (await self.pipeline("GET", "/"))["runs"]}


@pytest.fixture(params=["kv", "sqlite"])
async def ci(request: Any, tmp_path: Path, mock_clock: MockClock) -> AsyncIterator[Ci]:
    async with Host(
        tmp_path / "data",
        durability="os",
        workers=2,
        wall_clock_ms=lambda: BASE_MS + mock_clock.current_time() * 1000,
        alarm_jitter=lambda: 0.0,
    ) as host:
        state = await ServerState.attach(host, "admin-token-" + "x" * 20, Quotas())
        _, token = state.tenancy.create("acme")
        for cls, wasm in (("pipeline", "pipeline.wasm"), ("run", "run.wasm")):
            module = (ROOT / "samples" / "pipeline" / wasm).read_bytes()
            await host.deploy("acme", cls, module, storage=request.param)
        ci = Ci(host, Api(state), token, mock_clock, request.param)
        await ci.pipeline(
            "PUT",
            "/config",
            {"max_in_flight": 2, "stages": "build,test", "stage_timeout_ms": TIMEOUT_MS},
        )
        yield ci


async def test_runs_beyond_the_limit_queue_and_start_as_others_finish(ci: Ci) -> None:
    started = [await ci.pipeline("POST", "/runs", {"commit": f"c{i}"}) for i in (1, 2, 3)]
    assert [(r["run"], r["state"]) for r in started] == [
        (1, "running"),
        (2, "running"),
        (3, "queued"),
    ]
    assert started[0]["object"] == "main/1"
    state = await ci.pipeline("GET", "/")
    assert (state["in_flight"], state["queued"]) == (2, [3])
    assert state["config"] == {
        "max_in_flight": 2,
        "stages": "build,test",
        "stage_timeout_ms": TIMEOUT_MS,
    }

    run1 = await ci.run(1)
    assert run1["state"] == "running" and run1["current_stage"] == "build"
    assert run1["commit"] == "c1" and run1["pipeline"] == "main"
    assert run1["deadline_ms"] == BASE_MS + TIMEOUT_MS
    assert [s["state"] for s in run1["stages"]] == ["running", "pending"]
    assert (await ci.run(3))["state"] == "new"  # not started: queued at the pipeline

    await ci.advance(30)
    assert (await ci.run(1, "POST", "/stages/build/done"))["current_stage"] == "test"
    done = await ci.run(1, "POST", "/stages/test/done")
    assert done["state"] == "succeeded" and done["reported"] is True
    # Run 1 called back; the pipeline started run 3 in that same event.
    assert await ci.states() == {1: "succeeded", 2: "running", 3: "running"}
    state = await ci.pipeline("GET", "/")
    assert (state["in_flight"], state["queued"]) == (2, [])
    assert (await ci.run(3))["deadline_ms"] == BASE_MS + 30_000 + TIMEOUT_MS


async def test_a_stage_that_times_out_fails_the_run(ci: Ci) -> None:
    for _ in range(3):
        await ci.pipeline("POST", "/runs")
    await ci.advance(30)
    await ci.run(1, "POST", "/stages/build/done")  # run 1's test stage: deadline t=90
    await ci.advance(29.999)
    assert await ci.states() == {1: "running", 2: "running", 3: "queued"}
    await ci.advance(0.001)  # t=60: run 2's build stage times out
    run2 = await ci.run(2)
    assert run2["state"] == "failed" and run2["reported"] is True
    assert run2["reason"] == f"stage build timed out after {TIMEOUT_MS} ms"
    assert [s["state"] for s in run2["stages"]] == ["timed_out", "pending"]
    assert await ci.states() == {1: "running", 2: "failed", 3: "running"}
    runs = {r["run"]: r for r in (await ci.pipeline("GET", "/"))["runs"]}
    assert runs[2]["reason"] == run2["reason"]
    await ci.advance(30)  # t=90: run 1's test stage
    assert await ci.states() == {1: "failed", 2: "failed", 3: "running"}
    assert (await ci.pipeline("GET", "/"))["in_flight"] == 1
    await ci.advance(3600)  # nothing else fires once runs are over... except run 3's stage
    assert await ci.states() == {1: "failed", 2: "failed", 3: "failed"}
    assert (await ci.pipeline("GET", "/"))["in_flight"] == 0
    assert ci.host.pending_alarms() == []


async def test_a_failed_stage_fails_the_run_with_its_reason(ci: Ci) -> None:
    await ci.pipeline("POST", "/runs")
    out = await ci.run(1, "POST", "/stages/build/failed", {"reason": "compile error"})
    assert out["state"] == "failed" and out["reason"] == "stage build failed: compile error"
    assert await ci.states() == {1: "failed"}
    assert (await ci.pipeline("GET", "/"))["in_flight"] == 0
    await ci.advance(120)  # past the stage's timeout: its timer was deleted
    assert (await ci.run(1))["reason"] == "stage build failed: compile error"
    assert ci.host.pending_alarms() == []


async def test_raising_the_limit_starts_queued_runs(ci: Ci) -> None:
    for _ in range(4):
        await ci.pipeline("POST", "/runs")
    assert await ci.states() == {1: "running", 2: "running", 3: "queued", 4: "queued"}
    await ci.pipeline("PUT", "/config", {"max_in_flight": 3})
    assert await ci.states() == {1: "running", 2: "running", 3: "running", 4: "queued"}


async def test_only_the_run_itself_reports_and_only_the_pipeline_starts_runs(ci: Ci) -> None:
    await ci.pipeline("POST", "/runs")
    # A client cannot report a result, not even with the caller headers the host sets on
    # calls (the front door drops them).
    forged = [("dohost-caller-class", "run"), ("dohost-caller-name", "main/1")]
    status, out = await ci.http(
        "POST", "pipeline/objects/main/runs/1/finished", {"state": "succeeded"}, forged
    )
    assert status == 403, out
    status, out = await ci.http("POST", "run/objects/main%2F9/start", {"run": 9})
    assert status == 403, out
    assert await ci.states() == {1: "running"}


async def test_bad_requests(ci: Ci) -> None:
    await ci.pipeline("POST", "/runs")
    status, out = await ci.http("POST", "run/objects/main%2F1/stages/test/done")
    assert status == 409 and "not the running one" in out["error"]
    status, out = await ci.http("PUT", "pipeline/objects/main/config", {"max_in_flight": 0})
    assert status == 400
    status, out = await ci.http("PUT", "pipeline/objects/main/config", {"stages": "a,,b"})
    assert status == 400
    status, _ = await ci.http("GET", "pipeline/objects/main/runs/7")
    assert status == 404
    oid = ci.host.new_unique_id("acme", "pipeline").hex  # an object without a name
    status, out = await ci.http("POST", f"pipeline/ids/{oid}/runs")
    assert status == 400 and "by name" in out["error"]
    await ci.run(1, "POST", "/stages/build/failed")
    status, out = await ci.http("POST", "run/objects/main%2F1/stages/build/done")
    assert status == 409 and "finished" in out["error"]


async def test_a_report_the_pipeline_did_not_take_is_retried(ci: Ci, wasm: Any) -> None:
    await ci.pipeline("POST", "/runs")
    real = (ROOT / "samples" / "pipeline" / "pipeline.wasm").read_bytes()
    # Every event of this version fails (its dohost_init does): the callback gets a 500.
    await ci.host.deploy("acme", "pipeline", wasm("init_fails"), storage=ci.backend)
    await ci.run(1, "POST", "/stages/build/done")
    out = await ci.run(1, "POST", "/stages/test/done")
    assert (out["state"], out["reported"]) == ("succeeded", False)
    await ci.host.deploy("acme", "pipeline", real, storage=ci.backend)
    await ci.advance(1)  # the run's alarm reports again
    assert (await ci.run(1))["reported"] is True
    assert await ci.states() == {1: "succeeded"}
    assert (await ci.pipeline("GET", "/"))["in_flight"] == 0


async def test_a_start_whose_answer_was_lost_is_sent_again(ci: Ci) -> None:
    # The pipeline's commit after its call to start run 1 fails (as if the host had died
    # there): its durable state is what the call committed, run 1 "starting" and counted
    # in flight, while the run did start. The pipeline's alarm sends /start again, which
    # the run answers as started already.
    pipeline = ci.host.id_from_name("acme", "pipeline", "main").raw
    commits = [0]

    def wrap(tenant: str, cls: str, oid: Any, inner: ObjectStorage) -> ObjectStorage:
        class FailSecondCommit:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def commit_event(self) -> CommitTicket:
                if oid.raw == pipeline:
                    commits[0] += 1
                    if commits[0] == 2:  # 1: at the call; 2: the end of the event
                        inner.rollback_event()
                        return CommitTicket.failed(DohostError(Code.STORAGE_ERROR, "injected"))
                return inner.commit_event()

        return FailSecondCommit()  # type: ignore[return-value]

    async with ci.host.supervisor.forget("acme", "pipeline", ObjectId(pipeline)):
        ci.host.supervisor.wrap_storage = wrap  # the pipeline's storage reopens wrapped
    status, out = await ci.http("POST", "pipeline/objects/main/runs")
    assert status == 500 and out["error"]["code"] == "storage_error", out
    assert (await ci.run(1))["state"] == "running"  # the run did start
    assert await ci.states() == {1: "starting"}
    assert (await ci.pipeline("GET", "/"))["in_flight"] == 1
    await ci.advance(10)
    assert await ci.states() == {1: "running"}
    assert (await ci.pipeline("GET", "/"))["in_flight"] == 1
