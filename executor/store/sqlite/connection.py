"""The SQLite store's one connection: opening the file, the single-writer
lock, transactions (power-safe or not), batches, and syncing the WAL.

Every write runs one ``BEGIN IMMEDIATE ... COMMIT`` transaction (a
savepoint inside a batch). A power-safe write commits with
``synchronous=FULL``: on disk, power loss included, when it returns. Any
other commits with ``synchronous=NORMAL``: it survives the process's crash
(``kill -9``) at once and reaches the disk with the next FULL commit,
checkpoint or ``sync()``. An fsync costs ~0.5 ms here, so this is what
lets the pool finish thousands of tasks a second.

The session also keeps the number of finished tasks per status, exact:
the store counts them once at open and then adds each write's ``delta``,
applied only when its transaction commits (a rolled-back savepoint
restores it).

The files are private to the server's user: a store that another user could
read or write is refused (``executor.store.files``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from executor.store.files import open_private, private_file
from executor.store.records import BatchLost, StoreError, StoreLocked

_BUSY_TIMEOUT_MS = 5000
_CACHE_KIB = 65536  # SQLite page cache per connection


class Session:
    """The store's SQLite connection to the file at ``path`` (created, with its
    directory, if missing), in WAL mode. Not thread-safe: use it from the
    thread that opened it (but ``sync`` may be called from any thread)."""

    def __init__(self, path: str, *, writer: bool = False,
                 setup: Callable[[Session], None] | None = None) -> None:
        """Open the file at ``path`` once its files pass ``executor.store.files``.
        ``writer``: take the single-writer lock (``_lock_writer``) before
        SQLite opens the file. ``setup`` (the store's schema and counts) runs
        last, under the same error handling. Raises StoreError (StoreLocked if
        another pool holds the lock), leaving nothing open."""
        self.path = path
        self.file = path  # the database's real path, once checked
        self.in_batch = False
        self.finished: Counter[str] = Counter()  # committed: finished tasks per status
        self.delta: Counter[str] = Counter()  # this transaction's changes to ``finished``
        self._db: sqlite3.Connection | None = None
        self._wal_fd: int | None = None
        self._lock_fd: int | None = None
        try:
            self.file = private_file(path)
            if writer:
                self._lock_fd = _lock_writer(self.file)
            # isolation_level=None: the module never opens transactions on its
            # own; every write says BEGIN IMMEDIATE ... COMMIT itself.
            self._db = sqlite3.connect(self.file, isolation_level=None, check_same_thread=True)
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # The default 2 MiB page cache spills dirty pages mid-transaction
            # once a few index pages are touched (a batch of submissions
            # touches six indexes); 64 MiB keeps a busy queue's working set.
            self._db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot switch SQLite to WAL mode (got {mode!r})")
            # FULL: fsync the WAL on every commit, so a 202 survives power loss.
            self._db.execute("PRAGMA synchronous = FULL")
            self._sync_full = True
            if setup is not None:
                setup(self)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StoreError(f"cannot open the SQLite store {path}: {exc}") from exc
        except StoreError:
            self.close()
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection. Raises StoreError once closed."""
        if self._db is None:
            raise StoreError(f"the SQLite store {self.path} is closed")
        return self._db

    @contextmanager
    def write(self, power_safe: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed on normal exit, rolled back on error.

        ``power_safe`` commits with an fsync (FULL); otherwise NORMAL (see the
        module docstring). Inside a batch, a savepoint instead: a power-safe
        write raises StoreError there; one after SQLite itself rolled the
        batch back raises BatchLost. sqlite3 errors become StoreError.
        """
        db = self.conn
        if self.in_batch:
            # The enclosing batch() commits everything; a savepoint keeps this
            # call all or nothing on its own.
            if power_safe:
                raise StoreError(f"{self.path}: a power-safe write inside batch(); "
                                 "write with sync=False and sync() after the batch")
            if not db.in_transaction:
                # SQLite itself rolled the batch back (disk full, I/O error): a
                # savepoint now would open, and its release commit, a new one.
                raise BatchLost(f"{self.path}: the batch's transaction was rolled back by "
                                "an earlier error; nothing more is written in it")
            delta = self.delta.copy()
            db.execute("SAVEPOINT call")
            try:
                yield db
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK TO call")
                    db.execute("RELEASE call")
                self.delta = delta
                if isinstance(exc, sqlite3.Error):
                    if not db.in_transaction:  # SQLite rolled the whole batch back
                        raise BatchLost(f"{self.path}: {exc}; the batch's transaction was "
                                        "rolled back, nothing of it is stored") from exc
                    raise StoreError(f"{self.path}: {exc}; nothing was changed") from exc
                raise
            db.execute("RELEASE call")
            return
        if power_safe != self._sync_full:
            db.execute(f"PRAGMA synchronous = {'FULL' if power_safe else 'NORMAL'}")
            self._sync_full = power_safe
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot start a write: {exc}") from exc
        try:
            yield db
            db.execute("COMMIT")
            self.finished.update(self.delta)
            self.delta.clear()
        except BaseException as exc:
            self.delta.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: {exc}; nothing was changed") from exc
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the writes made inside as one transaction (NORMAL sync), each a
        savepoint; see ``SQLiteStore.batch``. A nested batch joins the outer one."""
        if self.in_batch:
            yield
            return
        with self.write():
            self.in_batch = True
            try:
                yield
            finally:
                self.in_batch = False

    def sync(self) -> None:
        """Make every committed change durable against power loss (fdatasync of
        the WAL, as ``synchronous=FULL`` does at each commit). Blocks; touches
        only its own file descriptor, so another thread may call it while this
        one keeps writing."""
        wal = self.file + "-wal"  # beside the real file, as SQLite puts it
        try:
            ino = os.stat(wal).st_ino
        except FileNotFoundError:
            return  # checkpointed and removed: the main file was synced first
        fd = self._wal_fd
        if fd is None or os.fstat(fd).st_ino != ino:
            fd = os.open(wal, os.O_RDONLY)
            old, self._wal_fd = self._wal_fd, fd
            if old is not None:
                os.close(old)
        os.fdatasync(fd)

    def close(self) -> None:
        """Close the file (and release the writer lock). Idempotent; any later
        use raises StoreError."""
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


def _lock_writer(path: str) -> int:
    """Take the writer lock of the store at ``path``: ``flock`` on ``<path>.lock``,
    which holds the owner's pid. Returns the lock's fd, to keep open (the lock
    goes with the process, however it ends). Raises StoreError if another
    process holds it: two pools on one file would each take the other's
    running tasks for lost (``recover``) and run them again: StoreLocked
    then (a StoreError). Also raises
    StoreError, writing nothing, if the lock file is a symlink, a hard link,
    or another user's (``executor.store.files``): it is truncated and written."""
    lock = path + ".lock"
    fd = open_private(path, lock, os.O_RDWR | os.O_CREAT)
    if os.fstat(fd).st_nlink != 1:
        os.close(fd)
        raise StoreError(f"the SQLite store {path}: {lock} has other hard links; offload "
                         "truncates it, and would truncate them too: remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreLocked(f"{path}: another offload pool (pid {owner}) is using this store; "
                         "a SQLite store has one pool: stop that server, or give this one "
                         "another store_url") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
