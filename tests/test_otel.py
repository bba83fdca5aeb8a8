"""Issue 18: OpenTelemetry traces across real processes. A submitter and a supervisor, each
with the SDK installed by a ``sitecustomize`` (a file exporter behind a batch processor, as an
application's would be), share one trace: the request span, the producer span of each submit,
the consumer span of each attempt in a forked worker (with the messaging attributes and, for
a failing job, the recorded exception), and a step's span under its run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobq.core import tracing
from tests.conftest import REPO, _env

pytestmark = pytest.mark.timeout(120)

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK is a test dependency: pip install -e '.[test]'")

SITECUSTOMIZE = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class FileExporter(SpanExporter):
    def __init__(self, path):
        self.path = path

    def export(self, spans):
        lines = []
        for s in spans:
            lines.append(json.dumps({
                "pid": os.getpid(),
                "name": s.name,
                "kind": s.kind.name,
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                "attributes": dict(s.attributes or {}),
                "status": s.status.status_code.name,
                "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
            }))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, ("\\n".join(lines) + "\\n").encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


if os.environ.get("JOBQ_TEST_SPANS"):
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(FileExporter(os.environ["JOBQ_TEST_SPANS"]), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
"""

SUBMITTER = """
import json, sys
import jobq
from jobq.core import tracing
from opentelemetry import trace
from tests import stack_tasks

q = jobq.Queue(sys.argv[1])
with trace.get_tracer("app").start_as_current_span("POST /orders") as request:
    ok = q.submit(stack_tasks.square, (4,))
    bad = q.submit(stack_tasks.raise_value, ("card declined",))
    step = q.submit(stack_tasks.with_step, (5,))
    durable = q.submit(stack_tasks.checkout, (sys.argv[2], 9, False))
    group = q.map(stack_tasks.square, [1, 2])
    chunked = q.map(stack_tasks.square, range(4), chunksize=2)
    process = jobq.Process(target=stack_tasks.square, args=(3,), db=sys.argv[1], supervise=False)
    process.start()
print(json.dumps({
    "trace_id": format(request.get_span_context().trace_id, "032x"),
    "request_id": format(request.get_span_context().span_id, "016x"),
    "ok": ok.id, "bad": bad.id, "step": step.id, "durable": durable.id, "process": process.job.id,
    "group": group.job_ids, "group_id": group.id, "chunked": chunked.job_ids,
}))
"""


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_a_job_runs_in_the_trace_of_the_request_that_submitted_it(tmp_path: Path, processes) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "submitter.py").write_text(SUBMITTER)
    spans_file = tmp_path / "spans.jsonl"
    db = str(tmp_path / "jobs.db")
    env = _env()
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    env["JOBQ_TEST_SPANS"] = str(spans_file)
    submitted = subprocess.run(
        [sys.executable, str(tmp_path / "submitter.py"), db, str(tmp_path / "charges")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    ids = json.loads(submitted.stdout)
    supervisor = processes.supervisor(
        db, "--burst", "-c", "2", env={"PYTHONPATH": env["PYTHONPATH"], "JOBQ_TEST_SPANS": str(spans_file)}
    )
    assert supervisor.wait(timeout=60) == 0, supervisor.log_path.read_text()  # type: ignore[attr-defined]

    spans = read_spans(spans_file)
    assert all(s["trace_id"] == ids["trace_id"] for s in spans), spans  # one trace, across three kinds of process
    producers = [s for s in spans if s["kind"] == "PRODUCER"]
    runs = {int(s["attributes"]["messaging.message.id"]): s for s in spans if s["kind"] == "CONSUMER"}
    assert {p["name"] for p in producers} == {
        "jobq submit tests.stack_tasks:square",
        "jobq submit tests.stack_tasks:raise_value",
        "jobq submit tests.stack_tasks:with_step",
        "jobq submit tests.stack_tasks:checkout",
    }
    assert all(p["parent_id"] == ids["request_id"] for p in producers)
    assert len(producers) == 7  # submit x4, two maps, Process.start
    expected = [ids["ok"], ids["bad"], ids["step"], ids["durable"], *ids["group"], ids["process"], *ids["chunked"]]
    assert sorted(runs) == sorted(expected)
    # a chunk of a chunked map is named after the map's function, not jobq's chunk runner
    assert {runs[i]["name"] for i in ids["chunked"]} == {"jobq run tests.stack_tasks:square"}
    producer_of = {
        int(p["attributes"]["messaging.message.id"]): p for p in producers if "messaging.message.id" in p["attributes"]
    }

    ok = runs[ids["ok"]]
    assert ok["name"] == "jobq run tests.stack_tasks:square"
    assert ok["parent_id"] == producer_of[ids["ok"]]["span_id"]
    assert ok["attributes"] == {
        "messaging.system": "jobq",
        "messaging.destination.name": "default",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.message.id": str(ids["ok"]),
        "jobq.job.attempt": 1,
        "code.function": "tests.stack_tasks:square",
        "jobq.job.outcome": "succeeded",
    }
    assert ok["status"] != "ERROR"
    submitter_pid = next(p["pid"] for p in producers)
    assert ok["pid"] not in (submitter_pid, supervisor.pid)  # exported from a forked worker

    bad = runs[ids["bad"]]
    assert bad["parent_id"] == producer_of[ids["bad"]]["span_id"]
    assert bad["status"] == "ERROR" and bad["attributes"]["jobq.job.outcome"] == "failed"
    assert bad["attributes"]["error.type"] == "ValueError"
    [event] = bad["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "card declined"

    [step] = [s for s in spans if s["name"] == "jobq step double"]
    assert step["parent_id"] == runs[ids["step"]]["span_id"] and step["attributes"]["jobq.step.position"] == 1

    # a durable step (jobq.step) that runs for real is a child span of its job's run
    [charge] = [s for s in spans if s["name"] == "jobq step charge"]
    assert charge["parent_id"] == runs[ids["durable"]]["span_id"]
    assert charge["attributes"]["jobq.step.call"] == 1 and charge["attributes"]["jobq.step.position"] == 0

    [group_producer] = [p for p in producers if p["attributes"].get("jobq.group.id") == ids["group_id"]]
    assert all(runs[i]["parent_id"] == group_producer["span_id"] for i in ids["group"])


def test_without_a_provider_nothing_is_traced_and_nothing_imported(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text(
        "import sys, jobq\n"
        "from jobq.testing import drain\n"
        "from tests import stack_tasks\n"
        f"q = jobq.Queue({str(tmp_path / 'plain.db')!r})\n"
        "job = q.submit(stack_tasks.square, (3,))\n"
        "assert [r.result for r in drain(q)] == [9]\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'jobq imported OpenTelemetry'\n"
        "import opentelemetry.trace  # imported, but no provider configured: still nothing\n"
        "other = q.submit(stack_tasks.square, (4,))\n"
        "assert q.store._read('SELECT count(*) FROM jobs WHERE trace IS NOT NULL')[0][0] == 0\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert not tracing.enabled()  # nor in this test process, which configures none
