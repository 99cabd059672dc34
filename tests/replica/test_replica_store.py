"""The replica store contract, run against both backends: a directory (`file://`) and a
real S3 server (SeaweedFS on loopback, requests signed with our SigV4)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from seaweedfs_server import SeaweedFS, free_ports

from dohost.core.errors import Code, DohostError
from dohost.core.replica_keys import segment_key
from dohost.replica.file_store import FileReplicaStore
from dohost.replica.s3_store import S3ReplicaStore
from dohost.replica.store import ReplicaKeyExists, ReplicaStore, S3Options, open_replica_store

SEG = segment_key(7, 3, 1)


def test_put_new_then_get(store: ReplicaStore) -> None:
    store.put_new(SEG, b"segment one")
    assert store.get(SEG) == b"segment one"
    store.put_new("empty", b"")
    assert store.get("empty") == b""
    big = bytes(range(256)) * 8192  # 2 MiB, past any single-write or single-chunk size
    store.put_new("big", big)
    assert store.get("big") == big


def test_put_new_refuses_an_existing_key_and_keeps_the_first_bytes(store: ReplicaStore) -> None:
    store.put_new(SEG, b"first owner")
    with pytest.raises(ReplicaKeyExists) as info:
        store.put_new(SEG, b"second owner")
    assert info.value.code is Code.ALREADY_EXISTS
    assert SEG in info.value.message
    assert store.get(SEG) == b"first owner"


def test_concurrent_creators_of_one_key_exactly_one_wins(store: ReplicaStore) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        try:
            store.put_new(SEG, f"writer {i}".encode())
            outcome = f"won {i}"
        except ReplicaKeyExists:
            outcome = "lost"
        except DohostError as e:  # S3 may answer 409 while a conditional write is in flight
            outcome = f"failed {e.code.code}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1, results
    assert all(
        r == "lost" or r == "failed replica_unavailable" for r in results if r not in winners
    )
    assert store.get(SEG) == f"writer {winners[0].split()[1]}".encode()


def test_get_of_a_missing_key_is_not_found(store: ReplicaStore) -> None:
    with pytest.raises(DohostError) as info:
        store.get("p00001/nothing-here")
    assert info.value.code is Code.NOT_FOUND
    assert "p00001/nothing-here" in info.value.message


def test_list_by_prefix_in_key_order(store: ReplicaStore) -> None:
    keys = [segment_key(1, 2, s) for s in (3, 1, 2)] + [
        segment_key(1, 10, 1),
        segment_key(12, 1, 1),
        "p00001/e00000000000000000002/start",
        "FORMAT",
    ]
    for k in keys:
        store.put_new(k, k.encode())
    assert store.list("") == sorted(keys)
    assert store.list("p00001/") == sorted(k for k in keys if k.startswith("p00001/"))
    assert store.list("p00001/e00000000000000000002/") == sorted(
        k for k in keys if k.startswith("p00001/e00000000000000000002/")
    )
    assert store.list("p0001") == [segment_key(12, 1, 1)]  # a prefix may end mid-part
    assert store.list("p00001/e00000000000000000002/s0") == sorted(
        segment_key(1, 2, s) for s in (1, 2, 3)
    )
    assert store.list("p00099/") == []


def test_s3_list_pages_through_more_keys_than_one_answer_holds(s3_store: S3ReplicaStore) -> None:
    s3_store.page_size = 7  # S3's default page is 1,000 keys; small pages test the same path
    keys = [segment_key(3, 1, s) for s in range(1, 24)]
    for k in keys:
        s3_store.put_new(k, b"x")
    assert s3_store.list("p00003/") == keys
    assert s3_store.pages_listed == 4


def test_delete_removes_and_is_idempotent(store: ReplicaStore) -> None:
    store.put_new(SEG, b"old")
    store.delete(SEG)
    store.delete(SEG)
    store.delete("never-written")
    assert store.list("") == []
    store.put_new(SEG, b"new")  # a deleted key can be created again
    assert store.get(SEG) == b"new"


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "../escape", "a/../b", ".hidden", "a/.tmp-x", "sp ace", "é"]
)
def test_hostile_keys_are_refused_before_any_io(store: ReplicaStore, key: str) -> None:
    for op in (lambda: store.put_new(key, b"x"), lambda: store.get(key)):
        with pytest.raises(DohostError) as info:
            op()
        assert info.value.code is Code.INVALID_ARGUMENT
    assert store.list("") == []


def test_a_bad_prefix_is_refused(store: ReplicaStore) -> None:
    for prefix in ("../", "/x", "a//", "x y"):
        with pytest.raises(DohostError) as info:
            store.list(prefix)
        assert info.value.code is Code.INVALID_ARGUMENT


# ------------------------------------------------------------------ file backend


def test_file_store_never_shows_a_partial_object(tmp_path: Path) -> None:
    """What a crash mid-write leaves (a temporary file) is neither listed nor readable,
    and does not block the key."""
    store = FileReplicaStore(str(tmp_path))
    folder = tmp_path / "p00001"
    folder.mkdir()
    (folder / ".tmp-deadbeef").write_bytes(b"half a segm")
    assert store.list("") == []
    store.put_new("p00001/s1", b"whole")
    assert store.list("") == ["p00001/s1"]
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-deadbeef", "s1"]


def test_file_store_over_a_file_where_a_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "p00001").write_bytes(b"not a folder")
    store = FileReplicaStore(str(tmp_path))
    with pytest.raises(DohostError) as info:
        store.put_new("p00001/s1", b"x")
    assert info.value.code is Code.REPLICA_UNAVAILABLE
    with pytest.raises(DohostError) as info:
        store.get("p00001/s1")
    assert info.value.code is Code.NOT_FOUND
    assert store.list("p00001/") == []


# ------------------------------------------------------------------------- URLs


def test_urls_name_a_backend(tmp_path: Path) -> None:
    store = open_replica_store(f"file://{tmp_path}/r")
    assert isinstance(store, FileReplicaStore) and store.root == f"{tmp_path}/r"
    for bad in ("file://host/x", "file:relative", "ftp://x/y", "/just/a/path", "s3://"):
        with pytest.raises(DohostError) as info:
            open_replica_store(bad, env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
        assert info.value.code is Code.INVALID_ARGUMENT, bad


def test_s3_settings_come_from_flags_then_the_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "env-key",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
    }
    store = open_replica_store("s3://bucket-a/some/prefix", env=env)
    assert store.description == "s3://bucket-a/some/prefix at http://127.0.0.1:9"
    assert "env-secret" not in repr(vars(store))
    flags = S3Options(endpoint="http://127.0.0.1:10", region="ap-south-1", access_key="k")
    merged = flags.from_env(env)
    assert (merged.endpoint, merged.region, merged.access_key, merged.secret_key) == (
        "http://127.0.0.1:10",
        "ap-south-1",
        "k",
        "env-secret",
    )
    with pytest.raises(DohostError) as info:
        open_replica_store("s3://bucket-a/p", env={})
    assert info.value.code is Code.INVALID_ARGUMENT
    assert "AWS_ACCESS_KEY_ID" in info.value.message
    with pytest.raises(DohostError):
        open_replica_store("s3://Bad_Bucket/p", env=env)


def test_an_unreachable_s3_endpoint_is_unavailable_with_a_clear_message() -> None:
    (closed,) = free_ports(1)  # nothing listens there any more
    store = open_replica_store(
        "s3://bucket-a/p",
        S3Options(endpoint=f"http://127.0.0.1:{closed}", timeout_s=5),
        env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
    )
    with pytest.raises(DohostError) as info:
        store.put_new("k", b"x")
    assert info.value.code is Code.REPLICA_UNAVAILABLE
    assert "writing 'k'" in info.value.message and "ConnectError" in info.value.message


# --------------------------------------------------------------- the S3 server


def test_seaweedfs_refuses_if_none_match_on_an_existing_key(seaweedfs: SeaweedFS) -> None:
    """The fencing primitive the design relies on, asked of the server directly (a signed
    PUT with `If-None-Match: *` answers 412 and leaves the object as it was)."""
    store = seaweedfs.store("dohost-test", "fencing")
    try:
        store.put_new("k", b"epoch 1")
        response = store._request(
            "PUT",
            "/dohost-test/fencing/k",
            "probe",
            body=b"epoch 2",
            headers={"if-none-match": "*"},
        )
        assert response.status_code == 412
        assert b"PreconditionFailed" in response.content
        plain = store._request("PUT", "/dohost-test/fencing/k2", "probe", body=b"a")
        assert plain.status_code == 200
        again = store._request("PUT", "/dohost-test/fencing/k2", "probe", body=b"b")
        assert again.status_code == 200  # without the header S3 overwrites: the header matters
        assert store.get("k") == b"epoch 1"
    finally:
        store.close()


def test_s3_with_a_wrong_secret_is_refused_by_the_server(seaweedfs: SeaweedFS) -> None:
    store = open_replica_store(
        "s3://dohost-test/p",
        S3Options(endpoint=seaweedfs.endpoint, access_key=seaweedfs.access_key, secret_key="x"),
        env={},
    )
    with pytest.raises(DohostError) as info:
        store.put_new("k", b"x")
    assert info.value.code is Code.REPLICA_UNAVAILABLE
    assert "HTTP 403" in info.value.message


def test_s3_a_missing_bucket_is_unavailable_not_a_missing_key(seaweedfs: SeaweedFS) -> None:
    store = seaweedfs.store("no-such-bucket-here")
    with pytest.raises(DohostError) as info:
        store.get("k")
    assert info.value.code is Code.REPLICA_UNAVAILABLE
    assert "NoSuchBucket" in info.value.message
