"""Failures as the standard library raises them: ``jobq.Pool`` and ``jobq.Executor`` re-raise
the job's own exception, as ``multiprocessing`` and ``concurrent.futures`` do, with the remote
traceback as its ``__cause__``.

A job's error is stored with its class (``module:qualname``), the arguments pickle would
rebuild it from (``__reduce__``: its ``args``, OSError's filename too) and its instance
attributes, when they are JSON. The caller rebuilds it when that class is a built-in or its module is already imported
in the caller (the target's module and what it imports are, once the caller submitted a
function or checked a target: jobq imports nothing because the database says so), and calling
the class with the stored ``args`` works. The rebuilt exception is an instance of a subclass of
both the job's class and :class:`jobq.JobFailed` (named and printed as the job's class), so
``except ValueError`` and ``except jobq.JobFailed`` both catch it, and it carries JobFailed's
attributes (``job_id``, ``traceback``, ``index``...). Anything else stays a plain ``JobFailed``:
a cancelled job, a worker's death or timeout, a class that cannot be found or rebuilt.
"""

from __future__ import annotations

import builtins
import sys
import threading
from collections.abc import Iterator
from typing import Any

from ..core.errors import JobFailed


class RemoteTraceback(Exception):
    """The traceback of the exception in the worker that ran the job (the ``__cause__`` of a
    rebuilt exception, as ``multiprocessing.pool.RemoteTraceback`` is)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


_subclasses: dict[type[BaseException], type[BaseException] | None] = {}
_lock = threading.Lock()
_JOBFAILED_ATTRS = ("job_id", "error_type", "message", "traceback", "state", "index", "error_class", "error_args", "error_attrs")


def _find_class(path: str) -> type[Exception] | None:
    module_name, _, qualname = path.partition(":")
    module: Any = builtins if module_name == "builtins" else sys.modules.get(module_name)
    if module is None or not qualname:
        return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, type) and issubclass(obj, Exception):
        return obj
    return None


def _remote_class(cls: type[Exception]) -> type[BaseException] | None:
    """The subclass of ``cls`` and JobFailed that rebuilt exceptions of ``cls`` are made of."""
    with _lock:
        if cls in _subclasses:
            return _subclasses[cls]
        if issubclass(cls, JobFailed):
            made: type[BaseException] | None = cls
        else:
            namespace = {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
                # The job's class builds and prints it; JobFailed's own constructor is not called.
                "__init__": cls.__init__,
                "__str__": cls.__str__,
                "__reduce__": cls.__reduce__,
            }
            try:
                made = type(cls.__name__, (cls, JobFailed), namespace)
            except Exception:  # noqa: BLE001 - a layout that cannot be mixed, a refusing metaclass
                made = None
        _subclasses[cls] = made
        return made


def as_raised(exc: BaseException) -> BaseException:
    """What the standard library would raise for this failure: the job's own exception
    rebuilt when possible (see the module's docstring), else ``exc`` unchanged."""
    if not isinstance(exc, JobFailed) or type(exc) is not JobFailed or exc.state != "failed":
        return exc
    if exc.error_class is None or exc.error_args is None:
        return exc
    cls = _find_class(exc.error_class)
    remote = _remote_class(cls) if cls is not None else None
    if remote is None:
        return exc
    try:
        rebuilt = remote(*exc.error_args)
        for name, value in (exc.error_attrs or {}).items():  # as pickle restores an instance's state
            if not name.startswith("__") or name == "__notes__":
                setattr(rebuilt, name, value)
    except Exception:  # noqa: BLE001 - a constructor that wants other arguments: stay JobFailed
        return exc
    for name in _JOBFAILED_ATTRS:
        try:
            setattr(rebuilt, name, getattr(exc, name))
        except AttributeError:  # a read-only attribute of the job's class wins
            pass
    rebuilt.__cause__ = RemoteTraceback(f'\n"""\n{exc.traceback}"""')
    rebuilt.__suppress_context__ = True
    return rebuilt


class RaisingAsStdlib:
    """An iterator of results whose failures are raised as :func:`as_raised` makes them, and
    that raises ``source_error`` (the caller's iterable failed part way) after the results of
    the items read before it, as ``multiprocessing.Pool.imap`` does."""

    def __init__(self, results: Iterator[Any], source_error: BaseException | None = None, group: Any = None) -> None:
        self._results = results
        self._source_error = source_error
        self.group = group  #: the :class:`jobq.Group` of the map

    def __iter__(self) -> RaisingAsStdlib:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result (``timeout`` as ``IMapIterator.next`` takes it)."""
        try:
            nxt = getattr(self._results, "next", None)
            return nxt(timeout) if nxt is not None else next(self._results)
        except StopIteration:
            error, self._source_error = self._source_error, None
            if error is not None:
                raise error from None
            raise
        except JobFailed as exc:
            rebuilt = as_raised(exc)
            if rebuilt is exc:
                raise
            raise rebuilt  # noqa: B904 - its __cause__ is the remote traceback, set by as_raised
