"""Claims that the operating system arbitrates: an ``flock`` on a file that exists only while
it is held. The kernel drops the lock when its process dies, however it dies, so a dead
holder's claim is free to take over; the file names its holder (pid and host) for messages.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path


class Claim:
    """A held lock on ``path``; :meth:`release` deletes the file, then unlocks it."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd < 0:
            return
        self.path.unlink(missing_ok=True)  # while locked: no one holds a lock on this inode
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(path: Path, *, wait: bool = False) -> Claim | None:
    """Lock ``path`` (created if missing) and write this process's pid and host into it;
    None when a live process holds it (or, with ``wait``, block until it is free). A refusal
    is retried for a moment: :func:`free_stale` holds dead holders' files only that long."""
    path.parent.mkdir(parents=True, exist_ok=True)
    refusals = 0
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            refusals += 1
            if refusals == 3:
                return None
            time.sleep(0.05)
            continue
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:  # else its holder deleted it between our open and lock: start over
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}".encode(), 0)
            return Claim(path, fd)
        os.close(fd)


def holder(path: Path) -> str:
    """Who holds ``path``, for a message: ``pid 1234 on host``."""
    try:
        pid, host = path.read_text().split(maxsplit=1)
        return f"pid {pid} on {host}"
    except (OSError, ValueError):
        return "another invocation"


def free_stale(folder: Path, pattern: str) -> None:
    """Delete the lock files matching ``pattern`` in ``folder`` that no live process holds."""
    for path in folder.glob(pattern):
        held = claim(path)
        if held is not None:
            held.release()
