"""The run directory is private or refused: no other user can plant a socket
in it, redirect it with a symlink, or hand us a directory of theirs.

Everything happens under a private temp dir standing in for /tmp (the real
/tmp/offload-<uid> is never touched). Tests that give a directory to another
uid need root (the test machine runs them as root) and are skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import ConfigError, Settings, run_dir_for, socket_path_for
from config.paths import RunDirError, ensure_private_dir
from server.supervision import Supervision

OTHER_UID = 23457
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown to another uid")


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def tmp_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh directory that ``tempfile.gettempdir()`` returns for the test
    (``tmp_path`` first: pytest finds its own base through gettempdir)."""
    base = tempfile.mkdtemp(prefix="of-tmp-")
    monkeypatch.setattr(tempfile, "tempdir", base)
    monkeypatch.setenv("TMPDIR", base)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def settings(tmp_base: str, tmp_path: Path) -> Settings:
    """Default settings (``run_dir`` unset) for a store of this test."""
    return Settings(store_url=f"sqlite:///{tmp_path / 'offload.db'}")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_default_run_dir_is_under_the_temp_dir(settings: Settings, tmp_base: str) -> None:
    user_dir = os.path.join(tmp_base, f"offload-{os.getuid()}")
    assert os.path.dirname(run_dir_for(settings)) == user_dir
    assert socket_path_for(settings) == os.path.join(run_dir_for(settings), "pool.sock")


@pytest.mark.parametrize("umask", [0o022, 0o277], ids=["022", "277"])
def test_both_levels_are_created_0700_whatever_the_umask(settings: Settings, tmp_base: str,
                                                        umask: int) -> None:
    leaf = run_dir_for(settings)
    old = os.umask(umask)
    try:
        ensure_private_dir(leaf)
        ensure_private_dir(leaf)  # a second start finds them and accepts them
    finally:
        os.umask(old)
    assert mode(os.path.dirname(leaf)) == 0o700
    assert mode(leaf) == 0o700
    assert os.lstat(leaf).st_uid == os.getuid()


def test_a_user_dir_left_0755_by_an_earlier_version_is_narrowed(settings: Settings,
                                                                umask_022: None) -> None:
    """os.makedirs used to leave the per-user directory 0755: nobody else
    could write in it, so it is taken over and made 0700, not refused."""
    leaf = run_dir_for(settings)
    os.makedirs(leaf)
    os.chmod(os.path.dirname(leaf), 0o755)
    os.chmod(leaf, 0o750)
    ensure_private_dir(leaf)
    assert (mode(os.path.dirname(leaf)), mode(leaf)) == (0o700, 0o700)


@pytest.mark.parametrize("owner", [
    pytest.param("us", id="ours"),
    pytest.param("other", id="another-uid", marks=needs_root),
])
def test_a_pre_created_world_writable_user_dir_is_refused(settings: Settings, owner: str) -> None:
    leaf = run_dir_for(settings)
    user_dir = os.path.dirname(leaf)
    os.mkdir(user_dir)
    os.chmod(user_dir, 0o777)
    if owner == "other":
        os.chown(user_dir, OTHER_UID, OTHER_UID)
    with pytest.raises(RunDirError) as err:
        ensure_private_dir(leaf)
    message = str(err.value)
    assert f"unsafe run directory {user_dir}: " in message
    assert "rwxrwxrwx" in message and "0777" in message
    assert (f"uid {OTHER_UID}, not by us" if owner == "other" else "writable by other users") \
        in message
    assert "remove it, or set run_dir" in message
    assert not os.path.exists(leaf)  # nothing made inside it
    assert mode(user_dir) == 0o777  # and it was left as found
    assert isinstance(err.value, ConfigError)


@needs_root
def test_a_user_dir_owned_by_another_uid_is_refused_even_if_private(settings: Settings) -> None:
    leaf = run_dir_for(settings)
    user_dir = os.path.dirname(leaf)
    os.mkdir(user_dir, 0o700)
    os.chown(user_dir, OTHER_UID, OTHER_UID)
    with pytest.raises(RunDirError, match=rf"{user_dir}: it is owned by uid {OTHER_UID}, "
                                          rf"not by us \(uid 0\)"):
        ensure_private_dir(leaf)
    assert not os.path.exists(leaf)


def test_a_symlink_at_the_leaf_is_refused_and_its_target_left_alone(settings: Settings,
                                                                   tmp_path: Path) -> None:
    leaf = run_dir_for(settings)
    os.makedirs(os.path.dirname(leaf), mode=0o700)
    target = tmp_path / "victim"
    target.mkdir()
    target.chmod(0o755)
    os.symlink(target, leaf)
    with pytest.raises(RunDirError, match=rf"{leaf}: it is a symlink to '{target}'"):
        ensure_private_dir(leaf)
    assert mode(target) == 0o755
    assert list(target.iterdir()) == []
    assert os.path.islink(leaf)


