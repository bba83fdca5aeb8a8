"""``GET /metrics``: Prometheus text format, built with prometheus_client from one snapshot
of the store per scrape. Never a job id as a label."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from ..client.queue import Queue
from ..core import __version__
from ..core.models import STATES
from ..ops import monitor
from .deps import queue_of

router = APIRouter()


class StoreCollector(Collector):
    """Collects jobq's metrics from the store at each scrape."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Any]:
        s = monitor.snapshot(self.queue)
        jobs = GaugeMetricFamily("jobq_jobs", "Jobs by queue and state.", labels=["queue", "state"])
        for queue in sorted(s.counts):
            for state in STATES:
                jobs.add_metric([queue, state], s.counts[queue].get(state, 0))
        yield jobs
        submitted = CounterMetricFamily("jobq_jobs_submitted", "Jobs submitted, ever.", labels=["queue"])
        for queue, n in sorted(s.submitted.items()):
            submitted.add_metric([queue], n)
        yield submitted
        finished = CounterMetricFamily(
            "jobq_jobs_finished", "Jobs that ended, by outcome (succeeded, failed, cancelled), ever.", labels=["queue", "outcome"]
        )
        for (queue, outcome), n in sorted(s.finished.items()):
            finished.add_metric([queue, outcome], n)
        yield finished
        duration = HistogramMetricFamily("jobq_job_duration_seconds", "How long attempts ran.", labels=["queue"])
        wait = HistogramMetricFamily("jobq_job_wait_seconds", "How long attempts waited from due to start.", labels=["queue"])
        for queue, (n, dsum, wsum, dcounts, wcounts) in sorted(s.histograms.items()):
            duration.add_metric([queue], _cumulative(s.buckets, dcounts, n), dsum)
            wait.add_metric([queue], _cumulative(s.buckets, wcounts, n), wsum)
        yield duration
        yield wait
        oldest = GaugeMetricFamily(
            "jobq_queue_oldest_age_seconds", "Age of the oldest queued job since it was due.", labels=["queue"]
        )
        for queue in sorted(s.paused):
            oldest.add_metric([queue], s.oldest.get(queue, 0.0))
        yield oldest
        paused = GaugeMetricFamily("jobq_queue_paused", "1 when the queue is paused.", labels=["queue"])
        for queue, flag in sorted(s.paused.items()):
            paused.add_metric([queue], 1.0 if flag else 0.0)
        yield paused
        beat = GaugeMetricFamily(
            "jobq_supervisor_heartbeat_timestamp_seconds",
            "Last heartbeat of each live supervisor.",
            labels=["supervisor", "host"],
        )
        busy = GaugeMetricFamily("jobq_workers_busy", "Workers running a job, per live supervisor.", labels=["supervisor"])
        for sup in s.supervisors:
            beat.add_metric([sup["id"], sup["host"]], _ts(sup["heartbeat_at"]))
            busy.add_metric([sup["id"]], s.busy.get(sup["id"], 0))
        yield beat
        yield busy
        parts = GaugeMetricFamily(
            "jobq_partition_jobs",
            f"Queued and running jobs of the {monitor.PARTITION_TOP} partitions of each queue with the most; "
            f"the rest summed as partition {monitor.OTHER_PARTITIONS!r}.",
            labels=["queue", "partition", "state"],
        )
        for queue, rows in sorted(s.partitions.items()):
            for row in rows:
                parts.add_metric([queue, row["partition"], "queued"], row["queued"])
                parts.add_metric([queue, row["partition"], "running"], row["running"])
        yield parts
        run, replayed = self.queue.store.step_totals()
        yield CounterMetricFamily("jobq_steps_run", "Durable steps run and recorded, ever.", value=run)
        yield CounterMetricFamily("jobq_steps_replayed", "Durable steps replayed from their record, ever.", value=replayed)
        info = InfoMetricFamily("jobq_build", "jobq's version and store backend.")
        info.add_metric([], {"version": __version__, "backend": s.backend})
        yield info


def _cumulative(bounds: tuple[float, ...], counts: list[int], total: int) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = [(repr(float(bound)), float(n)) for bound, n in zip(bounds, counts, strict=True)]
    out.append(("+Inf", total))
    return out


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


@router.get("/metrics", include_in_schema=False)
def scrape(request: Request) -> Response:
    """The metrics in Prometheus text format."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        registry = request.app.state.registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(queue_of(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
