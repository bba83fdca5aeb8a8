"""Exceptions raised by jobq. Every one derives from :class:`JobqError`."""

from __future__ import annotations

from typing import Any


def _restore(cls: type[JobqError], args: tuple[Any, ...], attributes: dict[str, Any]) -> JobqError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(attributes)
    return error


class JobqError(Exception):
    """Base class of every error jobq raises on purpose. Each one pickles (a process pool, a
    ``concurrent.futures`` executor or a ``multiprocessing`` queue can carry it) with its
    message and attributes, whatever its constructor's arguments."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds with cls(*self.args): wrong for every constructor taking fields.
        return _restore, (type(self), self.args, self.__dict__)


class ValidationError(JobqError, ValueError):
    """A job definition or a setting is invalid. ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(ValidationError):
    """A configuration value (file, environment or flag) is invalid. ``source`` is the file the
    bad key was read from (None: the environment, a flag or the API); with one, the error reads
    ``FILE: MESSAGE`` and ``message`` names the key itself."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        super().__init__(field, message)
        self.source = source
        if source is not None:
            self.args = (f"{source}: {message}",)


class TargetNotAllowed(ValidationError):
    """A target outside the allow-list (``allowed_targets``, ``JOBQ_ALLOWED_TARGETS``,
    ``jobq worker start --allow``). Workers fail such a job with this type, unimported."""

    def __init__(self, target: str, message: str | None = None) -> None:
        self.target = target
        super().__init__("target", message or f"{target} is not in the allowed targets")


class JobNotFound(JobqError, LookupError):
    """No job (or group) with that id exists in the store."""

    def __init__(self, job_id: object) -> None:
        self.job_id = job_id
        super().__init__(f"no such job: {job_id}")


class GroupNotFound(JobNotFound):
    """No group with that id exists in the store."""

    def __init__(self, group_id: object) -> None:
        JobqError.__init__(self, f"no such group: {group_id}")
        self.job_id = group_id


class GroupIncomplete(JobqError):
    """A group's submitter stopped (died, or was interrupted) before it submitted every item:
    the jobs it did submit ran, but the group will never be whole."""

    def __init__(self, group_id: object, submitted: int, idle_seconds: float) -> None:
        self.group_id = group_id
        self.submitted = submitted
        super().__init__(
            f"group {group_id} is incomplete: its submitter stopped after {submitted} items "
            f"(nothing added for {idle_seconds:.0f}s); the jobs it submitted have finished"
        )


class StoreError(JobqError):
    """The database cannot be used: not a jobq database, corrupt, read-only, full, locked."""


class StoreBusy(StoreError):
    """The database stayed locked by other writers longer than the busy budget."""


class JobFailed(JobqError):
    """A joined job ended ``failed`` or ``cancelled``; carries the remote error.

    ``index`` is set when the job is an item of a group (``Group.join``).
    """

    def __init__(
        self,
        job_id: object,
        error_type: str,
        message: str,
        traceback: str = "",
        state: str = "failed",
        index: int | None = None,
        error_class: str | None = None,
        error_args: list[object] | None = None,
        error_attrs: dict[str, object] | None = None,
    ) -> None:
        self.job_id = job_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.state = state
        self.index = index
        #: ``module:qualname`` of the job's exception class and its JSON ``args``, when stored
        self.error_class = error_class
        self.error_args = error_args
        self.error_attrs = error_attrs
        where = f"job {job_id}" if index is None else f"item {index} (job {job_id})"
        super().__init__(f"{where} {state}: {error_type}: {message}")


class StepMismatch(JobqError):
    """A replayed job reached a different step than the one recorded at the same position:
    the code between steps is not deterministic (or changed under a job in flight)."""

    def __init__(self, position: int, recorded: str, called: str) -> None:
        self.position = position
        self.recorded = recorded
        self.called = called
        super().__init__(f"step {position + 1}: the job recorded step {recorded!r} here but now calls {called!r}")


class StepNotSerializable(JobqError, TypeError):
    """A step returned a value that is not JSON: it cannot be recorded."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        super().__init__(f"step {name!r} returned a value that is not JSON-serialisable: {detail}")


class EventTimeout(JobqError, TimeoutError):
    """``jobq.wait_for(key, timeout=...)`` saw no event for its key in time."""

    def __init__(self, key: str, timeout: float | None) -> None:
        self.key = key
        self.timeout = timeout
        super().__init__(f"no event {key!r} within {timeout} s")
