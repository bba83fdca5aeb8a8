"""Same-host presence of supervisors, beside the database file.

Each supervisor holds an exclusive ``flock`` on its own lock file for its whole life; the
kernel drops it when the process dies, however it dies, so any other process on the host
can tell a dead supervisor at once by taking the lock. Each supervisor also listens on a
Unix datagram socket that submitters poke so an idle supervisor wakes at once (best
effort: polling stays the fallback)."""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time

from .fsmodes import DEFAULT_FILE_MODE, make_dir, open_or_create

_HAS_ABSTRACT = sys.platform.startswith("linux")


def presence_dir(db_path: str) -> str:
    """The directory of lock files: ``<db>-jobq`` beside a database file; for a server URL,
    one per URL in the temporary directory."""
    if "://" in db_path:
        digest = hashlib.sha1(db_path.encode()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"jobq-{digest}")
    return db_path + "-jobq"


def _socket_name(db_path: str, supervisor_id: str) -> str:
    digest = hashlib.sha1(db_path.encode()).hexdigest()[:16]
    return f"\0jobq-{digest}-{supervisor_id}"


class LocalPresence:
    """The lock file and wake-up socket of one running supervisor."""

    def __init__(self, db_path: str, supervisor_id: str, file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.db_path = db_path
        self.supervisor_id = supervisor_id
        self.file_mode = file_mode  # of the lock file and work folder, when this creates them
        self.lock_path = os.path.join(presence_dir(db_path), f"{supervisor_id}.lock")
        self._lock_fd: int | None = None
        self.sock: socket.socket | None = None

    def acquire(self) -> None:
        make_dir(presence_dir(self.db_path), self.file_mode)
        fd = open_or_create(self.lock_path, self.file_mode)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.set_inheritable(fd, False)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        if _HAS_ABSTRACT:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.bind(_socket_name(self.db_path, self.supervisor_id))
                self.sock = sock
            except OSError:
                sock.close()

    def work_dir(self) -> str:
        """A directory of this supervisor's own (worker output files), removed with it."""
        path = os.path.join(presence_dir(self.db_path), self.supervisor_id)
        make_dir(path, self.file_mode)
        return path

    def remove_dead_leftovers(self, keep: set[str]) -> None:
        """Remove the lock files and work directories of dead supervisors not in ``keep``."""
        base = presence_dir(self.db_path)
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            ident = name[: -len(".lock")] if name.endswith(".lock") else name
            if ident == self.supervisor_id or ident in keep:
                continue
            lock = os.path.join(base, ident + ".lock")
            if name.endswith(".lock"):
                is_dead(lock)  # removes the file when nobody holds it
            elif os.path.isdir(os.path.join(base, name)) and not os.path.exists(lock):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)

    def fds(self) -> list[int]:
        """The descriptors a forked child must close."""
        out = [self._lock_fd] if self._lock_fd is not None else []
        return out + ([self.sock.fileno()] if self.sock is not None else [])

    def drain(self) -> None:
        """Read and drop every pending wake-up."""
        if self.sock is None:
            return
        while True:
            try:
                self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

    def release(self) -> None:
        shutil.rmtree(os.path.join(presence_dir(self.db_path), self.supervisor_id), ignore_errors=True)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self._lock_fd is not None:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None


def is_dead(lock_path: str | None) -> bool | None:
    """True when no process holds the supervisor's lock file (it died or never locked);
    False when it is held; None when it cannot be told (no path, other host)."""
    if not lock_path:
        return None
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None
    else:
        # Held by nobody: the owner is dead. Remove the file while we hold it.
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        return True
    finally:
        os.close(fd)


class Poker:
    """Wakes the idle supervisors of a database on this host (best effort, cheap)."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self._names: list[str] = []
        self._listed_at = -1e9
        self._sock: socket.socket | None = None
        self._pid = -1

    def poke(self) -> None:
        if not _HAS_ABSTRACT:
            return
        now = time.monotonic()
        if now - self._listed_at > 1.0:
            ids = [os.path.basename(p)[: -len(".lock")] for p in glob.glob(os.path.join(presence_dir(self.db_path), "*.lock"))]
            self._names = [_socket_name(self.db_path, i) for i in ids]
            self._listed_at = now
        if not self._names:
            return
        if self._sock is None or self._pid != os.getpid():
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            self._pid = os.getpid()
        for name in self._names:
            try:
                self._sock.sendto(b"!", name)
            except OSError:
                pass
