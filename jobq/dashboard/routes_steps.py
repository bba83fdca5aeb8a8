"""The HTTP API of durable steps (issue 16), under ``/api/v1``: a job's steps, and sending
an event (a write: it needs the token, or the page's session and CSRF token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse

from .deps import queue_of, writer

router = APIRouter()


@router.get("/jobs/{job_id}/steps")
def steps(request: Request, job_id: str) -> dict[str, Any]:
    """The job's recorded steps in call order, and the event key it waits for (or null)."""
    q = queue_of(request)
    records = q.steps(job_id)
    jid = records[0].job_id if records else q.record(job_id).id
    return {"id": jid, "waiting_for": q.waiting_for(jid), "steps": [s.to_dict() for s in records]}


@router.post("/events/{key:path}", status_code=201, dependencies=[Depends(writer)])
def send_event(request: Request, key: str, payload: Any = Body(default=None)) -> JSONResponse:
    """Send event ``key``; the request's JSON body is its payload (none: null). 201 ``{"id": N}``."""
    return JSONResponse({"id": queue_of(request).send_event(key, payload), "key": key}, status_code=201)
