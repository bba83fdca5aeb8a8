"""How every wait of a caller paces its looks at the store: one back-off policy
(:class:`Backoff`) and one loop for a plain condition (:func:`wait_until`).

Most jobs finish within moments of a join, so a wait looks often at first (and again after
it sees progress), then backs off to a cap so that a long wait costs little.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FIRST_DELAY_SECONDS = 0.001
MAX_DELAY_SECONDS = 0.05
BRISK_SECONDS = 0.2  # how long after a start or progress a wait keeps looking often
BRISK_DELAY_SECONDS = 0.002


class Backoff:
    """The delays between the looks of one wait."""

    def __init__(
        self,
        first_seconds: float = FIRST_DELAY_SECONDS,
        cap_seconds: float = MAX_DELAY_SECONDS,
        factor: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_seconds = first_seconds
        self.cap_seconds = cap_seconds
        self.factor = factor
        self.clock = clock
        self._delay = first_seconds
        self._active = clock()

    def progress(self) -> None:
        """Something moved: look often again."""
        self._delay = self.first_seconds
        self._active = self.clock()

    def next(self) -> float:
        """The delay before the next look."""
        delay = self._delay
        self._delay = min(self._delay * self.factor, self.cap_seconds)
        if self.clock() - self._active < BRISK_SECONDS:
            delay = min(delay, BRISK_DELAY_SECONDS)
        return delay


def wait_until(
    condition: Callable[[], bool],
    timeout_seconds: float | None = None,
    cap_seconds: float = 0.1,
    pause: Callable[[float], None] = time.sleep,
) -> bool:
    """Look at ``condition`` (backing off) until it holds: True, or False once
    ``timeout_seconds`` have passed first."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    backoff = Backoff(cap_seconds=cap_seconds)
    while not condition():
        delay = backoff.next()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            delay = min(delay, left)
        pause(delay)
    return True