def test_a_symlink_at_the_user_dir_is_refused(settings: Settings, tmp_path: Path) -> None:
    leaf = run_dir_for(settings)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    os.symlink(target, os.path.dirname(leaf))
    with pytest.raises(RunDirError, match="it is a symlink to"):
        ensure_private_dir(leaf)
    assert mode(target) == 0o755
    assert list(target.iterdir()) == []


def test_a_file_at_the_leaf_is_refused(settings: Settings) -> None:
    leaf = run_dir_for(settings)
    os.makedirs(os.path.dirname(leaf), mode=0o700)
    Path(leaf).write_text("")
    with pytest.raises(RunDirError, match=rf"{leaf}: it is not a directory"):
        ensure_private_dir(leaf)


@needs_root
def test_a_leaf_owned_by_another_uid_is_refused(settings: Settings) -> None:
    leaf = run_dir_for(settings)
    os.makedirs(leaf, mode=0o700)
    os.chmod(os.path.dirname(leaf), 0o700)
    os.chown(leaf, OTHER_UID, OTHER_UID)
    with pytest.raises(RunDirError, match=rf"{leaf}: it is owned by uid {OTHER_UID}"):
        ensure_private_dir(leaf)
    assert os.lstat(leaf).st_uid == OTHER_UID and mode(leaf) == 0o700


# -- an explicit run_dir: the leaf is checked, the levels above are the user's --


def test_an_explicit_run_dir_is_made_0700_and_its_parents_left_alone(
        tmp_path: Path, umask_022: None) -> None:
    parent = tmp_path / "srv"
    parent.mkdir(mode=0o755)
    leaf = parent / "deep" / "run"
    ensure_private_dir(str(leaf))
    assert mode(leaf) == 0o700
    assert mode(parent) == 0o755 and mode(parent / "deep") == 0o755
    leaf.chmod(0o755)  # e.g. a RuntimeDirectory made 0755: narrowed on the next start
    ensure_private_dir(str(leaf))
    assert mode(leaf) == 0o700


def test_an_explicit_run_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o755)
    (tmp_path / "run").symlink_to(target)
    with pytest.raises(RunDirError, match="it is a symlink"):
        ensure_private_dir(str(tmp_path / "run"))
    assert mode(target) == 0o755


def test_an_explicit_world_writable_run_dir_is_refused_not_chmodded(tmp_path: Path) -> None:
    """run_dir = "/tmp" (say) must not turn the shared /tmp into 0700."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(RunDirError, match=r"writable by other users \(mode drwxrwxrwt \(1777\)"):
        ensure_private_dir(str(shared))
    assert mode(shared) == 0o1777


@needs_root
def test_an_explicit_run_dir_owned_by_another_uid_is_refused(tmp_path: Path) -> None:
    leaf = tmp_path / "run"
    leaf.mkdir(mode=0o700)
    os.chown(leaf, OTHER_UID, OTHER_UID)
    with pytest.raises(RunDirError, match=rf"owned by uid {OTHER_UID}"):
        ensure_private_dir(str(leaf))


def test_a_run_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match=rf"cannot create {blocker}"):
        ensure_private_dir(str(blocker / "run"))


# -- the gunicorn master's Supervision.load: fatal at start, refused on reload --


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OFFLOAD_CONFIG pointing at a file with ``run_dir`` in a private dir."""
    for key in list(os.environ):
        if key.startswith("OFFLOAD_"):
            monkeypatch.delenv(key)
    path = tmp_path / "offload.toml"
    path.write_text(f'run_dir = "{tmp_path / "run"}"\nexecutors = 2\n')
    monkeypatch.setenv("OFFLOAD_CONFIG", str(path))
    return path


def test_an_unsafe_run_dir_at_first_start_is_a_clear_exit(config_file: Path,
                                                          tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(mode=0o777)
    (tmp_path / "run").chmod(0o777)
    with pytest.raises(SystemExit) as exc:
        Supervision().load()
    assert str(exc.value).startswith(f"offload: unsafe run directory {tmp_path / 'run'}: ")


def test_an_unsafe_run_dir_on_reload_keeps_the_running_settings(
        config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sup = Supervision()
    first = sup.load()
    assert mode(tmp_path / "run") == 0o700
    (tmp_path / "run").chmod(0o777)
    config_file.write_text(f'run_dir = "{tmp_path / "run"}"\nexecutors = 5\n')
    assert sup.load() is first  # not the new settings (executors = 5)
    assert sup.settings is first
    err = capsys.readouterr().err
    assert "offload: reload refused, keeping the running settings: unsafe run directory" in err
    (tmp_path / "run").chmod(0o700)
    assert sup.load().executors == 5  # once it is private again, the edit applies


def test_an_os_error_on_reload_is_refused_too(config_file: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sup = Supervision()
    first = sup.load()

    def boom(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(sys.modules["server.supervision"], "ensure_private_dir", boom)
    assert sup.load() is first
    assert "reload refused" in capsys.readouterr().err
