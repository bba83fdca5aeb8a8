"""The README's small web application (issue 18): a handler that submits a job."""

from __future__ import annotations

from fastapi import FastAPI

import jobq
from tests.stack_tasks import send_confirmation

app = FastAPI()
q: jobq.Queue | None = None  # the README's app opens jobq.Queue("jobs.db"); the tests give their own


@app.post("/orders/{order_id}")
def place_order(order_id: int) -> dict[str, int]:
    assert q is not None
    return {"job": q.submit(send_confirmation, (order_id,)).id}
