"""The SQLite store's files are private to the server's user.

A store's rows hold task arguments and results, and a row may name code the
executor runs: another user who can read the files reads secrets, one who can
write them (or plant the files before offload does) runs code as the server.
"Another user" is a chown to an unused uid: those tests need root (the test
machine runs them as root) and are skipped otherwise.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.store import SQLiteStore, StoreError
from executor.store.records import NewTask

OTHER_UID = 23457  # no such user here
FS_GROUP = 10001  # deploy/kubernetes/deployment.yaml's fsGroup
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def add_task(store: SQLiteStore) -> None:
    """One committed write, so the -wal and -shm files exist while the store is open."""
    store.enqueue([NewTask("k", b"", 0, 1.0)], 1.0)


def refused(path: Path, *, writer: bool = False) -> pytest.ExceptionInfo[StoreError]:
    with pytest.raises(StoreError) as info:
        SQLiteStore(str(path), writer=writer).close()
    return info


@pytest.fixture
def opened() -> Iterator[list[SQLiteStore]]:
    """Stores a test opens; closed at teardown."""
    stores: list[SQLiteStore] = []
    yield stores
    for store in stores:
        store.close()


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
@pytest.mark.parametrize("writer", [True, False])
def test_a_new_store_is_private_whatever_the_umask(
        tmp_path: Path, opened: list[SQLiteStore], umask: int, writer: bool) -> None:
    db = tmp_path / "var" / "data" / "tasks.db"
    old = os.umask(umask)
    try:
        opened.append(SQLiteStore(str(db), writer=writer))
        add_task(opened[0])
    finally:
        os.umask(old)
    assert mode(tmp_path / "var") == mode(tmp_path / "var" / "data") == 0o700
    files = ["tasks.db", "tasks.db-wal", "tasks.db-shm"] + ["tasks.db.lock"] * writer
    assert {name: mode(db.parent / name) for name in files} == dict.fromkeys(files, 0o600)
    assert (db.parent / "tasks.db.lock").exists() == writer


def test_an_existing_store_loses_others_permissions_and_keeps_the_group_s(
        tmp_path: Path, opened: list[SQLiteStore]) -> None:
    # What a store made before these checks looked like under umask 0o002.
    db = tmp_path / "tasks.db"
    opened.append(SQLiteStore(str(db)))
    add_task(opened[0])
    names = ["tasks.db", "tasks.db-wal", "tasks.db-shm"]
    for name in names:
        os.chmod(tmp_path / name, 0o664)
    opened.append(SQLiteStore(str(db)))
    assert {name: mode(tmp_path / name) for name in names} == dict.fromkeys(names, 0o660)


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_lock_file_symlink_is_refused_and_its_target_untouched(
        tmp_path: Path, target_exists: bool) -> None:
    victim = tmp_path / "victim"
    if target_exists:
        victim.write_text("precious\n")
        os.chmod(victim, 0o644)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    lock = store_dir / "tasks.db.lock"
    lock.symlink_to(victim)
    info = refused(store_dir / "tasks.db", writer=True)
    assert str(lock) in str(info.value) and "symbolic link" in str(info.value)
    if target_exists:
        assert victim.read_text() == "precious\n" and mode(victim) == 0o644
    else:
        assert not victim.exists()  # not created through the link either
    assert lock.is_symlink()


def test_a_lock_file_hard_link_is_refused_and_the_other_name_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "tasks.db.lock")
    info = refused(tmp_path / "tasks.db", writer=True)
    assert "hard links" in str(info.value)
    assert victim.read_text() == "precious\n"


@needs_root
def test_a_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "tasks.db.lock"
    lock.write_text("4242\n")
    os.chown(lock, OTHER_UID, -1)
    info = refused(tmp_path / "tasks.db", writer=True)
    assert str(lock) in str(info.value) and f"uid {OTHER_UID}" in str(info.value)
    assert lock.read_text() == "4242\n"


@needs_root
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
@pytest.mark.parametrize("writer", [True, False])
def test_a_file_of_another_user_is_refused(
        tmp_path: Path, opened: list[SQLiteStore], suffix: str, writer: bool) -> None:
    db = tmp_path / "tasks.db"
    opened.append(SQLiteStore(str(db)))
    add_task(opened[0])  # the -wal and -shm exist while it is open
    planted = tmp_path / f"tasks.db{suffix}"
    os.chown(planted, OTHER_UID, -1)
    info = refused(db, writer=writer)
    assert re.search(rf"{re.escape(str(planted))} belongs to uid {OTHER_UID}\b", str(info.value))


@needs_root
def test_a_planted_world_writable_database_is_refused(tmp_path: Path) -> None:
    # Another user's 0666 file (the attack), and one of ours made writable by all.
    db = tmp_path / "tasks.db"
    fd = os.open(db, os.O_CREAT | os.O_WRONLY, 0o666)
    os.close(fd)
    os.chmod(db, 0o666)
    os.chown(db, OTHER_UID, -1)
    assert f"uid {OTHER_UID}" in str(refused(db).value)
    os.chown(db, os.geteuid(), -1)
    info = refused(db)
    assert str(db) in str(info.value) and "writable by every user" in str(info.value)
    assert mode(db) == 0o666  # refused, not repaired: its tasks need a look first


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_world_writable_or_symlinked_wal_is_refused(
        tmp_path: Path, opened: list[SQLiteStore], suffix: str) -> None:
    db = tmp_path / "tasks.db"
    opened.append(SQLiteStore(str(db)))
    add_task(opened[0])
    side = tmp_path / f"tasks.db{suffix}"
    os.chmod(side, 0o666)
    assert "writable by every user" in str(refused(db).value)
    os.chmod(side, 0o600)
    elsewhere = tmp_path / "elsewhere"
    side.rename(elsewhere)
    side.symlink_to(elsewhere)
    assert "symbolic link" in str(refused(db).value)


@pytest.mark.parametrize("dir_mode", [0o777, 0o1777], ids=["0777", "1777"])  # sticky: /tmp
@pytest.mark.parametrize("writer", [True, False])
def test_a_store_in_a_world_writable_directory_is_refused(
        tmp_path: Path, dir_mode: int, writer: bool) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, dir_mode)
    info = refused(shared / "tasks.db", writer=writer)
    assert str(shared) in str(info.value) and "writable by every user" in str(info.value)
    assert list(shared.iterdir()) == []  # nothing created there


@needs_root
def test_a_store_in_another_user_s_directory_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, -1)
    info = refused(theirs / "tasks.db")
    assert str(theirs) in str(info.value) and f"uid {OTHER_UID}" in str(info.value)
    assert list(theirs.iterdir()) == []


@needs_root
def test_a_group_writable_volume_is_accepted(tmp_path: Path, opened: list[SQLiteStore]) -> None:
    # What the kubelet makes of a volume with fsGroup: the directory setgid and
    # group-writable, every file group-owned and group-writable, owners kept.
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, 0, FS_GROUP)
    os.chmod(volume, 0o2775)
    db = volume / "offload.db"
    SQLiteStore(str(db), writer=True).close()
    for path in volume.iterdir():
        os.chown(path, -1, FS_GROUP)
        os.chmod(path, 0o660)
    opened.append(SQLiteStore(str(db), writer=True))
    add_task(opened[0])
    assert mode(volume) == 0o2775 and mode(db) == mode(volume / "offload.db.lock") == 0o660
    assert mode(volume / "offload.db-wal") == 0o660  # SQLite copies the database's mode
    assert opened[0].counts()["pending"] == 1


@needs_root
def test_a_symlinked_database_path_is_followed_and_its_target_checked(
        tmp_path: Path, opened: list[SQLiteStore]) -> None:
    # An admin may keep the database elsewhere: the real file is what is
    # checked, opened and locked (SQLite keeps -wal and -shm beside it).
    real = tmp_path / "disk" / "tasks.db"
    real.parent.mkdir(mode=0o700)
    link = tmp_path / "etc" / "tasks.db"
    link.parent.mkdir(mode=0o700)
    link.symlink_to(real)
    opened.append(SQLiteStore(str(link), writer=True))
    add_task(opened[0])
    opened[0].sync()
    assert {p.name for p in real.parent.iterdir()} == {
        "tasks.db", "tasks.db-wal", "tasks.db-shm", "tasks.db.lock"}
    assert [p.name for p in link.parent.iterdir()] == ["tasks.db"]
    with pytest.raises(StoreError, match="another offload pool"):
        SQLiteStore(str(real), writer=True)  # one lock, whichever name is used
    opened.pop().close()
    os.chown(real, OTHER_UID, -1)
    info = refused(link)
    assert str(real) in str(info.value) and f"uid {OTHER_UID}" in str(info.value)
