"""The SQL stores' job operations: submitting (in short transactions, whatever the size),
claiming and finishing, over the named transitions of :mod:`.transitions` and the
statements of :mod:`.queries`, which SQLite and PostgreSQL both run.

A backend supplies connections and transactions (:meth:`_write`, :meth:`_read`), its
schema, bulk inserts, counts and its row-locking clauses."""

from __future__ import annotations

import functools
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.errors import ValidationError
from ..core.models import (
    QUEUED,
    SCHEDULED,
    SUCCEEDED,
    WAITING,
    ClaimedJob,
    JobError,
    Outcome,
    OutcomeKind,
    State,
)
from . import queries as Q
from .base import JobStart, Store, Submitted
from .batches import STREAM_CHUNK_BYTES as STREAM_CHUNK_BYTES
from .batches import STREAM_CHUNK_SECONDS as STREAM_CHUNK_SECONDS
from .batches import encoded_batches
from .invariants import Violation, violations
from .rows import claimed_jobs, success_statements
from .sql_admin import SQLAdmin
from .sql_dashboard import SQLDashboard
from .sql_steps import SQLSteps
from .transitions import Transitions

if TYPE_CHECKING:
    from ..core.spec import JobSpec

T = TypeVar("T")

#: items a streamed submit inserts per transaction, and the most seconds it gathers them:
#: each transaction holds the write lock for a few milliseconds at most
STREAM_CHUNK_ITEMS = 2000


