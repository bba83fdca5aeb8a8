"""The JSON HTTP API under ``/api/v1``: reads are open on loopback (beyond it the read gate
asks for credentials first, see :mod:`jobq.dashboard.gate`), every POST needs the token (or the
page's session and CSRF token). Bad input is a 422 naming the field; unknown ids a 404."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ..core.errors import ValidationError
from ..ops import monitor
from .deps import json_object, queue_of, writer

router = APIRouter()

#: the fields of a job definition POST /jobs takes (as q.submit's arguments)
SUBMIT_FIELDS = (
    "target",
    "args",
    "kwargs",
    "queue",
    "priority",
    "name",
    "delay",
    "run_at",
    "key",
    "depends_on",
    "retries",
    "timeout",
    "check",
    "partition",
    "memory_mb",
    "cpus",
    "on_conflict",
)


@router.get("/status")
def status(request: Request) -> dict[str, Any]:
    """Counts by state and queue, and live supervisors: ``jobq status --json``."""
    return queue_of(request).status()


@router.get("/overview")
def overview(request: Request) -> dict[str, Any]:
    """The overview page's data: counts, the last hour per minute, oldest queued, supervisors."""
    return monitor.overview(queue_of(request))


@router.get("/charts")
def charts(request: Request, range: str | None = None, queue: str | None = None) -> dict[str, Any]:  # noqa: A002
    """Attempts that ended per bar over ``range`` (1h, 24h, 7d), of ``queue`` or all:
    throughput and failure rate, as the overview draws them."""
    return monitor.charts(queue_of(request), monitor.parse_range(range), queue)


@router.get("/jobs")
def jobs(
    request: Request,
    state: str | None = None,
    queue: str | None = None,
    target: str | None = None,
    name: str | None = None,
    contains: str | None = None,
    limit: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """Jobs newest first, filtered (``contains``: text in the arguments or the result, any
    case; a scan); ``next`` is the ``before`` of the next page (null at the end)."""
    f = monitor.filters(state, queue, target, name, contains)
    page = monitor.jobs_page(queue_of(request), f, monitor.parse_cursor(before), monitor.parse_limit(limit))
    return page.to_dict()


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: str) -> dict[str, Any]:
    """One job's record, with its steps: ``jobq status ID --json``."""
    return queue_of(request).job_status(job_id)


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
def logs(request: Request, job_id: str) -> PlainTextResponse:
    """What the job printed, as text/plain."""
    return PlainTextResponse(queue_of(request).logs(job_id))


@router.post("/jobs", status_code=201, dependencies=[Depends(writer)])
def submit(request: Request, definition: Any = Body(default=None)) -> JSONResponse:
    """Submit one job definition (validated as ``q.submit`` validates): 201 ``{"id": N}``, or
    200 with the unfinished job of the same ``key``."""
    definition = json_object(definition, "a job definition")
    unknown = sorted(set(definition) - set(SUBMIT_FIELDS))
    if unknown:
        raise ValidationError(unknown[0], f"unexpected field; one of {', '.join(SUBMIT_FIELDS)}")
    if "target" not in definition:
        raise ValidationError("target", "missing")
    d = dict(definition)
    target = d.pop("target")
    args = d.pop("args", None)
    if "run_at" in d and d["run_at"] is not None:
        if not isinstance(d["run_at"], str):
            raise ValidationError("run_at", "expected ISO-8601 text with a time zone")
        try:
            d["run_at"] = datetime.fromisoformat(d["run_at"])
        except ValueError:
            raise ValidationError("run_at", "not an ISO-8601 time") from None
    if "check" in d and not isinstance(d["check"], bool):
        raise ValidationError("check", "expected true or false")
    if not isinstance(target, str):
        raise ValidationError("target", "expected 'package.module:function'")
    if args is not None and not isinstance(args, list):
        raise ValidationError("args", "expected a JSON array")
    job = queue_of(request).submit(target, () if args is None else args, **d)
    return JSONResponse({"id": job.id, "existing": job.existing}, status_code=200 if job.existing else 201)


