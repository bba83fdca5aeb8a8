"""OpenTelemetry traces (the optional ``otel`` extra): a producer span around each submit that
stores the W3C trace context with the job, and a consumer span around each attempt a worker
runs, whose parent is that context.

jobq never installs a tracer provider: it uses the global one that the application,
``opentelemetry-instrument`` or a ``sitecustomize`` set up. Tracing is on only when
``opentelemetry.trace`` is already imported (whoever configured a provider imported it) and the
global provider is a real one: otherwise every hook here returns at once, without importing
anything, so jobq without OpenTelemetry (or without a configured provider) pays nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the ``messaging.system`` of every jobq span
SYSTEM = "jobq"


def _api() -> Any:
    """The ``opentelemetry.trace`` module when a real tracer provider is configured, else None."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return trace


def enabled() -> bool:
    """Whether jobq records spans in this process now."""
    return _api() is not None


def _tracer(trace: Any) -> Any:
    from . import __version__

    return trace.get_tracer("jobq", __version__)


class SubmitSpan:
    """The producer span of one submit (or map): ``carrier`` is the W3C context to store."""

    def __init__(self, span: Any, carrier: str | None) -> None:
        self.span = span
        self.carrier = carrier

    def submitted(self, job_ids: list[int], group_id: str | None = None) -> None:
        """Name what the submit stored on its span."""
        if len(job_ids) == 1:
            self.span.set_attribute("messaging.message.id", str(job_ids[0]))
        else:
            self.span.set_attribute("messaging.batch.message_count", len(job_ids))
        if group_id is not None:
            self.span.set_attribute("jobq.group.id", group_id)


@contextmanager
def submit_span(target: str, queue: str) -> Iterator[SubmitSpan | None]:
    """A producer span ``jobq submit <target>`` around a submit; yields None when tracing is off.
    An exception raised inside it is recorded on the span."""
    trace = _api()
    if trace is None:
        yield None
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    attributes = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "send",
        "messaging.operation.name": "submit",
        "code.function": target,
    }
    with _tracer(trace).start_as_current_span(
        f"jobq submit {target}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        yield SubmitSpan(span, json.dumps(carrier, separators=(",", ":")) if carrier else None)


class RunSpan:
    """The consumer span of one attempt, current while the job runs."""

    def __init__(self, trace: Any, span: Any, token: Any) -> None:
        self._trace = trace
        self.span = span
        self._token = token

    def failed(self, exc: BaseException) -> None:
        """The job raised ``exc``: recorded on the span, whose status becomes an error."""
        self.span.record_exception(exc)
        self.span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    def end(self, outcome: str, error_type: str | None = None) -> None:
        """The attempt ended with ``outcome`` (succeeded or failed; ``error_type`` when failed)."""
        from opentelemetry import context

        self.span.set_attribute("jobq.job.outcome", outcome)
        if error_type is not None:
            self.span.set_attribute("error.type", error_type)
            if outcome == "failed" and self.span.is_recording():
                self.span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error_type))
        try:
            context.detach(self._token)
        finally:
            self.span.end()


def start_run(target: str, queue: str, job_id: int, attempt: int, carrier: str | None) -> RunSpan | None:
    """Start the consumer span ``jobq run <target>`` of one attempt, child of the context the
    submit stored (``carrier``), and make it current; None when tracing is off."""
    trace = _api()
    if trace is None:
        return None
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = None
    if carrier:
        try:
            parent = TraceContextTextMapPropagator().extract(json.loads(carrier))
        except (ValueError, TypeError, AttributeError):
            parent = None  # a damaged context starts a trace of its own
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.message.id": str(job_id),
        "jobq.job.attempt": attempt,
        "code.function": target,
    }
    span = _tracer(trace).start_span(f"jobq run {target}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes)
    token = context.attach(trace.set_span_in_context(span))
    return RunSpan(trace, span, token)


@contextmanager
def step_span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span ``jobq step <name>`` of the running job's span (for durable steps and any
    code that wants one); yields the span, or None when tracing is off. An exception raised
    inside it is recorded."""
    trace = _api()
    if trace is None:
        yield None
        return
    attrs = {"messaging.system": SYSTEM, **{f"jobq.step.{k}": v for k, v in attributes.items()}}
    with _tracer(trace).start_as_current_span(f"jobq step {name}", attributes=attrs) as span:
        yield span


def flush(timeout_millis: int = 5000) -> None:
    """Export what this process's span processors still hold (a worker calls it when idle and
    before it exits: a forked worker ends with ``os._exit``, which runs no exit hooks)."""
    trace = _api()
    if trace is None:
        return
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        try:
            force_flush(timeout_millis)
        except Exception:  # noqa: BLE001 - an exporter's failure must not stop the worker
            pass
