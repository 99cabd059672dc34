"""The etcd backend's local view (server/ownership_etcd.py) and the response gate
(server/cluster.py): claims pass from etcd to the Host and back, and a node whose lease
may have lapsed is invalid, for good, and answers nothing but `fenced`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dohost.core.errors import Code, DohostError
from dohost.server.cluster import ClusterConfig, ClusterContext, ClusterNode
from dohost.server.etcd_client import EtcdClient
from dohost.server.http_types import HttpResponse
from dohost.server.ownership_etcd import EtcdOwnership


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_valid_until_the_lease_deadline_minus_the_margin() -> None:
    clock = Clock()
    own = EtcdOwnership("a", 8, clock=clock)
    assert not own.valid()  # no lease yet
    own.renewed(sent_at=100.0, ttl_s=3, margin_s=0.75)
    assert own.valid()
    clock.now = 102.24
    assert own.valid()
    clock.now = 102.25  # sent + TTL - margin: etcd cannot have expired it before 103
    assert not own.valid()
    assert "not renewed in time" in own.lost()
    own.renewed(sent_at=102.3, ttl_s=3, margin_s=0.75)  # a late grant extends it again
    assert own.valid()
    own.renewed(sent_at=90.0, ttl_s=3, margin_s=0.75)  # an older grant never shortens it
    assert own.valid()


def test_a_lost_lease_stays_lost_until_a_new_one() -> None:
    clock = Clock()
    own = EtcdOwnership("a", 8, clock=clock)
    own.renewed(100.0, 10, 1)
    own.lose("etcd says its lease expired")
    assert not own.valid() and own.lost() == "etcd says its lease expired"
    own.renewed(100.0, 10, 1)
    assert not own.valid()
    # A new lease: valid again, with none of the old claims.
    own.adopt({3: 7})
    own.claim([3])
    own.rejoined(100.0, 10, 1)
    assert own.valid() and own.held() == {} and own.take_released() == {}


def test_claims_pass_from_etcd_to_the_host_and_back() -> None:
    own = EtcdOwnership("a", 8, clock=Clock())
    own.adopt({1: 40, 2: 40, 5: 41})
    assert own.held() == {} and own.epoch_of(1) is None
    assert own.claim([1, 5, 6]) == {1: 40, 5: 41}  # 6 was never claimed in etcd
    assert own.held() == {1: 40, 5: 41} and own.epoch_of(5) == 41
    own.release([1, 2, 7])
    assert own.held() == {5: 41}
    assert own.take_released() == {1: 40, 2: 40}  # the keys to delete in etcd
    assert own.take_released() == {}
    with pytest.raises(DohostError) as info:
        own.claim([8])
    assert info.value.code is Code.INVALID_ARGUMENT
    own.close()
    with pytest.raises(DohostError) as info:
        own.claim([5])
    assert info.value.code is Code.SHUTTING_DOWN


async def test_the_gate_answers_fenced_once_the_lease_may_have_lapsed() -> None:
    clock = Clock()
    own = EtcdOwnership("a", 8, clock=clock)
    config = ClusterConfig(["http://127.0.0.1:1"], "c", "a", "http://127.0.0.1:2", lease_ttl_s=3)
    client = EtcdClient(config.endpoints)
    try:
        member = ClusterNode(config, client, own, clock=clock)

        class NoHost:
            def owns(self, _: bytes) -> bool:
                return False

        ctx = ClusterContext(member, NoHost(), "k", run_dir=Path("/nonexistent"))  # type: ignore[arg-type]
        own.renewed(100.0, 3, config.margin_s())
        ok = HttpResponse(200, [], b"1")
        assert ctx.gate(ok) is ok
        clock.now = 103.0
        gated = ctx.gate(HttpResponse(200, [], b"1"))
        assert gated.status == 503
        assert dict(gated.headers)["x-dohost-error"] == "fenced"
        assert "lost its cluster lease" in json.loads(gated.body)["error"]["message"]
    finally:
        await client.aclose()