class SQLStore(SQLDashboard, SQLAdmin, SQLSteps, Transitions, Store):
    """The job operations over SQL; subclasses bind them to one database engine."""

    @abstractmethod
    def _write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one write transaction (re-run whole on transient conflicts:
        ``fn`` must only run statements, never consume caller data)."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read statement."""

    def invariant_violations(self) -> list[Violation]:
        """The rows that break a state invariant (:mod:`jobq.store.invariants`): none, always."""
        return violations(lambda sql: self._read(sql), self.counts())

    @abstractmethod
    def _insert_rows(self, conn: Any, rows: list[tuple[Any, ...]]) -> Sequence[int]:
        """Insert job rows (in the order of ``INSERT_JOB``); their ids, in order."""

    @abstractmethod
    def _insert_args(self, conn: Any, template: list[Any], array: str, count: int, first_index: int | None) -> Sequence[int]:
        """Insert one job per element of ``array`` (a JSON array of ``count`` argument lists),
        the rest from ``template`` (a row in the order of ``INSERT_JOB``), in one statement;
        group indexes count from ``first_index``."""

    def _notify(self, conn: Any, channel: str) -> None:
        """Wake listeners of ``channel`` (``submitted`` or ``finished``) when this commits."""

    # -- submitting -----------------------------------------------------------------
    def _caller_transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """Write in the caller's open transaction on ``conn``, in a savepoint of ours; a connection
        in autocommit mode or on another database raises :class:`ValidationError`."""
        raise ValidationError("conn", f"{type(self).__name__} cannot write in a caller's transaction")

    def _writer(self, conn: Any, stack: ExitStack) -> Callable[[Callable[[Any], T]], T]:
        """How to run a write: our own short transaction, or (``conn``) the caller's."""
        wrapped = stack.enter_context(self._caller_transaction(conn)) if conn is not None else None
        return self._write if conn is None else (lambda fn: fn(wrapped))

    def submit(
        self, specs: Iterable[JobSpec], now: float, group: bool = False, conn: Any = None
    ) -> tuple[list[Submitted], str | None]:
        specs = list(specs)

        def insert(conn: Any) -> tuple[list[Submitted], str | None]:
            group_id = None
            if group:
                group_id = conn.execute(Q.INSERT_GROUP, (len(specs), now, 1, now)).fetchone()[0]
            self._mark_partitioned(conn, specs, now)
            if all(s.key is None and not s.depends_on for s in specs):
                rows = [self._row(s, now, group_id, i) for i, s in enumerate(specs)]
                out = [Submitted(job_id) for job_id in self._insert_rows(conn, rows)]
            else:
                out = [self._insert_one(conn, s, now, group_id, i) for i, s in enumerate(specs)]
            self._notify(conn, "submitted")
            return out, (f"g{group_id}" if group_id is not None else None)

        with ExitStack() as stack:
            return self._writer(conn, stack)(insert)

    def submit_stream(
        self,
        base: JobSpec,
        args_iter: Iterable[list[Any]],
        now: float,
        group: bool,
        max_payload_bytes: int,
        conn: Any = None,
        on_commit: Callable[[], None] | None = None,
        chunk: int = STREAM_CHUNK_ITEMS,
    ) -> tuple[list[int], str | None]:
        """Insert one job per argument list of ``args_iter`` (the rest as in ``base``).

        The iterable is read outside any transaction, a batch at a time (at most ``chunk``
        items, fewer when they are big: see :func:`encoded_batches`), and each batch is
        inserted in a short transaction of its own, after which ``on_commit`` runs. Nothing is
        inserted until two batches are read, so a bad item among them raises with nothing stored. When a
        later item is bad or the iterable raises, the jobs stored so far that have not started
        are cancelled (``GroupAborted``), the group (with ``group``) is marked *aborted*, and
        the error is raised. With ``group``, the group is *open* while chunks arrive and
        *sealed* by the last one; a group whose submitter died stays open, and
        :meth:`jobq.Group.join` reports it incomplete.

        With ``conn`` every chunk goes into the caller's open transaction (one savepoint)."""
        with ExitStack() as stack:
            write = self._writer(conn, stack)
            own = conn is None
            return self._stream(base, args_iter, now, group, max_payload_bytes, chunk, write, own, on_commit if own else None)

    def _stream(
        self,
        base: JobSpec,
        args_iter: Iterable[list[Any]],
        now: float,
        group: bool,
        max_payload_bytes: int,
        chunk: int,
        write: Callable[[Callable[[Any], Any]], Any],
        own_transactions: bool,
        on_commit: Callable[[], None] | None = None,
    ) -> tuple[list[int], str | None]:
        template = list(self._row(base, now, None, 0))
        kwargs_bytes = len(template[3])
        batches = encoded_batches(args_iter, chunk, kwargs_bytes, max_payload_bytes)
        ids: list[int] = []
        group_id: int | None = None
        index = 0
        try:
            current = next(batches, None)
            while current is not None:
                upcoming = next(batches, None)  # read before the write: never inside it
                count, array = current
                last = upcoming is None

                def insert(
                    conn: Any,
                    count: int = count,
                    array: str = array,
                    last: bool = last,
                    index: int = index,
                    gid: int | None = group_id,
                ) -> tuple[int | None, Sequence[int]]:
                    if group and gid is None:  # the first chunk makes the group: sealed at once when it is the last
                        gid = conn.execute(Q.INSERT_GROUP, (0, now, 1 if last else 0, time.time())).fetchone()[0]
                        template[Q.ROW_GROUP_ID] = gid
                    elif last and gid is not None:
                        conn.execute(Q.SEAL_GROUP, (time.time(), gid))
                    self._mark_partitioned(conn, [base], now)
                    new_ids = self._insert_args(conn, template, array, count, index if group else None)
                    if gid is not None:
                        conn.execute(Q.GROW_GROUP, (count, time.time(), gid))
                    self._notify(conn, "submitted")
                    return gid, new_ids

                group_id, new_ids = write(insert)  # the group is ours once its first chunk commits
                ids.extend(new_ids)
                if on_commit is not None and not last:  # the caller learns of the last one on return
                    on_commit()
                index += count
                current = upcoming
            if group and group_id is None:  # an empty map is an empty, sealed group
                group_id = write(lambda conn: conn.execute(Q.INSERT_GROUP, (0, now, 1, now)).fetchone()[0])
        except BaseException as exc:
            if ids and own_transactions:
                self._abort_stream(ids, group_id, index, exc)
            raise
        return ids, (f"g{group_id}" if group_id is not None else None)

    def _abort_stream(self, ids: Sequence[int], group_id: int | None, index: int, exc: BaseException) -> None:
        """Cancel the jobs a stream stored before it failed (those not started yet) and mark
        its group aborted."""
        error = JobError("GroupAborted", f"submitting stopped at item {index}: {type(exc).__name__}: {exc}")

        def abort(conn: Any, chunk: Sequence[int]) -> None:
            marks = Q.marks(len(chunk))
            rows = conn.execute(Q.UNSTARTED_AMONG.format(marks=marks, lock=self.row_lock), tuple(chunk)).fetchall()
            self._end_unstarted(conn, rows, State.CANCELLED, error, time.time())

        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                self._write(functools.partial(abort, chunk=chunk))
            if group_id is not None:
                gid = group_id

                def mark(conn: Any) -> None:
                    conn.execute(Q.ABORT_GROUP, (time.time(), gid))

                self._write(mark)
        except Exception:  # noqa: BLE001 - the original error matters more; the group stays open
            pass

    @staticmethod
    def _row(spec: JobSpec, now: float, group_id: int | None, index: int, state: str | None = None) -> tuple[Any, ...]:
        run_at = spec.run_at if spec.run_at is not None else now
        if state is None:
            state = SCHEDULED.value if run_at > now else QUEUED.value
        return (
            spec.name,
            spec.target,
            spec.args_json(),
            spec.kwargs_json(),
            spec.queue,
            spec.priority,
            str(state),
            spec.retries + 1,
            spec.retries,
            spec.retry_backoff,
            spec.retry_backoff_max,
            spec.timeout,
            run_at,
            now,
            spec.key,
            group_id,
            index if group_id is not None else None,
            int(spec.pass_results),
            spec.result_ttl,
            spec.trace,
            spec.partition,
            spec.memory_mb,
            spec.cpus,
        )

    @staticmethod
    def _mark_partitioned(conn: Any, specs: Sequence[JobSpec], now: float) -> None:
        for queue in sorted({s.queue for s in specs if s.partition is not None}):
            conn.execute(Q.MARK_PARTITIONED, (queue, now, queue))

    def _insert_one(self, conn: Any, spec: JobSpec, now: float, group_id: int | None, index: int) -> Submitted:
        if spec.key is not None:
            self._lock_key(conn, spec.key)
            row = conn.execute(Q.FIND_KEY, (spec.key,)).fetchone()
            if row:
                if spec.on_conflict == "replace":  # only a job not yet claimed takes new arguments
                    conn.execute(Q.REPLACE_ARGS, (spec.args_json(), spec.kwargs_json(), row[0]))
                return Submitted(row[0], existing=True)
        deps = list(dict.fromkeys(spec.depends_on))
        pending = 0
        dead_dep = None
        found: dict[int, str] = {}
        if deps:
            # Shared row locks: a dependency finishing now either commits first (we see it
            # succeeded) or waits for us (and then sees our job_deps rows).
            found = dict(
                conn.execute(Q.DEPENDENCY_STATES.format(marks=Q.marks(len(deps)), lock=self.share_lock), deps).fetchall()
            )
            missing = [d for d in deps if d not in found]
            if missing:
                raise ValidationError("depends_on", f"unknown job id {missing[0]}")  # rolls the insert back
            pending = sum(1 for d in deps if found[d] != SUCCEEDED)
            dead_dep = next((d for d in deps if found[d] in (State.FAILED, State.CANCELLED)), None)
        row = self._row(spec, now, group_id, index, WAITING.value if pending else None)
        job_id = self._insert_rows(conn, [row])[0]
        if deps:
            conn.executemany(Q.INSERT_DEP, [(job_id, d, i) for i, d in enumerate(deps)])
            conn.execute(Q.SET_DEPS_PENDING, (pending, job_id))
            if dead_dep is not None:
                error = JobError("DependencyFailed", f"dependency {dead_dep} ended {found[dead_dep]}")
                self._end_unstarted(conn, [(job_id, spec.queue, row[Q.ROW_STATE])], State.CANCELLED, error, now)
        return Submitted(job_id)

    # -- claiming and finishing -----------------------------------------------------
    def has_runnable(self, queues: Sequence[str] | None, now: float, slots: int | None = None) -> bool:
        return any(self._due(queues, now, slots))

    def _due(self, queues: Sequence[str] | None, now: float, slots: int | None = None) -> tuple[bool, bool]:
        """Whether queued jobs of ``queues`` needing at most ``slots`` cpus, and whether
        scheduled ones, are due (a read)."""
        qsql, qparams = Q.queue_filter(queues)
        most = Q.ANY_SLOTS if slots is None else slots
        params = (now, most, *qparams, now, most, *qparams, now, *qparams)
        queued, scheduled = self._read(Q.DUE.format(queues=qsql), params)[0]
        return bool(queued), bool(scheduled)

    def claim(
        self,
        owner: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease_until: float,
        slots: int | None = None,
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        asked_at = time.monotonic()
        # A read first, so idle supervisors never queue up for the write lock.
        queued_due, scheduled_due = self._due(queues, now, slots)
        if not queued_due and not scheduled_due:
            return []
        rows = self._write(lambda conn: self._claim(conn, owner, queues, limit, now, lease_until, scheduled_due, slots))
        late = time.monotonic() - asked_at
        if rows and late > (lease_until - now) / 4:
            # The claim stalled (a link cut mid-claim, a long wait for the lock): its leases may
            # have been committed already past, and another supervisor may be taking these
            # jobs back as lost. Renew them from the time now, and keep only those still ours.
            renew = (lease_until + late, owner)
            held = set(self._write(lambda conn: [r[0] for r in conn.execute(Q.RENEW_LEASES, renew).fetchall()]))
            rows = [r for r in rows if r[0] in held]
        return claimed_jobs(rows) if rows else []

    def start(self, owner: str, starts: Sequence[JobStart]) -> list[int]:
        if not starts:
            return []
        return self._write(lambda c: self._start(c, owner, starts))

    def finish(self, owner: str, outcomes: Sequence[Outcome], now: float) -> list[int]:
        if not outcomes:
            return []
        ok = OutcomeKind.SUCCEEDED  # `is` first: one pointer comparison a job, before an enum's __eq__
        succeeded = [o for o in outcomes if o.kind is ok or o.kind == ok]
        others = [o for o in outcomes if not (o.kind is ok or o.kind == ok)] if len(succeeded) < len(outcomes) else []

        figures = self._take_figures(time.monotonic())  # the dashboard's, booked by earlier finishes
        statements = success_statements(owner, succeeded, now)

        def write(conn: Any) -> list[int]:
            self._begin_observing()  # again on a retried attempt: nothing is booked twice
            rejected = self._succeed(conn, owner, succeeded, now, statements) if succeeded else []
            rejected += [o.job_id for o in others if not self._fail_or_retry(conn, owner, o, now)]
            self._write_figures(conn, figures)
            self._notify(conn, "finished")
            return rejected

        try:
            rejected = self._write(write)
        except BaseException:
            self._end_observing(committed=False)
            self._restore_figures(figures)
            raise
        self._end_observing(committed=True)
        return rejected

    def requeue_lost(
        self, now: float, owner: str | None = None, expired_before: float | None = None, reason: str = ""
    ) -> list[int]:
        if owner is None and expired_before is None:
            return []
        if owner is None and not self._read(Q.ANY_LEASE_EXPIRED, (expired_before,))[0][0]:
            return []
        return self._write(lambda conn: self._requeue_lost(conn, now, owner, expired_before, reason))
