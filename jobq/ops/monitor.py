"""What the dashboard, its JSON API and its metrics read, on top of :class:`jobq.Queue`:
a jobs page by cursor, the overview, one job's detail, the counters and histograms.

Everything here calls the store through a :class:`~jobq.api.Queue`; nothing here is SQL."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..client.queue import Queue, _job_id
from ..core.errors import GroupNotFound, JobNotFound, StoreError, ValidationError
from ..core.models import FINISHED_STATES, STATES, iso
from ..runtime.schedules import first_run_at
from ..store.sql_dashboard import BUCKETS

#: most jobs one page may hold
MAX_PAGE = 500
CHART_MINUTES = 60
_COMPACT_EVERY = 300.0
_last_compact: dict[str, float] = {}


@dataclass
class JobsPage:
    """One page of the jobs list, newest first; ``next`` is the cursor of the next page."""

    jobs: list[dict[str, Any]]
    next: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "next": self.next}


@dataclass
class Filters:
    """The jobs list's filters, validated: exact values, None for "any"."""

    state: str | None = None
    queue: str | None = None
    target: str | None = None
    name: str | None = None
    contains: str | None = None  # text in the arguments or the result (any case)

    def as_dict(self) -> dict[str, str]:
        pairs = (("state", self.state), ("queue", self.queue), ("target", self.target), ("name", self.name))
        return {k: v for k, v in (*pairs, ("contains", self.contains)) if v}


def filters(
    state: str | None = None,
    queue: str | None = None,
    target: str | None = None,
    name: str | None = None,
    contains: str | None = None,
) -> Filters:
    """Validated :class:`Filters` (empty text means "any"); raises :class:`ValidationError`."""
    given = (state, queue, target, name, contains)
    state, queue, target, name, contains = (v.strip() if isinstance(v, str) and v.strip() else None for v in given)
    if state is not None and state not in STATES:
        raise ValidationError("state", f"unknown state {state!r}; one of {', '.join(STATES)}")
    for fieldname, value in (("queue", queue), ("target", target), ("name", name), ("contains", contains)):
        if value is not None and len(value) > 500:
            raise ValidationError(fieldname, "longer than 500 characters")
    return Filters(state, queue, target, name, contains)


def parse_cursor(before: Any) -> int | None:
    """The ``before`` cursor as a job id (None for the first page)."""
    if before is None or before == "":
        return None
    text = str(before).strip()
    if not text.isdigit() or len(text) > 18:
        raise ValidationError("before", "expected a job id (the previous page's 'next')")
    return int(text)


def parse_limit(limit: Any, default: int = 50) -> int:
    """The page size, 1 to :data:`MAX_PAGE`."""
    if limit is None or limit == "":
        return default
    try:
        n = int(str(limit))
    except ValueError:
        raise ValidationError("limit", "expected a whole number") from None
    if not 1 <= n <= MAX_PAGE:
        raise ValidationError("limit", f"must be between 1 and {MAX_PAGE}")
    return n


def jobs_page(q: Queue, f: Filters, before: int | None = None, limit: int = 50) -> JobsPage:
    """One page of jobs matching ``f``, with ids below ``before``; each record as
    ``jobq status ID --json`` prints it."""
    records = q.store.jobs_page(f.state, f.queue, f.target, f.name, before, limit + 1, f.contains)
    more = len(records) > limit
    records = records[:limit]
    return JobsPage([r.to_dict() for r in records], records[-1].id if more and records else None)


def matching_ids(q: Queue, f: Filters, cap: int = 100_000) -> list[int]:
    """Ids of every job matching ``f`` (for "all that match"), newest first, at most ``cap``."""
    ids: list[int] = []
    before = None
    while len(ids) < cap:
        page = q.store.jobs_page(f.state, f.queue, f.target, f.name, before, 1000, f.contains)
        ids.extend(r.id for r in page)
        if len(page) < 1000:
            break
        before = page[-1].id
    return ids[:cap]


def job_detail(q: Queue, job_id: Any) -> dict[str, Any]:
    """The record of one job, with its dependents and its captured output."""
    record = q.record(job_id)
    data = record.to_dict()
    data["dependents"] = q.store.dependents(record.id)
    data["output"] = q.store.output(record.id) or ""
    data["cancel_requested"] = record.cancel_requested
    data["steps"] = [s.to_dict() for s in q.steps(record.id)]
    data["waiting_for"] = q.waiting_for(record.id)
    return data


def delete(q: Queue, job_ids: list[Any]) -> list[int]:
    """Delete finished jobs (unknown ids raise :class:`JobNotFound`)."""
    ids = [_job_id(j) for j in job_ids]
    known = q.store.get_states(ids)
    for jid, given in zip(ids, job_ids, strict=True):
        if jid not in known:
            raise JobNotFound(given)
    return q.store.delete_jobs(ids)


