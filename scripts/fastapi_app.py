"""Example: a FastAPI service that runs a durable job per request and awaits its result.

    JOBQ_DB=service.db python scripts/fastapi_app.py --port 8000
    curl 'http://127.0.0.1:8000/square/7'        # {"job": 1, "result": 49}
    curl 'http://127.0.0.1:8000/sum-of-squares?n=1000'

The app embeds a supervisor of two workers in its lifespan (``async with jobq.Supervisor``:
started and drained without blocking the event loop). Each request submits a job with
``await ....asubmit()`` and waits with ``await job.ajoin()``, which never blocks the loop.
The jobs are ``async def`` functions, run on each worker's own event loop. The database is
the one the CLI would use (``JOBQ_DB``, the config file, ``./jobq.db``), so ``jobq status``
and ``jobq logs ID`` show what the service ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, HTTPException, Query

import jobq

q = jobq.Queue()


@q.task(timeout=30, retries=1)
async def square(x: int) -> int:
    """The job: a coroutine, run on a worker's event loop (where it could await I/O)."""
    await asyncio.sleep(0)
    return x * x


@q.task(timeout=30)
def add_all(values: list[int]) -> int:
    return sum(values)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with jobq.Supervisor(q, concurrency=2):
        yield


app = FastAPI(title="jobq example", lifespan=lifespan)


async def _result(job: jobq.Job, timeout: float) -> object:
    try:
        return await job.ajoin(timeout=timeout)
    except jobq.JobFailed as exc:
        raise HTTPException(502, detail=f"job {job.id} {exc.state}: {exc.error_type}: {exc.message}") from None
    except TimeoutError:
        raise HTTPException(504, detail=f"job {job.id} is still running; GET /jobs/{job.id} later") from None


@app.get("/square/{x}")
async def get_square(x: int) -> dict[str, object]:
    """Submit ``square(x)`` as a job and answer with its result."""
    job = await square.asubmit(x)
    return {"job": job.id, "result": await _result(job, 30)}


@app.get("/sum-of-squares")
async def sum_of_squares(n: int = Query(ge=0, le=100_000)) -> dict[str, object]:
    """A chunked map of ``square`` over ``range(n)``, then the sum of its results."""
    group = await q.amap(square, range(n), chunksize=100, timeout=30)
    try:
        values = await group.ajoin(timeout=60)
    except jobq.JobFailed as exc:
        raise HTTPException(502, detail=str(exc)) from None
    return {"group": group.id, "result": sum(values)}


@app.get("/jobs/{job_id}")
async def get_job(job_id: int) -> dict[str, object]:
    """A job's record (404 when there is none)."""
    try:
        record = await asyncio.to_thread(q.record, job_id)
    except jobq.JobNotFound:
        raise HTTPException(404, detail=f"no such job: {job_id}") from None
    return record.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description="jobq's FastAPI example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port (the log line names it)")
    opts = parser.parse_args()
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="info")


if __name__ == "__main__":
    main()
