"""The namespace-hosts of ``scripts/hosts.py``: network, UTS and mount namespaces, veth pairs,
a ``socat`` forwarder per host to the PostgreSQL server, the supervisor on each, and the
removal of all of it (also of a crashed run's leftovers, by name).

Names (one run at a time, see :func:`run_lock`): network namespace ``jobq-host-<i>``, veth
pair ``jqh<i>r`` (root side, 10.231.<i>.1/30) and ``jqh<i>h`` (host side, 10.231.<i>.2/30),
host name ``host-<letter>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from hosts_tasks import RUNS_FILE

T = TypeVar("T")
NETNS_PREFIX = "jobq-host-"
VETH_PREFIX = "jqh"
SUBNET = "10.231"
LOCK_PATH = "/run/jobq-hosts.lock" if os.path.isdir("/run") else "/tmp/jobq-hosts.lock"
# TCP retransmissions over a host's link back off to at most this (the least Linux allows;
# the default is 120 s), so the host and its forwarder notice within a second that the link is
# back. Set in the host's own namespace and on the forwarder's sockets only, where the kernel
# has it (Linux 6.15+: net.ipv4.tcp_rto_max_ms, TCP_RTO_MAX_MS); elsewhere resuming is slower.
RTO_MAX_MS = 1000
TCP_RTO_MAX_MS = 44


def _rto_max_settable() -> bool:
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, TCP_RTO_MAX_MS, RTO_MAX_MS)
        except OSError:
            return False
    return True


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()}")
    return res


def unavailable() -> str | None:
    """Why namespace-hosts cannot be made here (None when they can)."""
    if not sys.platform.startswith("linux"):
        return "Linux namespaces are needed"
    if os.geteuid() != 0:
        return "root is needed to make network namespaces and veth pairs"
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("socat", "socat")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y {package})"
    probe = f"{NETNS_PREFIX}probe"
    sh("ip", "netns", "del", probe, check=False)
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    try:
        res = sh("ip", "netns", "exec", probe, "unshare", "--mount", "--uts", "true", check=False)
        if res.returncode != 0:
            return f"unshare --mount --uts failed: {res.stderr.strip()}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


@contextlib.contextmanager
def run_lock() -> Iterator[None]:
    """Hold the lock that makes runs take turns (their names are fixed)."""
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another hosts.py run holds {LOCK_PATH}") from None
        yield
    finally:
        os.close(fd)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _forwarder_pids() -> list[int]:
    """socat processes listening on one of our veth addresses (left by a crashed run)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and os.path.basename(cmd[0]) == b"socat" and any(f"bind={SUBNET}.".encode() in a for a in cmd):
            out.append(int(name))
    return out


def clean_leftovers() -> None:
    """Remove every namespace, link and forwarder of this script's names: a crashed run's
    leftovers. Processes are killed by pid."""
    names = [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()]
    for ns in names:
        if ns.startswith(NETNS_PREFIX):
            for found in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                _kill(int(found))
            sh("ip", "netns", "del", ns, check=False)
    for pid in _forwarder_pids():
        _kill(pid)
    for line in sh("ip", "-o", "link", "show").stdout.splitlines():
        m = re.match(rf"\d+: ({VETH_PREFIX}\d+[rh])[@:]", line)
        if m:
            sh("ip", "link", "del", m.group(1), check=False)