def group_detail(q: Queue, group_id: str, failed_limit: int = 100) -> dict[str, Any]:
    """Done / total of a group, its counts by state and its failed items."""
    summary = q.store.group_summary(str(group_id))
    if summary is None:
        raise GroupNotFound(group_id)
    total = sum(summary.values())
    done = sum(summary.get(s, 0) for s in FINISHED_STATES)
    failed = [
        {"id": r.id, "index": r.group_index, "state": r.state, "error": r.error}
        for r in q.store.group_failed(group_id, failed_limit)
    ]
    return {"id": str(group_id), "total": total, "done": done, "counts": {s: summary.get(s, 0) for s in STATES}, "failed": failed}


def groups(q: Queue, limit: int = 50) -> list[dict[str, Any]]:
    """The newest groups with their progress."""
    out = []
    for gid, size, created in q.store.groups_page(None, limit):
        summary = q.store.group_summary(gid) or {}
        done = sum(summary.get(s, 0) for s in FINISHED_STATES)
        bad = summary.get("failed", 0) + summary.get("cancelled", 0)
        out.append({"id": gid, "total": size, "done": done, "failed": bad, "created_at": iso(created)})
    return out


#: partitions shown per queue (the dashboard's queue page, /metrics): the ones with the most
#: queued and running jobs; the others are summed under OTHER_PARTITIONS, so the number of
#: label values stays bounded whatever the number of tenants
PARTITION_TOP = 10
OTHER_PARTITIONS = "(other)"


def queues(q: Queue) -> list[dict[str, Any]]:
    """Every known queue: counts, concurrency cap (stored, else configured), paused flag, rate,
    cap per partition, and the queued/running counts of its top partitions."""
    status = q.status()["queues"]
    out = []
    for info in q.queues():
        cap = info.concurrency if info.concurrency is not None else q.settings.queue_settings(info.name).concurrency
        counts = status.get(info.name, dict.fromkeys(STATES, 0))
        out.append(
            {
                "name": info.name,
                "counts": counts,
                "concurrency": cap,
                "paused": info.paused,
                "rate": info.rate,
                "per_partition": info.partition_concurrency,
                "partitions": top_partitions(q, info.name) if info.partitioned else [],
            }
        )
    return out


def top_partitions(q: Queue, queue: str, top: int = PARTITION_TOP) -> list[dict[str, Any]]:
    """The ``top`` partitions of ``queue`` with the most unfinished jobs (queued, running),
    then the rest summed as one row named :data:`OTHER_PARTITIONS`."""
    rows = q.store.partition_counts(queue, 10**9)
    out = [{"partition": k, "queued": n, "running": r} for k, n, r in rows[:top]]
    rest = rows[top:]
    if rest:
        out.append({"partition": OTHER_PARTITIONS, "queued": sum(n for _, n, _ in rest), "running": sum(r for _, _, r in rest)})
    return out


def schedules(q: Queue) -> list[dict[str, Any]]:
    """Every schedule as ``jobq schedules --json`` prints it, with ``paused`` (a paused one has
    no next run)."""
    paused = q.store.paused_schedules()
    return [{**s.to_dict(paused=s.name in paused), "paused": s.name in paused} for s in q.schedules()]


def pause_schedule(q: Queue, name: str) -> None:
    """Stop enqueueing the schedule ``name`` until :func:`resume_schedule`."""
    if not q.store.pause_schedule(name, time.time()):
        raise JobNotFound(f"schedule {name}")


def resume_schedule(q: Queue, name: str) -> None:
    """Enqueue the schedule ``name`` again, from one period after now."""
    found = [s for s in q.store.schedules() if s.name == name]
    if not found:
        raise JobNotFound(f"schedule {name}")
    s = found[0]
    q.store.resume_schedule(name, first_run_at(s.cron, s.every, time.time()))


def run_schedule(q: Queue, name: str) -> int:
    """Enqueue one run of the schedule ``name`` now ("run now"); its own times are unchanged."""
    for s in q.store.schedules():
        if s.name == name:
            return q.submit(s.target, s.args, s.kwargs, queue=s.queue, name=s.name, check=False).id
    raise JobNotFound(f"schedule {name}")


