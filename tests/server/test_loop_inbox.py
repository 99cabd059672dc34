"""Completions handed to the loop from other threads (server/loop_inbox.py): a batch of
commit tickets resolved together wakes the loop once, and every waiter gets its result."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from dohost.core.errors import Code
from dohost.server import loop_inbox
from dohost.server.supervisor import wait_ticket
from dohost.storage.api import CommitTicket, after_resolving, resolving_together, storage_error


async def test_a_batch_resolved_together_wakes_the_loop_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wakes = 0
    wake = loop_inbox.LoopInbox._wake

    def counting(self: loop_inbox.LoopInbox) -> None:
        nonlocal wakes
        wakes += 1
        wake(self)

    monkeypatch.setattr(loop_inbox.LoopInbox, "_wake", counting)
    tickets = [CommitTicket() for _ in range(20)]
    results: dict[int, object] = {}

    async def waiter(i: int) -> None:
        results[i] = await wait_ticket(tickets[i])

    def committer() -> None:  # (another thread, as a kv shard's committer)
        with resolving_together():
            for i, t in enumerate(tickets):
                t.resolve(storage_error("lost") if i == 3 else None)

    async with trio.open_nursery() as n:
        for i in range(len(tickets)):
            n.start_soon(waiter, i)
        await trio.testing.wait_all_tasks_blocked()
        await trio.to_thread.run_sync(committer)
    assert wakes == 1
    assert len(results) == 20
    err = results.pop(3)
    assert getattr(err, "code", None) is Code.STORAGE_ERROR
    assert set(results.values()) == {None}


def test_after_resolving_runs_each_key_once_at_the_end_of_the_outer_block() -> None:
    ran: list[str] = []
    assert not after_resolving("k", lambda: ran.append("now"))  # outside: caller runs it
    with resolving_together():
        with resolving_together():
            assert after_resolving("k", lambda: ran.append("a"))
            assert after_resolving("k", lambda: ran.append("b"))  # same key: once
        assert after_resolving("j", lambda: ran.append("c"))
        assert ran == []
    assert ran == ["a", "c"]
    assert not after_resolving("k", lambda: None)  # the block is over


async def test_a_failing_call_does_not_strand_the_others(caplog: pytest.LogCaptureFixture) -> None:
    inbox = loop_inbox.current_inbox()
    ran: list[int] = []
    done = trio.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    def post_all() -> None:
        with resolving_together():
            inbox.post(ran.append, 1)
            inbox.post(fail)
            inbox.post(ran.append, 2)
            inbox.post(done.set)

    await trio.to_thread.run_sync(post_all)
    await done.wait()
    assert ran == [1, 2]
    assert "a call handed to the event loop failed" in caplog.text
