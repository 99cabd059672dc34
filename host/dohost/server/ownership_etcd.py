"""The `etcd` ownership backend, as the Host and its storage see it: which partitions this
node holds, under which epochs, and whether its lease still stands.

The etcd side (membership, the claim transactions, the lease keep-alive) is done by
server/cluster.py on the event loop; this object is the node's local, thread-safe view of
the result, read by the committer threads and the replicator's output gate
(`storage/fencing.py`'s `Claims`):

- A claim of partition p is the key `<prefix>claims/<p>`, created in a transaction that
  requires it absent, under this node's lease; its **epoch is the key's create
  revision**, which etcd makes larger for every new claim. The cluster code `adopt`s
  claims it obtained; the Host's `claim` then takes them (fences its storage, loads
  alarms, serves). `release` drops them from the view at once; the cluster code deletes
  the keys afterwards (`take_released`).
- **The lease deadline.** etcd deletes our claims when our lease expires, measured from
  the last keep-alive it granted. The cluster code records, at each granted keep-alive,
  `sent + TTL - margin` (`sent`: our clock when the keep-alive was *sent*, which is no
  later than when etcd renewed it). `valid()` is false from that moment on: the
  committer refuses batches, the replica output gate refuses to acknowledge, and the
  node answers nothing more (server/cluster.py gates every response on it) — all before
  etcd can have expired the lease and let another node claim. A lost lease stays lost:
  the node drops everything it served and rejoins with a new lease (`rejoined`), and
  claims afresh, with new epochs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from dohost.core.errors import Code, DohostError
from dohost.core.partitions import check_partition_count


class EtcdOwnership:
    """This node's claims in an etcd cluster, as a thread-safe local view."""

    def __init__(
        self, node_name: str, partitions: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node_name = node_name
        self.count = check_partition_count(partitions)
        self.clock = clock
        self._mutex = threading.Lock()
        self._adopted: dict[int, int] = {}  # claimed in etcd, not yet taken by the Host
        self._held: dict[int, int] = {}  # partition -> epoch the Host serves under
        self._released: dict[int, int] = {}  # released by the Host, keys not yet deleted
        self._deadline = float("-inf")  # valid() until then (clock())
        self._lost = "its etcd lease was never granted"
        self._closed = False

    # ------------------------------------------------------------------ cluster side

    def renewed(self, sent_at: float, ttl_s: float, margin_s: float) -> None:
        """A keep-alive sent at `sent_at` was granted `ttl_s` more seconds."""
        with self._mutex:
            if self._lost_for_good():
                return
            self._deadline = max(self._deadline, sent_at + ttl_s - margin_s)

    def lose(self, reason: str) -> None:
        """The lease is gone (expired in etcd, or not renewed in time): valid() is false
        from now on, for good."""
        with self._mutex:
            self._deadline = float("-inf")
            self._lost = reason

    def _lost_for_good(self) -> bool:
        return self._deadline == float("-inf") and self._lost != "its etcd lease was never granted"

    def rejoined(self, sent_at: float, ttl_s: float, margin_s: float) -> None:
        """A new lease after a lost one: every claim of the old one is gone (their keys
        died with it); valid again until the new deadline."""
        with self._mutex:
            self._held.clear()
            self._adopted.clear()
            self._released.clear()
            self._deadline = sent_at + ttl_s - margin_s

    def deadline(self) -> float:
        return self._deadline

    def adopt(self, claims: dict[int, int]) -> None:
        """Claims this node now holds in etcd (partition -> epoch)."""
        with self._mutex:
            self._adopted.update(claims)

    def take_released(self) -> dict[int, int]:
        """What the Host released since the last call: the keys to delete in etcd."""
        with self._mutex:
            out, self._released = self._released, {}
            return out

    # ------------------------------------------------------------------ the Host's side

    def claim(self, partitions: Iterable[int], wait: float = 0.0) -> dict[int, int]:
        """Take the adopted claims among `partitions` (and those already held). `wait`
        is unused: claiming in etcd is the cluster code's job, done before this."""
        ps = list(partitions)
        bad = [p for p in ps if not 0 <= p < self.count]
        if bad:
            raise DohostError(
                Code.INVALID_ARGUMENT,
                f"partition {bad[0]} does not exist (this cluster has {self.count})",
            )
        with self._mutex:
            if self._closed:
                raise DohostError(Code.SHUTTING_DOWN, "the ownership backend is closed")
            out: dict[int, int] = {}
            for p in ps:
                if p in self._adopted:
                    self._held[p] = self._adopted.pop(p)
                if p in self._held:
                    out[p] = self._held[p]
            return out

    def release(self, partitions: Iterable[int]) -> None:
        with self._mutex:
            for p in partitions:
                epoch = self._held.pop(p, None)
                if epoch is None:
                    epoch = self._adopted.pop(p, None)
                if epoch is not None:
                    self._released[p] = epoch

    def epoch_of(self, partition: int) -> int | None:
        return self._held.get(partition)

    def held(self) -> dict[int, int]:
        with self._mutex:
            return dict(self._held)

    def valid(self) -> bool:
        """Whether this node's lease certainly still stands in etcd (see the module doc)."""
        return self.clock() < self._deadline

    def lost(self) -> str:
        if self.clock() >= self._deadline and self._deadline != float("-inf"):
            return "its etcd lease was not renewed in time (the node could not reach etcd)"
        return self._lost

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            self._adopted.clear()
