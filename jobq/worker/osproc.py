"""The worker as an operating-system process: tied to its supervisor's life, deaf to the
group's signals, named for ``ps``, its memory measured."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

# How a supervisor ends one of its workers (timeout, cancel, drain past the grace): a signal no
# service manager sends to a process group. Its default action ends the process; a job that
# wants to clean up first installs a handler for it. SIGKILL follows after kill_grace_seconds.
STOP_SIGNAL = signal.SIGUSR1


def die_with_parent(supervisor_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its supervisor dies, so an orphan never runs
    a job that a new supervisor has already taken back."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != supervisor_pid:
        os._exit(1)


def _ignore(signum: int, frame: Any) -> None:
    """A group's SIGTERM/SIGINT reaches workers too: they are the supervisor's to act on."""


def take_orders_from_supervisor_only() -> None:
    """SIGTERM and SIGINT sent to the whole process group (systemd, ``tini -g``, Ctrl-C) do
    nothing here: the supervisor drains and ends workers itself, with :data:`STOP_SIGNAL`
    (default action: end the process) then SIGKILL. A handler rather than SIG_IGN, so the
    programs a job starts get the default dispositions back when they exec."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(STOP_SIGNAL, signal.SIG_DFL)


def set_process_name(name: str) -> None:
    """Name this process for ps/top (Linux ``PR_SET_NAME``; at most 15 bytes)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        except (OSError, AttributeError):
            pass


def resident_mb() -> float:
    """This process's resident memory in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
