"""Object-to-object calls: routing, call chains and deadlock detection.

A call leaves the caller's worker thread through the activation's `on_call` hook (see
runtime/call_imports.py), which blocks that thread on `trio.from_thread.run` into
`CallRouter.route` on the loop. There the target is resolved within the caller's
tenant and the call is delivered as an ordinary fetch event through the supervisor: the
callee queues on its own inbox lock, runs with its own limits and its own transaction,
and its response is released to the caller after its commit (the output gate), like an
HTTP response.

No silent deadlock. A caller holds its own inbox lock while it waits, so a call that
must wait, directly or not, for an event that waits for the caller would hang. Every
event has an `EventNode`: the slot it holds, the node of the event that called it
(`parent`, so the *call chain* is the parent links), and the slot it waits for while it
is in a call (`waiting_for`, cleared when the callee releases that slot). Before a call
waits, on the loop thread (so nothing moves meanwhile), the router refuses it with
`call_cycle` when:

1. the target is already in the caller's chain (A → B → A): that object waits for
   this very call; the message names the chain;
2. following "the event holding the target slot, the slot *it* waits for, the event
   holding that, ..." reaches the caller: two chains that would wait on each other (A's
   event calls B while B's event calls A). The call that would close the cycle fails;
   the other proceeds once the failed caller's event ends.

Both checks are exact for inbox locks, the only thing a caller waits for that another
event holds (commits complete on their own), so a call is refused only when waiting
would really never end. A call more than `max_depth` (16) calls below the event that
started the chain fails with `call_depth`.

Calls never deadlock on threads either: the worker blocked in a call is replaced while
it waits (WorkerPool.blocking).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from dohost.core.calls import (
    DEFAULT_MAX_CALL_DEPTH,
    CallTarget,
    chain_text,
    error_response,
    with_caller,
)
from dohost.core.envelopes import Request, Response, encode_request
from dohost.core.errors import Code, DohostError
from dohost.core.ids import ObjectId
from dohost.runtime.event import CallHook
from dohost.server.executor import PoolExhausted
from dohost.storage.alarm_index import AlarmEntry

if TYPE_CHECKING:
    from dohost.server.node import NodeContext
    from dohost.server.supervisor import ObjectSlot, Supervisor

log = logging.getLogger("dohost.calls")

# What a call that could not be made may fail with (anything else is `call_failed`).
_CALL_CODES = (Code.CALL_CYCLE, Code.CALL_DEPTH, Code.CALL_FAILED)
# Steps of the wait-for walk before it gives up (it cannot loop: see _closes_cycle).
_MAX_WALK = 100_000


class EventNode:
    """One event while it holds its object's inbox lock (see the module docstring)."""

    __slots__ = ("depth", "parent", "slot", "waiting_for", "waiting_remote")

    def __init__(self, slot: ObjectSlot, parent: EventNode | None) -> None:
        self.slot = slot
        self.parent = parent
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.waiting_for: ObjectSlot | None = None
        # `--processes N`: the key of another node's object this event is calling.
        self.waiting_remote: tuple[str, str, bytes] | None = None

    def chain(self) -> list[EventNode]:
        """The call chain ending at this event, first caller first."""
        out: list[EventNode] = []
        node: EventNode | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out


def slot_label(slot: ObjectSlot) -> str:
    """`class/name`, or `class/#<id prefix>` for an object addressed only by id."""
    if slot.name is not None:
        return f"{slot.class_name}/{slot.name}"
    return f"{slot.class_name}/#{slot.object_id.hex[:16]}"


