"""The etcd v3 client (server/etcd_client.py) against a real etcd: claims as
create-if-absent transactions, leases that take their keys with them, failover between
members, and clear errors when no member answers."""

from __future__ import annotations

import secrets

import pytest
import trio
from etcd_server import Etcd, free_ports

from dohost.core.errors import Code, DohostError
from dohost.server.etcd_client import EtcdClient, parse_endpoints, prefix_end


def _key(name: str) -> bytes:
    return f"/t-{secrets.token_hex(4)}/{name}".encode()


def test_parse_endpoints() -> None:
    assert parse_endpoints("etcd://a:1,b:2") == ["http://a:1", "http://b:2"]
    assert parse_endpoints("127.0.0.1:2379") == ["http://127.0.0.1:2379"]
    for bad in [
        "http://a:1",
        "etcd://",
        "etcd://a",
        "etcd://a:x",
        "etcd://a:1,,b:2",
        "etcd://:1",
        "a:0",
    ]:
        with pytest.raises(DohostError) as info:
            parse_endpoints(bad)
        assert info.value.code is Code.INVALID_ARGUMENT, bad


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\0"


async def test_create_is_a_claim_and_its_create_revision_an_epoch(etcd: Etcd) -> None:
    client = EtcdClient(parse_endpoints(etcd.url))
    try:
        key = _key("p1")
        created, kv = await client.create(key, b"node-a")
        assert created and kv.value == b"node-a" and kv.create_revision > 0
        again, kv2 = await client.create(key, b"node-b")
        assert not again and kv2.value == b"node-a" and kv2.create_revision == kv.create_revision
        # Only the claim of that epoch is released by delete_if.
        assert not await client.delete_if(key, kv.create_revision + 1000)
        assert await client.delete_if(key, kv.create_revision)
        created, kv3 = await client.create(key, b"node-b")
        assert created and kv3.create_revision > kv.create_revision  # epochs grow
        got = await client.get(key)
        assert got is not None and got.value == b"node-b"
        assert await client.get(_key("none")) is None
    finally:
        await client.aclose()


async def test_prefix_range_lists_keys_in_order(etcd: Etcd) -> None:
    client = EtcdClient(parse_endpoints(etcd.url))
    try:
        base = _key("")
        for name in [b"b", b"a", b"c"]:
            await client.put(base + name, name)
        await client.put(base[:-1] + b"0", b"outside")  # the byte after '/' : not under it
        kvs, revision = await client.get_prefix(base)
        assert [kv.key for kv in kvs] == [base + b"a", base + b"b", base + b"c"]
        assert revision >= max(kv.mod_revision for kv in kvs)
        assert await client.delete(base + b"a") == 1
        assert await client.delete(base + b"a") == 0
    finally:
        await client.aclose()


async def test_a_lease_takes_its_keys_when_it_ends(etcd: Etcd) -> None:
    client = EtcdClient(parse_endpoints(etcd.url))
    try:
        lease, ttl = await client.lease_grant(5)
        assert lease > 0 and ttl == 5
        assert 0 < await client.lease_keepalive(lease) <= 5
        key = _key("held")
        created, kv = await client.create(key, b"x", lease=lease)
        assert created and kv.lease == lease
        await client.lease_revoke(lease)
        assert await client.get(key) is None
        assert await client.lease_keepalive(lease) == 0  # gone: nothing held under it
        await client.lease_revoke(lease)  # already gone: not an error
    finally:
        await client.aclose()


async def test_an_expired_lease_cannot_be_renewed(etcd: Etcd) -> None:
    client = EtcdClient(parse_endpoints(etcd.url))
    try:
        lease, _ = await client.lease_grant(1)
        key = _key("short")
        await client.create(key, b"x", lease=lease)
        # Poll (bounded) until etcd has expired it: etcd's own clock, not a sleep.
        with trio.fail_after(30):
            while await client.get(key) is not None:
                await trio.sleep(0.1)
        assert await client.lease_keepalive(lease) == 0
    finally:
        await client.aclose()


async def test_no_member_answers_is_cluster_unavailable() -> None:
    a, b = free_ports(2)
    client = EtcdClient([f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"], timeout_s=1.0)
    try:
        with pytest.raises(DohostError) as info:
            await client.get(b"/x")
        assert info.value.code is Code.CLUSTER_UNAVAILABLE
        assert f"127.0.0.1:{a}" in info.value.message and f"127.0.0.1:{b}" in info.value.message
    finally:
        await client.aclose()


async def test_a_dead_endpoint_fails_over_to_the_next(etcd3: Etcd) -> None:
    client = EtcdClient(parse_endpoints(etcd3.url), timeout_s=2.0)
    try:
        key = _key("k")
        await client.put(key, b"1")
        await trio.to_thread.run_sync(etcd3.members[0].kill)
        # The first endpoint is dead; two of three members still form a quorum.
        with trio.fail_after(30):
            created, _ = await client.create(_key("after"), b"2")
        assert created
        got = await client.get(key)
        assert got is not None and got.value == b"1"
        assert client.failovers >= 1
    finally:
        await client.aclose()
