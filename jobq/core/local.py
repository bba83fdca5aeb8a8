"""Same-host presence of supervisors, beside the database file.

Each supervisor holds an exclusive ``flock`` on its own lock file for its whole life; the
kernel drops it when the process dies, however it dies, so any other process that sees the
same lock directory can tell a dead supervisor at once by taking the lock. Each supervisor
also listens on a Unix datagram socket that submitters poke so an idle supervisor wakes at
once (best effort: polling stays the fallback).

Whether a peer's lock file can be checked at all is decided by its *presence*: the host
name, the kernel's boot id and the identity (device, inode) of the lock directory. Two
containers with one host name but their own ``/tmp`` differ in it, and so do two hosts; for
those only heartbeats and leases count. A missing lock file alone never marks a peer dead."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

# hashlib, socket, shutil, tempfile and glob are imported where they are used: `jobq status`
# only reads lock files and starts faster without them.

from .fsmodes import DEFAULT_FILE_MODE, make_dir

_HAS_ABSTRACT = sys.platform.startswith("linux")


def presence_dir(db_path: str) -> str:
    """The directory of lock files: ``<db>-jobq`` beside a database file; for a server URL,
    one per URL in the temporary directory."""
    if "://" in db_path:
        import hashlib
        import tempfile

        digest = hashlib.sha1(db_path.encode()).hexdigest()[:16]
        return os.path.join(tempfile.gettempdir(), f"jobq-{digest}")
    return db_path + "-jobq"


def _socket_name(db_path: str, supervisor_id: str) -> str:
    import hashlib

    digest = hashlib.sha1(db_path.encode()).hexdigest()[:16]
    return f"\0jobq-{digest}-{supervisor_id}"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()[:8]
    except OSError:
        return "-"


def presence_id(db_path: str, host: str) -> str:
    """Where lock files of supervisors of ``db_path`` can be checked from: equal for two
    processes exactly when they see the same lock directory on the same running kernel."""
    directory = presence_dir(db_path)
    try:
        st = os.stat(directory)
        where = f"{st.st_dev:x}:{st.st_ino:x}"
    except OSError:
        where = "?"
    return f"{host}/{_boot_id()}/{where}"


class LockState(Enum):
    """What a supervisor's lock file says of it."""

    HELD = "held"  # a live process holds it
    FREE = "free"  # the file is there and nobody holds it: its owner died
    MISSING = "missing"  # no file: cleaned away, or never made (not proof of death)
    UNKNOWN = "unknown"  # cannot be told from here


