"""How a claimed job passes from a supervisor to its worker, in memory they share.

Each worker has a slot of doubles in an array its supervisor created before forking it: the
job it runs now (0 between jobs), that job's attempt, the monotonic time it started (one clock
for every process of the machine), where its output begins in the capture file, how many of
the tasks sent to it it has taken, and a few job ids its supervisor withdrew.

A worker *takes* each task, in the order they were sent, under the slot's lock; the supervisor
*withdraws* a task (a cancel of a job no worker has started) under the same lock, only while
the worker has not taken it. So a withdrawn job never starts, and a started one is never
withdrawn: the supervisor ends its worker instead.
"""

from __future__ import annotations

from typing import Any

SLOT_JOB, SLOT_ATTEMPT, SLOT_STARTED, SLOT_OUTPUT_AT, SLOT_TAKEN, SLOT_WITHDRAWN_COUNT = 0, 1, 2, 3, 4, 5
SLOT_WITHDRAWN = 6  # the first of WITHDRAW_CAPACITY job ids
WITHDRAW_CAPACITY = 8
SLOT_SIZE = SLOT_WITHDRAWN + WITHDRAW_CAPACITY

# A worker killed while it holds the lock (a SIGKILL from outside) must not hang its
# supervisor: withdrawing gives up after this long, and the job runs (then is ended).
WITHDRAW_LOCK_SECONDS = 0.05


def take(slots: Any, base: int, lock: Any, job_id: int) -> bool:
    """(the worker) Take the next task sent: True to run it (it is now this worker's current
    job), False when the supervisor withdrew it."""
    with lock:
        slots[base + SLOT_TAKEN] += 1
        if slots[base + SLOT_WITHDRAWN_COUNT]:
            for i in range(SLOT_WITHDRAWN, SLOT_WITHDRAWN + WITHDRAW_CAPACITY):
                if slots[base + i] == job_id:
                    slots[base + i] = 0
                    slots[base + SLOT_WITHDRAWN_COUNT] -= 1
                    return False
        slots[base + SLOT_JOB] = job_id
        return True


def withdraw(slots: Any, base: int, lock: Any, job_id: int, sent_as: int) -> bool:
    """(the supervisor) Withdraw the task sent as number ``sent_as`` (from 0) to this worker:
    True when the worker had not taken it and now never will."""
    if not lock.acquire(timeout=WITHDRAW_LOCK_SECONDS):
        return False
    try:
        if slots[base + SLOT_TAKEN] > sent_as:
            return False
        for i in range(SLOT_WITHDRAWN, SLOT_WITHDRAWN + WITHDRAW_CAPACITY):
            if not slots[base + i]:
                slots[base + i] = job_id
                slots[base + SLOT_WITHDRAWN_COUNT] += 1
                return True
        return False
    finally:
        lock.release()