def _maybe_compact(q: Queue, now: float) -> None:
    last = _last_compact.get(q.path, 0.0)
    if now - last >= _COMPACT_EVERY:
        _last_compact[q.path] = now
        try:
            q.store.compact_stats(int(now // 60) - CHART_MINUTES - 1)
        except StoreError:
            pass  # a read-only or busy database: the rows wait for the next time


def overview(q: Queue, now: float | None = None) -> dict[str, Any]:
    """Counts by queue and state, the last hour's finished attempts per minute (succeeded,
    failed), each queue's oldest queued age, and live supervisors with their busy workers."""
    now = time.time() if now is None else now
    _maybe_compact(q, now)
    status = q.status()
    first = int(now // 60) - CHART_MINUTES + 1
    minutes = {m: {"succeeded": 0, "failed": 0} for m in range(first, first + CHART_MINUTES)}
    for minute, kind, n in q.store.finished_by_minute(first):
        if minute in minutes and kind in ("succeeded", "failed"):
            minutes[minute][kind] += n
    oldest = q.store.oldest_queued(list(status["queues"]))
    busy = q.store.busy_workers()
    for sup in status["supervisors"]:
        sup["busy"] = busy.get(sup["id"], 0)
    return {
        "counts": status["counts"],
        "queues": status["queues"],
        "oldest_queued_seconds": {name: max(0.0, now - at) for name, at in sorted(oldest.items())},
        "paused": sorted(r["name"] for r in queues_paused(q)),
        "supervisors": status["supervisors"],
        "per_minute": [{"minute": iso(m * 60), **v} for m, v in sorted(minutes.items())],
        "at": iso(now),
    }


#: the charts' ranges: (label, minutes shown, minutes per bar)
RANGES: dict[str, tuple[int, int]] = {"1h": (60, 1), "24h": (24 * 60, 60), "7d": (7 * 24 * 60, 360)}


def parse_range(value: Any) -> str:
    """A chart range: ``1h`` (the default), ``24h`` or ``7d``."""
    if value is None or value == "":
        return "1h"
    if value not in RANGES:
        raise ValidationError("range", f"one of {', '.join(RANGES)}")
    return str(value)


def charts(q: Queue, range_: str = "1h", queue: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Attempts that ended per bar of the range (succeeded, failed, cancelled), of one
    ``queue`` or all: throughput and failure rate. The last hour is kept per minute, the
    week before it per hour (see ``compact_stats``)."""
    now = time.time() if now is None else now
    _maybe_compact(q, now)
    shown, per_bar = RANGES[parse_range(range_)]
    last = int(now // 60) // per_bar * per_bar
    first = last - (shown // per_bar - 1) * per_bar
    bars = {m: {"succeeded": 0, "failed": 0, "cancelled": 0} for m in range(first, last + 1, per_bar)}
    for minute, kind, n in q.store.finished_by_minute(first, per_bar, queue or None):
        if minute in bars and kind in bars[minute]:
            bars[minute][kind] += n
    ended = {k: sum(b[k] for b in bars.values()) for k in ("succeeded", "failed", "cancelled")}
    finished = ended["succeeded"] + ended["failed"]
    return {
        "range": range_,
        "queue": queue or None,
        "bucket_seconds": per_bar * 60,
        "buckets": [{"start": iso(m * 60), **v} for m, v in sorted(bars.items())],
        "totals": ended,
        "failure_rate": ended["failed"] / finished if finished else None,
        "per_second": finished / (shown * 60),
    }


def queues_paused(q: Queue) -> list[dict[str, Any]]:
    """The paused queues."""
    return [{"name": c.name} for c in q.store.queue_controls() if c.paused]


@dataclass
class Snapshot:
    """Everything ``/metrics`` exposes, read at one moment."""

    counts: dict[str, dict[str, int]]
    submitted: dict[str, int]
    finished: dict[tuple[str, str], int]
    histograms: dict[str, tuple[int, float, float, list[int], list[int]]]
    oldest: dict[str, float]
    paused: dict[str, bool]
    supervisors: list[dict[str, Any]]
    busy: dict[str, int]
    backend: str
    buckets: tuple[float, ...] = field(default=BUCKETS)
    #: queue -> its top partitions' queued and running counts (see top_partitions)
    partitions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def snapshot(q: Queue, now: float | None = None) -> Snapshot:
    """The metrics now. Counters are derived from the kept counts plus the totals of jobs
    deleted or retried out of a finished state, so they survive restarts and never go down."""
    now = time.time() if now is None else now
    _maybe_compact(q, now)
    counts = q.store.counts()
    totals = q.store.job_totals()
    submitted: dict[str, int] = {}
    finished: dict[tuple[str, str], int] = {}
    for queue, states in counts.items():
        submitted[queue] = submitted.get(queue, 0) + sum(states.values())
        for state in FINISHED_STATES:
            finished[(queue, state)] = finished.get((queue, state), 0) + states.get(state, 0)
    for (queue, state), (deleted, retried) in totals.items():
        submitted[queue] = submitted.get(queue, 0) + deleted
        if state in FINISHED_STATES:
            finished[(queue, state)] = finished.get((queue, state), 0) + deleted + retried
    queue_names = sorted(set(counts) | set(q.settings.queues) | {c.name for c in q.store.queue_controls()})
    paused = dict.fromkeys(queue_names, False)
    for row in queues_paused(q):
        paused[row["name"]] = True
    return Snapshot(
        counts=counts,
        submitted=submitted,
        finished=finished,
        histograms=q.store.histograms(),
        oldest={name: max(0.0, now - at) for name, at in q.store.oldest_queued(queue_names).items()},
        paused=paused,
        supervisors=[s.to_dict() for s in q.live_supervisors()],
        busy=q.store.busy_workers(),
        backend="postgresql" if q.path.startswith("postgres") else "sqlite",
        partitions={c.name: top_partitions(q, c.name) for c in q.store.queue_controls() if c.partitioned},
    )