class CallRouter:
    def __init__(self, supervisor: Supervisor, max_depth: int = DEFAULT_MAX_CALL_DEPTH) -> None:
        self._sup = supervisor
        self.max_depth = max_depth
        # `--processes N`: calls to objects another node owns go there (server/node.py).
        self.remote: NodeContext | None = None

    # ------------------------------------------------------------------ worker side

    def hook(self, slot: ObjectSlot) -> CallHook:
        """The `on_call` hook of an activation of `slot`. It runs on the worker thread
        of the slot's current event, whose node is `slot.holder` (the slot lock is
        held for as long as the event runs)."""
        pool = self._sup.pool

        def on_call(
            target: CallTarget, request: Request, alarm_committed: int | None
        ) -> Response | DohostError:
            try:
                with pool.blocking():
                    return trio.from_thread.run(
                        self.route,
                        slot,
                        target,
                        request,
                        alarm_committed,
                        trio_token=pool.token,
                    )
            except PoolExhausted as e:
                return DohostError(
                    Code.CALL_FAILED, f"the host is overloaded ({e}); retry the call later"
                )
            except (trio.RunFinishedError, trio.Cancelled):
                return DohostError(Code.CALL_FAILED, "the host is shutting down")

        return on_call

    # ------------------------------------------------------------------ loop side

    async def route(
        self,
        caller_slot: ObjectSlot,
        target: CallTarget,
        request: Request,
        alarm_committed: int | None,
    ) -> Response | DohostError:
        """Deliver one call and return the callee's response (its failure as an error
        response), or the error of a call that could not be made."""
        sup = self._sup
        caller = caller_slot.holder
        if caller is None:  # cannot happen while the caller's event runs
            return DohostError(Code.INTERNAL, "call from an object that holds no event")
        if alarm_committed is not None and sup.on_alarm_committed is not None:
            # The call's commit point made this alarm durable: schedule it now, even if
            # the event fails later (its rollback no longer reaches that commit).
            sup.on_alarm_committed(
                AlarmEntry(
                    caller_slot.tenant,
                    caller_slot.class_name,
                    caller_slot.object_id.raw,
                    caller_slot.name,
                    sup.backend_of(caller_slot),
                    alarm_committed,
                )
            )
        try:
            oid = self._resolve(caller_slot.tenant, target)
        except DohostError as e:
            return e
        refused = self._refuse(caller, caller_slot.tenant, target.class_name, oid)
        if refused is not None:
            return refused
        data = encode_request(
            with_caller(
                request, caller_slot.class_name, caller_slot.object_id.hex, caller_slot.name
            )
        )
        remote = self.remote
        if remote is not None and not remote.owns(oid.raw):
            return await self._call_remote(remote, caller, caller_slot.tenant, target, oid, data)
        slot = sup.slot_for(caller_slot.tenant, target.class_name, oid)
        caller.waiting_for = slot
        try:
            result = await sup.deliver(
                caller_slot.tenant, target.class_name, oid, "fetch", data, parent=caller
            )
        except DohostError as e:
            return DohostError(Code.CALL_FAILED, f"call to {target.label()} failed: {e}")
        finally:
            caller.waiting_for = None
        if result.error is not None:
            return error_response(result.error)
        assert result.response is not None
        return result.response

    async def _call_remote(
        self,
        remote: NodeContext,
        caller: EventNode,
        tenant: str,
        target: CallTarget,
        oid: ObjectId,
        data: bytes,
    ) -> Response | DohostError:
        """A call to an object of another node: the chain goes with it, so the owner
        refuses a call back into it (`call_cycle`) and one too deep (`call_depth`)."""
        chain = [[n.slot.class_name, n.slot.object_id.hex, n.slot.name] for n in caller.chain()]
        meta = {
            "tenant": tenant,
            "class": target.class_name,
            "id": oid.hex,
            "name": oid.name,
            "chain": chain,
        }
        # The wait-for edge is visible before the call leaves: whichever of two
        # crossing calls arrives last then sees the cycle (see `_closes_cycle`).
        caller.waiting_remote = (tenant, target.class_name, oid.raw)
        try:
            got = await remote.call(remote.owner(oid.raw), meta, data)
        finally:
            caller.waiting_remote = None
        if isinstance(got, DohostError) and got.code not in _CALL_CODES:
            return DohostError(Code.CALL_FAILED, f"call to {target.label()}: {got.message}")
        return got

    async def deliver_remote(
        self,
        tenant: str,
        class_name: str,
        oid: ObjectId,
        data: bytes,
        chain: list[tuple[str, bytes, str | None]],
    ) -> Response | DohostError:
        """A call from an object of another node (node_routes.py): `chain` is the call
        chain that led to it, first caller first. It is checked like a local chain
        (cycle along it, depth); a wait-for cycle through events of two nodes is not
        seen here (see ARCHITECTURE.md, "Process model")."""
        from dohost.server.supervisor import ObjectSlot

        parent: EventNode | None = None
        for class_of, raw, name in chain:
            parent = EventNode(ObjectSlot(tenant, class_of, ObjectId(raw, name)), parent)
        if parent is None:
            return DohostError(Code.BAD_REQUEST, "a node call needs its caller's chain")
        refused = self._refuse(parent, tenant, class_name, oid)
        if refused is not None:
            return refused
        try:
            result = await self._sup.deliver(tenant, class_name, oid, "fetch", data, parent=parent)
        except DohostError as e:
            return DohostError(Code.CALL_FAILED, f"call to {class_name} failed: {e}")
        if result.error is not None:
            return error_response(result.error)
        assert result.response is not None
        return result.response

    def _resolve(self, tenant: str, target: CallTarget) -> ObjectId:
        """The target's object id in the caller's tenant (call_failed when there is no
        such class, or the id is not one of that class's)."""
        try:
            cls = self._sup.classes.get(tenant, target.class_name)
        except DohostError as e:
            raise DohostError(
                Code.CALL_FAILED,
                f"call to {target.label()}: {e.code.code}: {e.message} "
                "(calls reach the classes of the caller's own tenant)",
            ) from None
        try:
            if target.name is not None:
                return cls.id_for_name(target.name)
            assert target.id_hex is not None
            return cls.verified_id(ObjectId(bytes.fromhex(target.id_hex)))
        except (DohostError, ValueError) as e:
            detail = e.message if isinstance(e, DohostError) else "not hex"
            raise DohostError(
                Code.CALL_FAILED,
                f"call to {target.label()}: invalid_id: {detail} (an id is only valid "
                f"in the class that minted it)",
            ) from None

    def _refuse(
        self, caller: EventNode, tenant: str, class_name: str, oid: ObjectId
    ) -> DohostError | None:
        """call_cycle or call_depth when the call must not wait; None when it may."""
        key = (tenant, class_name, oid.raw)
        chain = caller.chain()
        for node in chain:
            if node.slot.key == key:
                labels = [slot_label(n.slot) for n in chain] + [slot_label(node.slot)]
                return DohostError(
                    Code.CALL_CYCLE,
                    f"call cycle: {chain_text(labels)}: {slot_label(node.slot)} is waiting "
                    "for this call and handles one event at a time, so the call would "
                    "never be answered",
                )
        if caller.depth + 1 > self.max_depth:
            labels = [slot_label(n.slot) for n in chain]
            return DohostError(
                Code.CALL_DEPTH,
                f"call chain too deep: this call would be {caller.depth + 1} calls below "
                f"the event that started the chain (limit {self.max_depth}): "
                f"{chain_text(labels)} → {class_name}/…",
            )
        holders = self._closes_cycle(caller, key)
        if holders is not None:
            mine = chain_text([slot_label(n.slot) for n in chain])
            theirs = "; ".join(chain_text([slot_label(n.slot) for n in h.chain()]) for h in holders)
            return DohostError(
                Code.CALL_CYCLE,
                f"call cycle between concurrent events: this event ({mine}) would wait "
                f"for an event that waits for it ({theirs}); the call was refused so "
                "that neither waits forever",
            )
        return None

    def _closes_cycle(
        self, caller: EventNode, key: tuple[str, str, bytes]
    ) -> list[EventNode] | None:
        """The events on the wait path from the target slot back to the caller's chain,
        if waiting for that slot would close a cycle; else None.

        The path follows "the event holding the slot, the slot it waits for, ..." and
        closes a cycle when it reaches a slot of the caller's chain (the caller's own,
        or an ancestor's: every event of a chain waits for the next). An event waiting
        for another node's object (`waiting_remote`) ends the local path: a cycle if
        that object is in the chain — the chain of a call from another node names its
        events there, so two events of two nodes calling each other are seen — else
        unknown (a cycle through three or more hops across nodes is not followed).

        The local wait-for graph has no cycle (every edge was checked when it was added,
        and a slot changing hands gives it a holder that waits for nothing yet), so the
        walk ends."""
        chain_keys = {n.slot.key for n in caller.chain()}
        slot = self._sup.slot_if_exists(key)
        path: list[EventNode] = []
        steps = 0
        while slot is not None and steps < _MAX_WALK:
            steps += 1
            holder = slot.holder
            if holder is None:
                return None
            if holder is caller or holder.slot.key in chain_keys:
                return path
            path.append(holder)
            if holder.waiting_for is not None:
                slot = holder.waiting_for
            elif holder.waiting_remote is not None:
                return path if holder.waiting_remote in chain_keys else None
            else:
                return None
        return None
