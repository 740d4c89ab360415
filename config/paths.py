"""Where a server's private run directory and pool socket live."""

from __future__ import annotations

import hashlib
import os
import tempfile

from config.settings import Settings


def run_dir_for(settings: Settings) -> str:
    """The private run directory for ``settings`` (not created here).

    Two servers with different stores get different directories, so tests
    and several deployments on one host never share a socket.
    """
    if settings.run_dir:
        return os.path.abspath(settings.run_dir)
    key = hashlib.sha1(os.path.abspath(settings.sqlite_path).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"offload-{os.getuid()}", key)


def socket_path_for(settings: Settings) -> str:
    """Path of the pool's Unix socket."""
    return os.path.join(run_dir_for(settings), "pool.sock")


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (and its parent) mode 0700; refuse one owned by someone else."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} is owned by uid {st.st_uid}, not by us ({os.getuid()})")
    os.chmod(path, 0o700)
