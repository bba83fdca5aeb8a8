"""Testing code that submits jobs: run them in the test's own process, with no supervisor and
no fork (as Celery's eager mode, RQ's ``is_async=False`` and Oban's ``drain_queue`` do).

- :func:`drain` runs every due job of the database, one at a time in order, until none is due,
  and returns what each attempt did (:class:`Ran`).
- :func:`run_inline` makes ``submit``/``map``/``submit_many`` of one queue run at once.

The pytest plugin (:mod:`jobq.testing.plugin`, registered as ``pytest11``) gives the
``jobq_queue`` fixture. This package imports the runner on first use, so the plugin costs a
pytest session nothing until a test uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Ran", "drain", "run_inline"]

if TYPE_CHECKING:
    from .runner import Ran, drain, run_inline


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
