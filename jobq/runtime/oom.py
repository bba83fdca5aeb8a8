"""Telling the kernel's OOM killer from any other SIGKILL: the supervisor reads the
``oom_kill`` counter of its memory cgroup (its workers share it) when a worker dies by
SIGKILL that it did not send. cgroup v2 keeps it in ``memory.events``, v1 in
``memory.oom_control``; where neither can be read, the death stays a bare SIGKILL."""

from __future__ import annotations

import os


def _cgroup_files() -> list[str]:
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2, unified
            out.append(os.path.join("/sys/fs/cgroup", path.lstrip("/"), "memory.events"))
        elif "memory" in controllers.split(","):
            out.append(os.path.join("/sys/fs/cgroup/memory", path.lstrip("/"), "memory.oom_control"))
    return [p for p in out if os.path.exists(p)]


class OomWatch:
    """The OOM kills in this process's memory cgroup, counted since the last look."""

    def __init__(self) -> None:
        self.files = _cgroup_files()
        self.seen = self.count()

    def count(self) -> int | None:
        """The cgroup's ``oom_kill`` counter (None where it cannot be read)."""
        total = None
        for path in self.files:
            try:
                with open(path) as fh:
                    for line in fh:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            total = (total or 0) + int(value)
            except (OSError, ValueError):
                continue
        return total

    def killed_since_last_look(self) -> bool:
        """Whether the OOM killer struck in the cgroup since the last call."""
        now = self.count()
        struck = now is not None and self.seen is not None and now > self.seen
        self.seen = now
        return struck
