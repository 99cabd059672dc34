"""WorkerPool.blocking: a worker that waits for the loop is replaced, so the pool keeps
`size` threads free to run jobs (object calls depend on it: server/calls.py)."""

from __future__ import annotations

import threading

import pytest
import trio

from dohost.server.executor import PoolExhausted, WorkerPool


async def test_a_blocked_worker_is_replaced_and_the_spare_is_reused() -> None:
    pool = WorkerPool(1, max_blocked=4)
    pool.start()
    try:
        token = trio.lowlevel.current_trio_token()
        release = trio.Event()

        async def wait_on_loop() -> str:
            await release.wait()
            return "released"

        def blocked_job() -> str:
            with pool.blocking():
                # The only worker waits for the loop; the job below needs another thread.
                result: str = trio.from_thread.run(wait_on_loop, trio_token=token)
                return result

        async def run_blocked(out: list[str]) -> None:
            out.append(await pool.run(blocked_job))

        out: list[str] = []
        async with trio.open_nursery() as n:
            n.start_soon(run_blocked, out)
            with trio.fail_after(5):
                # Without a replacement this would wait forever: the one worker is blocked.
                assert await pool.run(threading.current_thread) is not None
            release.set()
        assert out == ["released"]
        assert pool.blocked == 0
        threads_after_one_call = len([t for t in pool._threads if t.is_alive()])
        # A second blocking job reuses the spare instead of starting another thread.
        release = trio.Event()
        out.clear()
        async with trio.open_nursery() as n:
            n.start_soon(run_blocked, out)
            with trio.fail_after(5):
                await pool.run(threading.current_thread)
            release.set()
        assert len([t for t in pool._threads if t.is_alive()]) == threads_after_one_call
    finally:
        pool.close()


async def test_too_many_blocked_workers_is_an_error_not_a_thread_per_call() -> None:
    pool = WorkerPool(1, max_blocked=0)
    pool.start()
    try:

        def job() -> None:
            with pool.blocking():
                pass

        with pytest.raises(PoolExhausted):
            await pool.run(job)
    finally:
        pool.close()
