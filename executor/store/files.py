"""The SQLite store's files, private to the server's user.

They hold every task's arguments and results, and a row may name code the
executor imports and runs (``ref``). So (``private_file``, ``open_private``):
a missing directory is created 0700 (each level), the database 0600 whatever
the umask (SQLite gives ``-wal`` and ``-shm`` the database's mode), and
others' permission bits are removed from files we own (stores made before
were 0644). StoreError refuses, naming the path, owner, mode and the fix, a
directory writable by others (sticky or not: /tmp is refused) or owned by
another user; a database, ``-wal``, ``-shm`` or ``.lock`` owned by another
user or writable by others; a ``-wal``, ``-shm`` or ``.lock`` that is a
symlink. Root counts as our own (it can change the files anyway). Group
write is allowed: a Kubernetes volume with ``fsGroup`` is group-writable.
The database path itself may be a symlink (an admin's choice): the file it
resolves to is the one checked, opened and locked, and its directory too.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress

from executor.store.records import StoreError


def _trusted_uids() -> frozenset[int]:
    """Who may own the store's files and directory: this process's user, and
    root (who can read and change them anyway)."""
    return frozenset((os.geteuid(), 0))


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _make_private_dirs(directory: str) -> None:
    """Create ``directory`` and each missing parent, mode 0700 whatever the
    umask; existing levels are left as they are. Raises OSError."""
    missing: list[str] = []
    while not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: checked like an existing one
        os.chmod(level, 0o700)  # mkdir's mode was masked by the umask


def _check_dir(store: str, directory: str) -> None:
    """Raise StoreError unless ``directory`` (symlinks followed) belongs to us or
    root and others cannot write to it. Whoever can write to it can plant or
    swap the store's files (``-wal``, ``-shm``, ``.lock``) before SQLite opens
    them, sticky bit or not. Group write is allowed (``fsGroup`` volumes)."""
    st = os.stat(directory)
    if st.st_mode & stat.S_IWOTH:
        raise StoreError(
            f"the SQLite store {store}: its directory {directory} is writable by every user "
            f"(mode {_mode(st)}), who could plant the store's files before offload opens "
            "them; put the store in a directory only this user (and its group) can write, "
            "e.g. sqlite:////var/lib/offload/offload.db (a missing directory is created "
            "with mode 0700)")
    if st.st_uid not in _trusted_uids():
        raise StoreError(
            f"the SQLite store {store}: its directory {directory} belongs to uid "
            f"{st.st_uid} (mode {_mode(st)}), who could replace the store's files; it must "
            f"belong to this user (uid {os.geteuid()}) or root: chown it, or put the store "
            "in a directory of this user")


def _check_file(store: str, path: str, st: os.stat_result) -> None:
    """Raise StoreError unless ``st`` (``path``'s, not following a symlink) is a
    regular file that belongs to us or root and others cannot write to."""
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(
            f"the SQLite store {store}: {path} is a symbolic link; offload does not follow "
            "one there (it could aim offload's writes at another file): remove it")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"the SQLite store {store}: {path} is not a regular file "
                         f"(mode {_mode(st)}): remove it")
    if st.st_uid not in _trusted_uids():
        raise StoreError(
            f"the SQLite store {store}: {path} belongs to uid {st.st_uid} (mode "
            f"{_mode(st)}), not to this user (uid {os.geteuid()}); another user's rows "
            "can make offload run code: if the file is this user's, chown it to uid "
            f"{os.geteuid()}, else remove it")
    if st.st_mode & stat.S_IWOTH:
        raise StoreError(
            f"the SQLite store {store}: {path} is writable by every user (mode {_mode(st)}); "
            "anyone may have added tasks to it, and a task can name code that offload "
            f"runs: check its tasks, then chmod o-w {path}")


def open_private(store: str, path: str, flags: int) -> int:
    """Open ``path`` with ``flags`` (created mode 0600 with ``O_CREAT``), never
    through a symlink, once ``_check_file`` accepts it; remove others'
    permission bits if it is ours. Returns the fd, for the caller to close.
    Raises StoreError, or OSError (FileNotFoundError if missing, without O_CREAT)."""
    with suppress(FileNotFoundError):
        _check_file(store, path, os.lstat(path))
    # O_NOFOLLOW and the fstat: the file opened is checked, even if it was
    # swapped since the lstat; O_NONBLOCK: a FIFO swapped in cannot hang us.
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink since the lstat
            _check_file(store, path, os.lstat(path))
        raise
    try:
        st = os.fstat(fd)
        _check_file(store, path, st)
        if st.st_mode & 0o007 and st.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o007)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: str) -> str:
    """Make the database at ``path`` safe for SQLite to open; return its real
    path (symlinks resolved: SQLite keeps ``-wal`` and ``-shm`` beside it).

    Creates missing directories (0700) and the database (0600); refuses, with
    StoreError, a directory (``_check_dir``) or an existing database, ``-wal``
    or ``-shm`` (``_check_file``) another user could write. Raises OSError if
    the file system does."""
    directory = os.path.dirname(os.path.abspath(path))
    _make_private_dirs(directory)
    real = os.path.realpath(path)
    for checked in dict.fromkeys((directory, os.path.dirname(real))):
        _check_dir(path, checked)
    os.close(open_private(path, real, os.O_RDWR | os.O_CREAT))
    for suffix in ("-wal", "-shm"):
        with suppress(FileNotFoundError):  # SQLite creates it with the database's mode
            os.close(open_private(path, real + suffix, os.O_RDONLY))
    return real
