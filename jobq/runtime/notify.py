"""systemd's notify protocol (``sd_notify``), without a dependency: a few ``KEY=VALUE`` lines
sent as one datagram to the AF_UNIX socket named by ``NOTIFY_SOCKET``.

``jobq worker start`` sends ``READY=1`` once its workers are up, ``STOPPING=1`` when it drains,
and ``WATCHDOG=1`` every heartbeat when ``WATCHDOG_USEC`` is set (and ``WATCHDOG_PID``, when
set, is this process). Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("jobq.notify")


class Notifier:
    """Sends state changes to the service manager that started this process (if any)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        # A leading '@' names an abstract socket (Linux): its first byte is NUL.
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, unset: bool = False) -> Notifier:
        """The notifier ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` describe.

        ``unset`` removes them from ``os.environ`` so that worker processes and the jobs they
        run do not inherit them (what ``sd_notify(unset_environment=1)`` does)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: int | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or (pid.isdigit() and int(pid) == os.getpid())):
            watchdog = int(usec)
        if unset and environ is None:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(key, None)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False (logged once) when it could not be sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.set_inheritable(False)
            self._sock.sendto("\n".join(lines).encode() + b"\n", self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify the service manager at %s: %s", self.address.replace("\0", "@"), exc)
            return False

    def ready(self, status: str = "") -> bool:
        """``READY=1``: the service is up (systemd's ``Type=notify`` start completes)."""
        return self.send("READY=1", f"MAINPID={os.getpid()}", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        """``STOPPING=1``: the service is shutting down (draining)."""
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """``WATCHDOG=1`` when the watchdog is on (``WATCHDOG_USEC``); nothing otherwise."""
        if self.watchdog_usec is None:
            return False
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


NO_NOTIFIER = Notifier(None)
