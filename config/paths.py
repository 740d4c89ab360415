"""Where a server's private run directory and pool socket live, and making it private.

With ``run_dir`` unset the run directory is ``<tmp>/offload-<uid>/<hash>``
under the temp directory (``tempfile.gettempdir()``, so ``$TMPDIR`` or
/tmp). Other users can create names in /tmp, so offload trusts neither
level blindly: both the per-user directory and the leaf must be real
directories (not symlinks), owned by us and writable by no one else, or the
server refuses to start. ``$XDG_RUNTIME_DIR`` is deliberately not used:
cron jobs, ``sudo -u`` and service managers often run without it, and every
process of one deployment (HTTP workers, the pool, scripts using
``BackgroundTasks``) must compute the same socket path from the settings
alone.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile

from config.settings import ConfigError, Settings, redact_url

# Opening a level this way refuses a symlink (ELOOP) and anything but a
# directory (ENOTDIR); the checks and the chmod then act on what was opened,
# not on whatever the name points to a moment later.
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FIX = "remove it, or set run_dir (OFFLOAD_RUN_DIR) to a private directory of your own"


class RunDirError(ConfigError):
    """The run directory (or its per-user parent) is unsafe or cannot be made
    private. The message names the path, what is wrong and what to do."""


def run_dir_for(settings: Settings) -> str:
    """The private run directory for ``settings`` (not created here).

    Two servers with different stores get different directories, so tests
    and several deployments on one host never share a socket. Pools that
    share a PostgreSQL store (several on one machine, as tests run them) are
    told apart by their ``bind`` address too, which each server has its own;
    the key never hashes the store's password.
    """
    if settings.run_dir:
        return os.path.abspath(settings.run_dir)
    if settings.shared_store:
        name = f"{redact_url(settings.store_url)}\n{settings.bind}"
    else:
        name = os.path.abspath(settings.sqlite_path)
    key = hashlib.sha1(name.encode()).hexdigest()[:12]
    return os.path.join(_user_tmp_dir(), key)


def socket_path_for(settings: Settings) -> str:
    """Path of the pool's Unix socket."""
    return os.path.join(run_dir_for(settings), "pool.sock")


def ensure_private_dir(path: str) -> None:
    """Make the run directory ``path`` private (0700, ours) or refuse it.

    Levels checked: ``path`` itself and, when ``path`` is in the per-user
    directory under the temp dir (the default, ``run_dir`` unset), that
    directory too. Each is created mode 0700 if missing; an existing one must
    be a directory, not a symlink, owned by ``os.getuid()`` and writable by
    no one else, and is then narrowed to 0700 (earlier versions left the
    per-user directory 0755). Directories above an explicitly configured
    ``run_dir`` are the user's choice: created if missing, never checked.

    Raises ``RunDirError`` (a ``ConfigError``) naming the path, its owner and
    mode, and what to do; never a bare ``OSError``.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if parent == _user_tmp_dir():
        _make_private(parent)
    else:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create {parent} (for the run directory {path}): "
                              f"{exc.strerror}; set run_dir (OFFLOAD_RUN_DIR) to a directory "
                              "you can create") from exc
    _make_private(path)


def _user_tmp_dir() -> str:
    """The per-user directory under the temp dir holding default run directories."""
    return os.path.abspath(os.path.join(tempfile.gettempdir(), f"offload-{os.getuid()}"))


def _make_private(path: str) -> None:
    """Create ``path`` 0700 if missing, else check it (see ``ensure_private_dir``);
    then set its mode to exactly 0700, whatever the umask. Raises ``RunDirError``."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # checked below, like any existing directory
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory {path}: {exc.strerror}; "
                          "set run_dir (OFFLOAD_RUN_DIR) to a directory you can create") from exc
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError as exc:
        why = _lstat_problem(path) or f"cannot be opened ({exc.strerror})"
        raise RunDirError(f"unsafe run directory {path}: it {why}; {_FIX}") from exc
    try:
        st = os.fstat(fd)
        problem = _problem(st)
        if problem:
            raise RunDirError(f"unsafe run directory {path}: it {problem}; {_FIX}")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except OSError as exc:
        raise RunDirError(f"cannot make the run directory {path} private: {exc.strerror}; "
                          f"{_FIX}") from exc
    finally:
        os.close(fd)


def _problem(st: os.stat_result) -> str | None:
    """Why a run directory with status ``st`` (an ``fstat`` through
    ``O_NOFOLLOW``, or an ``lstat`` that is no symlink: ``_lstat_problem``
    names those) is unsafe, as the end of a sentence starting "it"; ``None``
    if it is not."""
    mode = f"mode {stat.filemode(st.st_mode)} ({stat.S_IMODE(st.st_mode):04o})"
    if not stat.S_ISDIR(st.st_mode):
        return f"is not a directory (owned by uid {st.st_uid}, {mode})"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by us (uid {os.getuid()}); {mode}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by other users ({mode}, owned by uid {st.st_uid})"
    return None


def _lstat_problem(path: str) -> str | None:
    """``_problem`` for the name ``path`` itself (a symlink is not followed)."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return f"is a symlink to {os.readlink(path)!r} (owned by uid {st.st_uid})"
    except OSError:
        return None
    return _problem(st)