class LocalPresence:
    """The lock file and wake-up socket of one running supervisor."""

    def __init__(self, db_path: str, supervisor_id: str, file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.db_path = db_path
        self.supervisor_id = supervisor_id
        self.file_mode = file_mode  # of the lock file and the work folder (see jobq.fsmodes)
        self.lock_path = os.path.join(presence_dir(db_path), f"{supervisor_id}.lock")
        self._lock_fd: int | None = None
        self.sock: socket.socket | None = None

    def acquire(self) -> None:
        if "://" in self.db_path:
            sweep_stale_dirs()
        # Locked before it is visible: made under a temporary name, locked, then renamed into
        # place, so no sweeper ever finds this supervisor's lock file unlocked.
        tmp = f"{self.lock_path}.{os.getpid()}.tmp"
        for _ in range(5):  # the directory of a last supervisor exiting right now goes away
            make_dir(presence_dir(self.db_path), self.file_mode)
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, self.file_mode)
                break
            except FileNotFoundError:
                continue
        else:
            raise FileNotFoundError(errno.ENOENT, "lock directory keeps vanishing", presence_dir(self.db_path))
        try:
            os.fchmod(fd, self.file_mode)  # exactly file_mode, whatever the umask
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, str(os.getpid()).encode())
            os.rename(tmp, self.lock_path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.set_inheritable(fd, False)
        self._lock_fd = fd
        if _HAS_ABSTRACT:
            import socket

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
            if name.endswith(".tmp"):
                continue  # a supervisor starting up right now
            if name.endswith(".lock"):
                lock_state(lock, remove_free=True)  # not a registered supervisor
            elif os.path.isdir(os.path.join(base, name)) and not os.path.exists(lock):
                import shutil

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
        import shutil

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
        with contextlib.suppress(OSError):  # the last one out removes the directory (never a non-empty one)
            os.rmdir(presence_dir(self.db_path))


#: a dead supervisor's lock file older than this says nothing its lease does not (a peer took its
#: jobs back when the lease ran out long ago): removable
STALE_LOCK_SECONDS = 3600.0


def sweep_stale_dirs(now: float | None = None) -> None:
    """Remove the lock directories of server databases (``$TMPDIR/jobq-<digest>``) that hold
    nothing but free lock files older than :data:`STALE_LOCK_SECONDS` (their supervisors died
    long ago, or their database is gone) and the work folders beside them."""
    import glob
    import shutil
    import tempfile

    now = time.time() if now is None else now
    for base in glob.glob(os.path.join(tempfile.gettempdir(), "jobq-*")):
        try:
            if not os.path.isdir(base) or os.stat(base).st_uid != os.getuid():
                continue
            names = os.listdir(base)
        except OSError:
            continue
        locks = [n for n in names if n.endswith(".lock")]
        others = set(names) - set(locks) - {n[: -len(".lock")] for n in locks}
        if others:
            continue  # a lock starting up (.tmp), or something not ours
        for name in locks:
            path = os.path.join(base, name)
            with contextlib.suppress(OSError):
                if now - os.stat(path).st_mtime >= STALE_LOCK_SECONDS and lock_state(path, remove_free=True) == LockState.FREE:
                    shutil.rmtree(os.path.join(base, name[: -len(".lock")]), ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(base)


def lock_state(lock_path: str | None, remove_free: bool = False) -> LockState:
    """Whether a supervisor's lock file is held. With ``remove_free`` a free one is removed
    (its owner is dead): only a sweeper that has taken the owner's jobs back does that."""
    if not lock_path:
        return LockState.UNKNOWN
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return LockState.MISSING
    except OSError:
        return LockState.UNKNOWN
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return LockState.HELD
        return LockState.UNKNOWN
    else:
        if remove_free:  # held by nobody: the owner is dead; remove the file while we hold it
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
        return LockState.FREE
    finally:
        os.close(fd)


def supervisor_dead(sup: Any, presence: str | None, now: float, lease_seconds: float) -> bool:
    """Whether supervisor ``sup`` (a :class:`~jobq.store.SupervisorInfo`) is certainly dead,
    seen from a process whose presence id is ``presence``: its lock file is free, or its
    lock file is gone and its heartbeat is older than the lease. A supervisor whose lock
    directory cannot be seen from here is judged by its heartbeat alone."""
    stale = now - sup.heartbeat_at > lease_seconds
    if presence is None or sup.presence != presence:
        return stale
    state = lock_state(sup.lock_path)
    if state == LockState.FREE:
        return True
    if state == LockState.HELD:
        return False
    return stale


def supervisor_alive(sup: Any, presence: str | None, now: float, lease_seconds: float) -> bool:
    """Whether ``sup`` counts as live, seen from a process whose presence id is ``presence``."""
    return not supervisor_dead(sup, presence, now, lease_seconds)


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
            import glob

            ids = [os.path.basename(p)[: -len(".lock")] for p in glob.glob(os.path.join(presence_dir(self.db_path), "*.lock"))]
            self._names = [_socket_name(self.db_path, i) for i in ids]
            self._listed_at = now
        if not self._names:
            return
        if self._sock is None or self._pid != os.getpid():
            import socket

            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            self._pid = os.getpid()
        for name in self._names:
            try:
                self._sock.sendto(b"!", name)
            except OSError:
                pass
