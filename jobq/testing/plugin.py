"""jobq's pytest plugin (entry point ``pytest11``): the ``jobq_queue`` fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..client.queue import Queue


@pytest.fixture
def jobq_queue(tmp_path: Path) -> Iterator[Queue]:
    """A :class:`jobq.Queue` on a fresh database file under ``tmp_path`` (closed afterwards).
    Run its jobs with :func:`jobq.testing.drain` or :func:`jobq.testing.run_inline`."""
    from ..client.queue import Queue

    q = Queue(tmp_path / "jobq.db")
    try:
        yield q
    finally:
        q.close()