@router.post("/jobs/{job_id}/cancel", dependencies=[Depends(writer)])
def cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a job: ``cancelled`` at once, ``cancelling`` while its supervisor ends it."""
    out = queue_of(request).cancel(job_id)
    jid, state = next(iter(out.items()))
    return {"id": jid, "state": state}


@router.post("/jobs/{job_id}/retry", dependencies=[Depends(writer)])
def retry(request: Request, job_id: str, from_step: str | None = None) -> dict[str, Any]:
    """Requeue a failed or cancelled job (``requeued`` is empty for any other state); with
    ``?from_step=NAME``, a failed, cancelled or succeeded job runs again from that step."""
    return {"requeued": queue_of(request).retry(job_id, from_step=from_step)}


@router.post("/jobs/bulk", dependencies=[Depends(writer)])
def bulk(request: Request, body: Any = Body(default=None)) -> dict[str, Any]:
    """Retry, cancel or delete the listed ``ids``, or every job matching ``filter``:
    ``{"action": "retry"|"cancel"|"delete", "ids": [...]}`` or ``{"action": ..., "filter": {...}}``."""
    body = json_object(body, "action and ids or filter")
    action = body.get("action")
    if action not in ("retry", "cancel", "delete"):
        raise ValidationError("action", "one of retry, cancel, delete")
    q = queue_of(request)
    if "filter" in body:
        flt = body["filter"]
        if not isinstance(flt, dict):
            raise ValidationError("filter", "expected an object of state, queue, target, name, contains")
        bad = sorted(set(flt) - {"state", "queue", "target", "name", "contains"})
        if bad:
            raise ValidationError(bad[0], "unexpected filter")
        ids: list[Any] = monitor.matching_ids(q, monitor.filters(**flt))
    else:
        given = body.get("ids")
        if not isinstance(given, list) or not given:
            raise ValidationError("ids", "expected a non-empty list of job ids")
        ids = given
    if not ids:
        return {"action": action, "done": []}
    if action == "retry":
        done: list[Any] = q.retry(*ids)
    elif action == "cancel":
        done = [{"id": k, "state": v} for k, v in q.cancel(*ids).items()]
    else:
        done = monitor.delete(q, ids)
    return {"action": action, "done": done}


@router.get("/groups")
def groups(request: Request) -> dict[str, Any]:
    """The newest groups with done / total."""
    return {"groups": monitor.groups(queue_of(request))}


@router.get("/groups/{group_id}")
def group(request: Request, group_id: str) -> dict[str, Any]:
    """A group: done / total, counts by state, the failed items."""
    return monitor.group_detail(queue_of(request), group_id)


@router.get("/schedules")
def schedules(request: Request) -> dict[str, Any]:
    """Every schedule with its next and last run."""
    return {"schedules": monitor.schedules(queue_of(request))}


@router.post("/schedules/{name}/run", status_code=201, dependencies=[Depends(writer)])
def run_schedule(request: Request, name: str) -> dict[str, Any]:
    """Enqueue one run of the schedule now."""
    return {"id": monitor.run_schedule(queue_of(request), name)}


@router.post("/schedules/{name}/pause", dependencies=[Depends(writer)])
def pause_schedule(request: Request, name: str) -> dict[str, Any]:
    """Stop enqueueing the schedule (its definition stays)."""
    monitor.pause_schedule(queue_of(request), name)
    return {"schedule": name, "paused": True}


@router.post("/schedules/{name}/resume", dependencies=[Depends(writer)])
def resume_schedule(request: Request, name: str) -> dict[str, Any]:
    """Enqueue the schedule again, from one period after now."""
    monitor.resume_schedule(queue_of(request), name)
    return {"schedule": name, "paused": False}


@router.get("/queues")
def queues(request: Request) -> dict[str, Any]:
    """Every queue: counts, concurrency cap, paused."""
    return {"queues": monitor.queues(queue_of(request))}


@router.post("/queues/{name}/pause", dependencies=[Depends(writer)])
def pause(request: Request, name: str) -> dict[str, Any]:
    """Stop every supervisor claiming from the queue (its running jobs finish)."""
    queue_of(request).pause_queue(name)
    return {"queue": name, "paused": True}


@router.post("/queues/{name}/resume", dependencies=[Depends(writer)])
def resume(request: Request, name: str) -> dict[str, Any]:
    """Let supervisors claim from the queue again."""
    queue_of(request).resume_queue(name)
    return {"queue": name, "paused": False}
