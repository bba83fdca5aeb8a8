"""The Python API: :class:`Queue` (submit, inspect and manage jobs); the handles it returns,
:class:`~jobq.handles.Job` and :class:`~jobq.handles.Group`, live in :mod:`jobq.handles`."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any

from ..core import tracing
from ..core.config import Settings, load_settings
from ..core.errors import GroupNotFound, JobNotFound, ValidationError
from ..core.fsmodes import prepare_database_file
from ..core.local import Poker, presence_id, supervisor_alive
from ..core.models import STATES, JobRecord, check_target, target_of
from ..store import Store, open_store
from ..worker.chunks import CHUNK_TARGET, check_chunksize, chunk_args, chunk_error, chunk_layout
from .admin import QueueAdmin
from .handles import Group, Job, _job_id
from .options import SubmitOptions, as_args

if TYPE_CHECKING:
    from ..core.spec import JobSpec


#: jobq.core.spec.validate_spec once the first submit has imported it (pydantic)
_SPEC: dict[str, Callable[[dict[str, Any], int], JobSpec]] = {}


class Queue(QueueAdmin):
    """A handle on one jobq database: submit, inspect and manage jobs.

    ``Queue("jobs.db")`` creates the file and its schema when missing. Settings come from
    ``config`` (a TOML path or a :class:`Settings`), ``JOBQ_*`` and ``./jobq.toml``.
    """

    def __init__(self, db: str | os.PathLike[str] | None = None, *, config: str | Settings | None = None) -> None:
        if isinstance(config, Settings):
            self.settings = config.replace(db=str(db)) if db is not None else config
        else:
            self.settings = load_settings(config, overrides={"db": str(db) if db is not None else None})
        prepare_database_file(self.settings.db, self.settings.file_mode)
        self.store: Store = open_store(self.settings.db, self.settings.busy_timeout_seconds, self.settings.durability)
        self._poker = Poker(self.store.url) if not self.store.url.startswith("postgres") else None
        self._checked: set[str] = set()
        # Called after each submit stored jobs (jobq.testing.run_inline runs them at once).
        self._after_submit: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"jobq.Queue({self.store.url!r})"

    def close(self) -> None:
        """Close this thread's connection to the database and the wake-up socket (the queue
        opens them again when used)."""
        if self._poker is not None:
            self._poker.close()
        self.store.close()

    @property
    def path(self) -> str:
        """Where the database is (a file path or a URL)."""
        return self.store.url

    # -- submitting -----------------------------------------------------------------
    def _spec_data(
        self, target: str | Callable[..., Any], args: Any, kwargs: Any, options: SubmitOptions, now: float
    ) -> dict[str, Any]:
        """The JobSpec input for one job (absent options take the queue's, then the global, defaults)."""
        data = options.spec_data(target, args, kwargs, self.settings, now, self._dependency_ids)
        if options.check and data["target"] not in self._checked:
            data["_check"] = True
        return data

    def _dependency_ids(self, depends_on: Any) -> builtins.list[int]:
        items = depends_on if isinstance(depends_on, (list, tuple, set)) else [depends_on]
        ids: list[int] = []
        for item in items:
            if isinstance(item, Group):
                ids.extend(item.job_ids)
            else:
                try:
                    ids.append(_job_id(item))
                except JobNotFound:
                    raise ValidationError("depends_on", f"not a job id: {item!r}") from None
        return ids

    def _validate(self, data: dict[str, Any]) -> JobSpec:
        validate = _SPEC.get("validate")
        if validate is None:  # pydantic, on the first submit: reads need none of it
            from ..core.spec import validate_spec

            validate = _SPEC["validate"] = validate_spec
        check = data.pop("_check", False)
        spec = validate(data, self.settings.max_payload_bytes)
        if self.settings.allowed_targets:
            from ..core.allow import check_allowed

            check_allowed(spec.target, self.settings.allowed_targets)
        if check:
            check_target(spec.target)
            self._checked.add(spec.target)
        return spec

    def _insert(self, specs: list[JobSpec], group: bool = False, conn: Any = None) -> tuple[list[Job], str | None]:
        # Without a tracer the submit pays a nullcontext, not the span's generator.
        traced = specs and tracing.enabled()
        with tracing.submit_span(specs[0].target, specs[0].queue) if traced else nullcontext() as span:
            if span is not None:
                for spec in specs:
                    spec.trace = span.carrier
            submitted, group_id = self.store.submit(specs, time.time(), group=group, conn=conn)
            if span is not None:
                span.submitted([s.id for s in submitted], group_id)
        self._submitted(conn)
        return [Job(self, s.id, existing=s.existing) for s in submitted], group_id

    def _submitted(self, conn: Any) -> None:
        if conn is not None:
            return  # invisible until the caller commits: supervisors find it at their next look
        if self._poker is not None:
            self._poker.poke()
        if self._after_submit is not None:
            self._after_submit()

    def submit(
        self,
        target: str | Callable[..., Any],
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int | None = None,
        name: str | None = None,
        timeout: float | str | None = None,
        retries: int | None = None,
        retry_backoff: float | str | None = None,
        retry_backoff_max: float | str | None = None,
        delay: float | str | None = None,
        run_at: datetime | None = None,
        key: str | None = None,
        depends_on: Any = None,
        pass_results: bool = False,
        result_ttl: float | str | None = None,
        check: bool = True,
        partition: str | None = None,
        memory_mb: int | None = None,
        cpus: int | None = None,
        on_conflict: str = "return",
        conn: Any = None,
    ) -> Job:
        """Validate and store one job; returns its :class:`Job` (``existing`` when ``key``
        matched an unfinished job; with ``on_conflict="replace"`` that job, if not yet
        claimed, takes this call's arguments: a debounce). ``partition``: the job's fair share
        inside its queue (claimed round robin with the queue's other partitions);
        ``memory_mb``: its memory cap; ``cpus``: the worker slots it occupies. Raises
        :class:`ValidationError` on bad input.

        ``conn``: the caller's connection (a ``sqlite3.Connection`` or sqlite-utils ``Database``
        on this file, a psycopg connection to this database) in an open transaction: the job
        is written in it and exists only once the caller commits."""
        options = SubmitOptions(
            queue=queue,
            priority=priority,
            name=name,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            delay=delay,
            run_at=run_at,
            key=key,
            depends_on=depends_on,
            pass_results=pass_results,
            result_ttl=result_ttl,
            check=check,
            partition=partition,
            memory_mb=memory_mb,
            cpus=cpus,
            on_conflict=on_conflict,
            conn=conn,
        )
        data = self._spec_data(target, args, kwargs, options, time.time())
        # Dependencies must exist when the job is submitted, so they can never form a cycle;
        # an unknown id is rejected inside the insert transaction.
        jobs, _ = self._insert([self._validate(data)], conn=conn)
        return jobs[0]

    def submit_batch(self, definitions: Iterable[dict[str, Any]]) -> builtins.list[Job]:
        """Submit several job definitions (dicts of :meth:`submit`'s arguments, ``target``
        included; ``run_at`` may be ISO-8601 text) in one transaction: all or none."""
        now = time.time()
        specs = []
        for index, definition in enumerate(definitions):
            if not isinstance(definition, dict):
                raise ValidationError("job", f"item {index}: expected an object")
            d = dict(definition)
            if "target" not in d:
                raise ValidationError("target", f"item {index}: missing")
            if isinstance(d.get("run_at"), str):
                try:
                    d["run_at"] = datetime.fromisoformat(d["run_at"])
                except ValueError:
                    raise ValidationError("run_at", f"item {index}: not an ISO-8601 time") from None
            target, args, kwargs = d.pop("target"), d.pop("args", None), d.pop("kwargs", None)
            data = self._spec_data(target, () if args is None else args, kwargs, SubmitOptions.of(d), now)
            specs.append(self._validate(data))
        jobs, _ = self._insert(specs)
        return jobs

    def submit_many(self, target: str | Callable[..., Any], args_list: Iterable[Any], **options: Any) -> builtins.list[Job]:
        """Submit one job per item of ``args_list`` (each a tuple or list of arguments, or a
        single argument), streamed in short transactions as :meth:`map` does. ``options`` are
        those of :meth:`submit`."""
        if isinstance(args_list, (list, tuple)) and all(map(isinstance, args_list, repeat((tuple, list)))):
            items: Iterable[Any] = args_list  # every item already an argument list: no call per item
        else:
            items = (as_args(a, tuple_only=False) for a in args_list)
        return self._map(target, items, options, as_group=False).jobs

    def map(self, target: str | Callable[..., Any], iterable: Iterable[Any], *, chunksize: int = 1, **options: Any) -> Group:
        """One job per item (per ``chunksize`` items), as a :class:`Group`. A tuple item is the
        argument list; any other value (a list too) is the single argument. Streams the
        iterable in chunks, each stored in a short transaction of its own; it is never held in
        memory whole, and no caller code runs inside a transaction. ``options`` are those of
        :meth:`submit`. With ``chunksize=K`` each job runs K items in order (``jobq.chunks``);
        the group still joins to one result per item, counts in items, and a failure names the
        item's index."""
        if check_chunksize(chunksize) == 1:
            return self._map(target, (as_args(item, tuple_only=True) for item in iterable), options, as_group=True)
        return self._map_chunks(target, iterable, chunksize, options, None)

    def _map_chunks(
        self,
        target: str | Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int,
        options: dict[str, Any],
        spread: bool | None,
    ) -> Group:
        """A chunked map (see :mod:`jobq.chunks` for ``spread``)."""
        options = dict(options)
        if callable(target) and not isinstance(target, str):
            target = target_of(target)
        if not isinstance(target, str):
            raise ValidationError("target", "expected 'package.module:function' or a function")
        if options.get("check", True) and target not in self._checked:
            check_target(target)
            self._checked.add(target)
        kwargs = options.pop("kwargs", None)
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValidationError("kwargs", "expected an object")
        try:
            group = self._map(
                CHUNK_TARGET, chunk_args(target, iterable, chunksize, kwargs, spread), options, as_group=True, traced_as=target
            )
        except ValidationError as exc:
            raise chunk_error(exc, chunksize) from None
        group.layout = chunk_layout(self.store, group.job_ids[:1] + group.job_ids[-1:]) if group.job_ids else None
        return group

    def task(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorator: ``@q.task(queue=..., retries=..., timeout=...)`` returns the function,
        still callable directly, with ``.submit(*args, **kwargs)``, ``.map(iterable,
        chunksize=1)`` and ``.asubmit(...)`` using these options (those of :meth:`submit`)."""
        from .decorator import task

        return task(self, fn, **options)

    async def asubmit(
        self, target: str | Callable[..., Any], args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Job:
        """:meth:`submit` for asyncio code: the write runs in a thread, never on the loop."""
        from .aio import asubmit

        return await asubmit(self, target, args, kwargs, **options)

    async def amap(self, target: str | Callable[..., Any], iterable: Iterable[Any], **options: Any) -> Group:
        """:meth:`map` for asyncio code (a :class:`Group`; ``await group.ajoin()`` for results)."""
        from .aio import amap

        return await amap(self, target, iterable, **options)

    def _map(
        self,
        target: str | Callable[..., Any],
        args_iter: Iterable[list[Any]],
        options: dict[str, Any],
        as_group: bool,
        traced_as: str | None = None,
    ) -> Group:
        options = dict(options)
        kwargs = options.pop("kwargs", None)
        opts = SubmitOptions.of(options)
        opts.check_batch()
        now = time.time()
        first = self._validate(self._spec_data(target, [], kwargs, opts, now))
        with tracing.submit_span(traced_as or first.target, first.queue) as span:
            first.trace = span.carrier if span is not None else None
            ids, group_id = self.store.submit_stream(
                first,
                args_iter,
                now,
                as_group,
                self.settings.max_payload_bytes,
                conn=opts.conn,
                on_commit=self._poker.poke if self._poker is not None else None,  # supervisors start on the first batches
            )
            if span is not None:
                span.submitted(ids, group_id)
        self._submitted(opts.conn)
        return Group(self, group_id, ids)

    # -- reading --------------------------------------------------------------------
    def get(self, job_id: Any) -> Job:
        """The job with that id (as printed). Raises :class:`JobNotFound`."""
        jid = _job_id(job_id)
        if not self.store.get_states([jid]):
            raise JobNotFound(job_id)
        return Job(self, jid)

    def group(self, group_id: str) -> Group:
        """The group with that id (as printed). Raises :class:`GroupNotFound`."""
        ids = self.store.group_jobs(str(group_id))
        if ids is None:
            raise GroupNotFound(group_id)
        return Group(self, str(group_id), ids, chunk_layout(self.store, ids[:1] + ids[-1:]) if ids else None)

    def record(self, job_id: Any) -> JobRecord:
        """The job's full stored record. Raises :class:`JobNotFound`."""
        record = self.store.get(_job_id(job_id))
        if record is None:
            raise JobNotFound(job_id)
        return record

    def status(self) -> dict[str, Any]:
        """Counts by state (every state, zeros included), by queue, and live supervisors."""
        by_queue = self.store.counts()
        counts = dict.fromkeys(STATES, 0)
        queues: dict[str, dict[str, int]] = {}
        for queue, states in sorted(by_queue.items()):
            queues[queue] = dict.fromkeys(STATES, 0)
            for state, n in states.items():
                queues[queue][state] = n
                counts[state] = counts.get(state, 0) + n
        return {"counts": counts, "queues": queues, "supervisors": [s.to_dict() for s in self.live_supervisors()]}

    def live_supervisors(self) -> builtins.list[Any]:
        """Supervisors that are alive: lock held where it can be checked (same host and lock
        directory), else a heartbeat within the lease."""
        now = time.time()
        here = presence_id(self.store.url, self.settings.host())
        return [s for s in self.store.supervisors() if supervisor_alive(s, here, now, self.settings.lease_seconds)]

    def list(self, state: str | None = None, queue: str | None = None, limit: int = 20) -> builtins.list[JobRecord]:
        """Job records, newest first."""
        if state is not None and state not in STATES:
            raise ValidationError("state", f"unknown state {state!r}; one of {', '.join(STATES)}")
        if limit < 1:
            raise ValidationError("limit", "must be at least 1")
        return self.store.list_jobs(state, queue, limit)

    def logs(self, job_id: Any) -> str:
        """What the job printed (stdout and stderr) in its last attempt."""
        jid = _job_id(job_id)
        if not self.store.get_states([jid]):
            raise JobNotFound(job_id)
        return self.store.output(jid) or ""


__all__ = ["Group", "Job", "Queue"]
