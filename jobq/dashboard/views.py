"""What the pages show, computed from the records the API returns: relative times, a job's
queue wait and duration, its timeline, its traceback split into jobq's own frames and the
rest, the charts' SVG geometry. Pure functions of their arguments (and of ``now``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: jobq's own source files (a frame in one of them is jobq running the job, not the job)
JOBQ_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_NOT_OURS = {os.path.join(JOBQ_DIR, "examples.py")}  # examples are user code that ships with jobq
_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line \d+, in ')
RUNNABLE = ("queued", "scheduled", "waiting", "running")
RETRYABLE = ("failed", "cancelled")


def ts(text: str | None) -> float | None:
    """A Unix time from the records' ISO-8601 text (None stays None)."""
    if not text:
        return None
    return datetime.fromisoformat(text).timestamp()


def exact(text: str | None) -> str:
    """The exact time of an ISO-8601 text, for a tooltip: ``2026-12-06 03:58:23.123 UTC``."""
    if not text:
        return ""
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def span(seconds: float | None) -> str:
    """A length of time as people read it: ``12 ms``, ``3.4 s``, ``5 min 2 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return _two(int(s // 60), "min", int(s % 60), "s")
    if s < 86400:
        return _two(int(s // 3600), "h", int(s % 3600 // 60), "min")
    return _two(int(s // 86400), "d", int(s % 86400 // 3600), "h")


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


def ago(text: str | None, now: float) -> str:
    """``3 s ago`` (or ``in 5 min`` for a time ahead) of an ISO-8601 text."""
    at = ts(text)
    if at is None:
        return ""
    delta = now - at
    if abs(delta) < 1:
        return "just now"
    return f"{span(delta)} ago" if delta > 0 else f"in {span(-delta)}"


@dataclass
class Timing:
    """A job's queue wait (from due to start, or so far) and its run's duration (so far)."""

    wait: float | None
    duration: float | None
    running: bool


def timing(job: dict[str, Any], now: float) -> Timing:
    created, due, started, finished = (ts(job.get(k)) for k in ("created_at", "run_at", "started_at", "finished_at"))
    due = due if due is not None else created
    state = job.get("state")
    if state == "running" and started is not None:
        return Timing(max(0.0, started - due) if due is not None else None, max(0.0, now - started), True)
    if started is not None and finished is not None:
        return Timing(max(0.0, started - due) if due is not None else None, max(0.0, finished - started), False)
    if state == "queued" and due is not None and due <= now:
        return Timing(now - due, None, False)  # waiting so far
    return Timing(None, None, False)


def timeline(job: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The job's events in time order: submitted, due (when later), each attempt's start and
    end (from its stored error; the last one from the job itself), each with its time (ISO
    text), a kind (for its colour) and the time since the previous event."""
    events: list[tuple[str, str | None, str]] = [("submitted", job.get("created_at"), "submitted")]
    created, due = ts(job.get("created_at")), ts(job.get("run_at"))
    if due is not None and created is not None and due - created >= 1:
        ends = [ts(e.get("finished_at")) for e in job.get("errors") or []]
        retry = any(t is not None and t <= due for t in ends)  # the backoff after a failed attempt
        events.append(("retry due" if retry else "due", job.get("run_at"), "due"))
    attempts: dict[int, dict[str, Any]] = {}
    for e in job.get("errors") or []:
        ended = {"start": e.get("started_at"), "end": e.get("finished_at"), "what": e.get("type"), "kind": "failed"}
        attempts[int(e["attempt"])] = ended
    last, state = int(job.get("attempts") or 0), job.get("state")
    if last and job.get("started_at"):
        mine = attempts.setdefault(last, {"what": state, "kind": state})
        mine["start"] = job["started_at"]
        if state in ("succeeded", "cancelled"):
            mine.update(end=job.get("finished_at"), what=state, kind=state)
        elif state == "failed":
            mine.update(end=job.get("finished_at"), kind="failed")
        elif state == "running":
            mine["end"] = None
    for n in sorted(attempts):
        a = attempts[n]
        if a.get("start"):
            events.append((f"attempt {n} started", a["start"], "started"))
        if a.get("end"):
            events.append((f"attempt {n}: {a.get('what') or a['kind']}", a["end"], a["kind"]))
    if state == "cancelled" and not any(kind == "cancelled" for *_, kind in events):
        events.append(("cancelled", job.get("finished_at"), "cancelled"))
    out: list[dict[str, Any]] = []
    previous: float | None = None
    for label, at, kind in sorted(events, key=lambda e: ts(e[1]) or 0.0):
        t = ts(at)
        out.append({"label": label, "at": at, "kind": kind, "after": span(t - previous) if t and previous else ""})
        previous = t if t is not None else previous
    if state == "running" and previous is not None:
        out.append({"label": "running", "at": None, "kind": "running", "after": span(now - previous)})
    return out


def frames(traceback: str) -> list[dict[str, Any]]:
    """The traceback cut into pieces, each ``{"text", "ours"}``: ``ours`` is a frame (its
    ``File`` line and the source lines under it) in jobq's own code."""
    pieces: list[dict[str, Any]] = []
    lines = traceback.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = _FRAME.match(lines[i])
        if m is None:
            _add(pieces, lines[i], False)
            i += 1
            continue
        block = [lines[i]]
        i += 1
        while i < len(lines) and lines[i].startswith("    "):
            block.append(lines[i])
            i += 1
        path = os.path.abspath(m.group("path"))
        _add(pieces, "".join(block), path.startswith(JOBQ_DIR) and path not in _NOT_OURS)
    return pieces


def _add(pieces: list[dict[str, Any]], text: str, ours: bool) -> None:
    if pieces and pieces[-1]["ours"] == ours:
        pieces[-1]["text"] += text
        pieces[-1]["frames"] += text.startswith("  File ")
    else:
        pieces.append({"text": text, "ours": ours, "frames": int(text.startswith("  File "))})


def chart(buckets: list[dict[str, Any]], bucket_seconds: int, width: int = 720, height: int = 150) -> dict[str, Any]:
    """Throughput (succeeded below, failed on top) and failure rate (failed / finished, a
    line over the buckets that had finishes) as SVG coordinates."""
    peak = max([b["succeeded"] + b["failed"] for b in buckets] + [1])
    step = width / max(1, len(buckets))
    bars, points = [], []
    label = "%H:%M" if bucket_seconds < 86400 else "%m-%d"
    for i, b in enumerate(buckets):
        hs, hf = height * b["succeeded"] / peak, height * b["failed"] / peak
        x = round(i * step + 0.5, 1)
        ended = b["succeeded"] + b["failed"]
        rate = b["failed"] / ended if ended else None
        start = datetime.fromisoformat(b["start"]).astimezone(UTC)
        title = f"{start.strftime('%m-%d ' + label)} UTC: {b['succeeded']} succeeded, {b['failed']} failed"
        if rate is not None:
            title += f" ({rate:.0%} failed)"
            points.append({"x": round(x + step / 2, 1), "y": round(height - height * rate, 1), "rate": rate, "title": title})
        bars.append(
            {
                "x": x,
                "w": round(max(1.0, step - 1), 1),
                "ys": round(height - hs, 1),
                "hs": round(hs, 1),
                "yf": round(height - hs - hf, 1),
                "hf": round(hf, 1),
                "title": title,
            }
        )
    line = " ".join(f"{p['x']},{p['y']}" for p in points)
    return {"bars": bars, "points": points, "line": line, "peak": peak, "width": width, "height": height}
