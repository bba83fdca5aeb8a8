"""How ``jobq worker start`` logs: ``text`` (the default, one readable line per event) or
``json`` (one JSON object per line, for log shippers).

Every JSON line has the same keys: ``time`` (ISO-8601 UTC), ``level``, ``logger``, ``event``,
``message``, ``job_id``, ``queue``, ``target``, ``duration`` (seconds), ``supervisor``
(``null`` where they do not apply). ``event`` is a stable name (``job_failed``,
``supervisor_started``...) where the call site gives one, else the message's template (the
text before its values are filled in), so events can be grouped without parsing prose.
Call sites pass the job's fields with ``extra={"job_id": ..., "queue": ..., ...}``; a message
that says ``job N`` gives ``job_id`` N when no ``extra`` does.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JOB_IN_MESSAGE = re.compile(r"\bjob (\d+)\b")
_FIELDS = ("job_id", "queue", "target", "duration", "supervisor")

# Fields every record of this process carries unless its call site says otherwise: the
# supervisor sets its id here when it starts.
context: dict[str, Any] = {}


def set_context(**fields: Any) -> None:
    """Fields added to every JSON line of this process (e.g. ``supervisor=ID``)."""
    context.update(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "event", None) or str(record.msg),
            "message": message,
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            out[name] = value
        if out["job_id"] is None:
            match = _JOB_IN_MESSAGE.search(message)
            if match:
                out["job_id"] = int(match.group(1))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def job_fields(task: Any, event: str, duration: float | None = None) -> dict[str, Any]:
    """The ``extra`` of a record about one job: ``task`` has ``id``, ``queue`` and ``target``
    (a claimed job; None when unknown)."""
    if task is None:
        return {"event": event, "duration": duration}
    return {"event": event, "job_id": task.id, "queue": task.queue, "target": task.target, "duration": duration}


def configure_logging(level: str = "INFO", log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send jobq's logs (the root logger's) to ``stream`` (stderr) in ``log_format``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