class Host:
    """One namespace-host: its namespaces, veth pair, forwarder and supervisor."""

    def __init__(self, index: int, run_dir: Path, server: tuple[str, int], hostname: str | None = None) -> None:
        self.index = index
        self.name = f"host-{string.ascii_lowercase[index]}"
        self.hostname = hostname or self.name
        self.netns = f"{NETNS_PREFIX}{index}"
        self.veth_root = f"{VETH_PREFIX}{index}r"
        self.veth_host = f"{VETH_PREFIX}{index}h"
        self.root_addr = f"{SUBNET}.{index}.1"
        self.host_addr = f"{SUBNET}.{index}.2"
        self.server = server
        self.dir = run_dir / self.name
        self.tmp = self.dir / "tmp"
        self.log = self.dir / "supervisor.log"
        self.forwarder: subprocess.Popen[bytes] | None = None
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.sup_id = ""

    def create(self) -> None:
        """The namespace, the veth pair with its /30, and the forwarder on the root side."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmp, 0o1777)
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_host, "netns", self.netns)
        sh("ip", "addr", "add", f"{self.root_addr}/30", "dev", self.veth_root)
        sh("ip", "link", "set", self.veth_root, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.host_addr}/30", "dev", self.veth_host)
        sh("ip", "-n", self.netns, "link", "set", self.veth_host, "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        if _rto_max_settable():  # /proc/sys/net is the namespace's own
            cmd = f"echo {RTO_MAX_MS} > /proc/sys/net/ipv4/tcp_rto_max_ms"
            sh("ip", "netns", "exec", self.netns, "sh", "-c", cmd)
        port = self.server[1]
        rto = f",setsockopt-int={socket.IPPROTO_TCP}:{TCP_RTO_MAX_MS}:{RTO_MAX_MS}" if _rto_max_settable() else ""
        with open(self.dir / "forwarder.log", "ab") as fh:
            self.forwarder = subprocess.Popen(
                [
                    "socat",
                    f"TCP-LISTEN:{port},bind={self.root_addr},reuseaddr,fork,backlog=128,nodelay{rto}",
                    f"TCP:{self.server[0]}:{port},nodelay",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((self.root_addr, port), timeout=1):
                return True
            return False

        wait_for(listening, 10, f"the forwarder of {self.name}")

    def start_supervisor(self, url: str, concurrency: int, env: dict[str, str], cwd: Path) -> None:
        """``jobq worker start`` in the network namespace, with its own host name and /tmp."""
        # The host's own /tmp hides the machine's. What the supervisor runs from may live
        # there (a checkout, its virtual environment): each such path is bound into the new
        # /tmp at the same place first, and the new /tmp goes over the old one with its binds.
        keep = []
        for path in {os.path.realpath(p) for p in (str(cwd), sys.prefix, *env.get("PYTHONPATH", "").split(os.pathsep)) if p}:
            if path.startswith("/tmp/") and os.path.exists(path):
                keep += [path, str(self.tmp) + path[len("/tmp") :]]
        inner = (
            'new="$1"; host="$2"; shift 2; '
            'while [ "$1" != "--" ]; do mkdir -p "$2" && mount --bind "$1" "$2" || exit 1; shift 2; done; shift; '
            'mount --rbind "$new" /tmp && hostname "$host" && exec "$@"'
        )
        cmd = [
            "ip",
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            inner,
            "sh",
            str(self.tmp),
            self.hostname,
            *keep,
            "--",
            sys.executable,
            "-m",
            "jobq",
            "--db",
            url,
            "worker",
            "start",
            "-c",
            str(concurrency),
            "--grace",
            "10",
        ]
        with open(self.log, "ab") as fh:
            # ip, unshare and sh each exec the next: the pid is the supervisor's.
            self.supervisor = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)

    def cut(self) -> None:
        sh("ip", "link", "set", self.veth_root, "down")

    def restore(self) -> None:
        sh("ip", "link", "set", self.veth_root, "up")

    def runs(self) -> list[tuple[int, int, str, float]]:
        """(job id, attempt, host name, time) of each execution logged in this host's /tmp."""
        try:
            text = (self.tmp / RUNS_FILE).read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 5:
                out.append((int(parts[0]), int(parts[1]), parts[2], float(parts[3])))
        return out

    def log_lines(self, needle: str) -> list[str]:
        try:
            return [line for line in self.log.read_text(errors="replace").splitlines() if needle in line]
        except FileNotFoundError:
            return []

    def fenced(self) -> set[int]:
        """Jobs whose finish the store refused to this host ("result dropped")."""
        out = set()
        for line in self.log_lines("result dropped"):
            m = re.search(r"job (\d+): result dropped", line)
            if m:
                out.add(int(m.group(1)))
        return out

    def terminate(self) -> None:
        if self.supervisor is not None and self.supervisor.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.supervisor.pid, signal.SIGTERM)

    def wait_supervisor(self, timeout: float) -> int | None:
        if self.supervisor is None:
            return None
        try:
            return self.supervisor.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def destroy(self) -> None:
        """Kill what runs on the host (by pid), stop the forwarder, remove the namespace."""
        for proc in (self.supervisor, self.forwarder):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        for pid in sh("ip", "netns", "pids", self.netns, check=False).stdout.split():
            _kill(int(pid))
        sh("ip", "netns", "del", self.netns, check=False)
        sh("ip", "link", "del", self.veth_root, check=False)
