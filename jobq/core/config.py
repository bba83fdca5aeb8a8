"""Settings: plain dataclasses, validated by pydantic. Precedence: flag > ``JOBQ_*``
environment > TOML file > defaults.

The constraints live in the annotations (``Annotated[..., Field(...)]``), which are only
read when there is something to validate: a command run with the defaults (and at most a
database path) never imports pydantic, which keeps ``jobq status`` quick to start.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from .errors import ConfigError, TargetNotAllowed

if TYPE_CHECKING:
    from pydantic import BeforeValidator, Field

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
DEFAULT_FILE_MODE = 0o600
_STRICT = {"extra": "forbid"}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '5m', '2h' or '7d'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30, '30s', '5m', '2h', '7d')")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def _duration(value: Any) -> Any:
    return None if value is None else parse_duration(value)


def _file_mode(value: Any) -> int:
    from .fsmodes import parse_file_mode

    return parse_file_mode(value)


def _allowed(value: Any) -> list[str] | None:
    from .allow import parse_allowed

    return parse_allowed(value) or None


class _KeyError(ValueError):
    """A check of the whole record that is about one key (``key``): the error names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _rate(value: Any) -> Any:
    from .errors import ValidationError
    from .limits import parse_rate

    if value is not None:
        try:
            parse_rate(value)
        except ValidationError as exc:
            raise ValueError(exc.message) from None
    return value


@dataclass
class QueueSettings:
    """Per-queue defaults and limits (``[queues.NAME]`` in the TOML file)."""

    __pydantic_config__ = _STRICT

    concurrency: Annotated[int | None, Field(ge=1)] = None
    timeout: Annotated[float | None, BeforeValidator(_duration)] = None
    retries: Annotated[int | None, Field(ge=0)] = None
    priority: int | None = None
    retry_backoff: Annotated[float | None, BeforeValidator(_duration)] = None
    retry_backoff_max: Annotated[float | None, BeforeValidator(_duration)] = None
    rate: Annotated[str | None, BeforeValidator(_rate)] = None  # "100/s", "100/m", "100/h"
    partition_concurrency: Annotated[int | None, Field(ge=1)] = None
    memory_mb: Annotated[int | None, Field(ge=1)] = None


_NO_QUEUE_SETTINGS = QueueSettings()


@dataclass
class ScheduleSettings:
    """A periodic job declared in the configuration (``[[schedules]]``)."""

    __pydantic_config__ = _STRICT

    name: Annotated[str, Field(min_length=1, max_length=200)]
    target: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: Annotated[str, Field(pattern=QUEUE_NAME_PATTERN)] = "default"
    cron: str | None = None
    every: Annotated[float | None, BeforeValidator(_duration)] = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron or every")


@dataclass
class Settings:
    """Every setting jobq reads. ``config/jobq.toml`` documents each key.

    Built by :func:`load_settings`, which validates; constructing one directly does not."""

    __pydantic_config__ = _STRICT

    db: str = "jobq.db"
    concurrency: Annotated[int | None, Field(ge=1, le=1024)] = None
    lease_seconds: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = 30.0
    heartbeat_seconds: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = 1.0
    grace_seconds: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = 30.0
    kill_grace_seconds: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = 3.0
    idle_poll_seconds: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = 0.5
    busy_timeout_seconds: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = 60.0
    max_output_bytes: Annotated[int, Field(ge=0)] = 65536
    max_payload_bytes: Annotated[int, Field(ge=1)] = 1048576
    max_jobs_per_worker: Annotated[int | None, Field(ge=1)] = None
    max_memory_per_worker: Annotated[int | None, Field(ge=1, description="MB")] = None
    timeout: Annotated[float | None, BeforeValidator(_duration)] = None
    retries: Annotated[int, Field(ge=0)] = 0
    retry_backoff: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = 1.0
    retry_backoff_max: Annotated[float, BeforeValidator(_duration), Field(ge=0)] = 300.0
    result_ttl: Annotated[float | None, BeforeValidator(_duration)] = None
    start_method: Annotated[str | None, Field(pattern=r"^(fork|spawn|forkserver)$")] = None
    log_level: Annotated[str, Field(pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")] = "INFO"
    host_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    log_format: Literal["text", "json"] = "text"
    file_mode: Annotated[int, BeforeValidator(_file_mode)] = DEFAULT_FILE_MODE
    allowed_targets: Annotated[list[str] | None, BeforeValidator(_allowed)] = None
    durability: Literal["normal", "full"] = "normal"
    max_crashes: Annotated[int, Field(ge=1)] = 3
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    schedules: list[ScheduleSettings] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in self.queues:
            if not isinstance(name, str) or not re.match(QUEUE_NAME_PATTERN, name):
                raise _KeyError("queues", f"bad queue name {name!r}: 1-64 of letters, digits, _ . -")
        names = [s.name for s in self.schedules]
        if len(names) != len(set(names)):
            raise _KeyError("schedules", "schedule names must be unique")
        if self.allowed_targets:
            from .allow import check_allowed

            for s in self.schedules:
                try:
                    check_allowed(s.target, self.allowed_targets)
                except TargetNotAllowed as exc:
                    raise _KeyError("schedules", f"schedule {s.name!r}: {exc.message}") from None

    def queue_settings(self, queue: str) -> QueueSettings:
        """The per-queue settings of ``queue`` (empty when none are configured)."""
        return self.queues.get(queue) or _NO_QUEUE_SETTINGS

    def host(self) -> str:
        """The name supervisors register under: ``host_id``, else the machine's host name."""
        if self.host_id:
            return self.host_id
        import socket

        return socket.gethostname()

    def effective_concurrency(self) -> int:
        """``concurrency`` or, when unset, the number of cores."""
        return self.concurrency or os.cpu_count() or 1

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (not validated)."""
        return dataclasses.replace(self, **changes)


_SCALAR_FIELDS = [f.name for f in dataclasses.fields(Settings) if f.name not in ("queues", "schedules")]
_ADAPTERS: dict[type, Any] = {}


def _adapter(cls: type) -> Any:
    """pydantic's validator of ``cls``, built on first use (pydantic is imported then)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        import pydantic

        # The annotations name these; they are resolved in this module's namespace.
        globals().update(Field=pydantic.Field, BeforeValidator=pydantic.BeforeValidator)
        adapter = _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return adapter


# pydantic's words for a value of the wrong shape, in the file's own (TOML) terms
_TOML_SHAPES = {"dict_type": "expected a table", "dataclass_type": "expected a table", "list_type": "expected an array"}


def validate(cls: type, data: dict[str, Any], prefix: str = "", whole: str = "", sources: dict[str, str] | None = None) -> Any:
    """``cls`` (a settings dataclass) built from ``data`` by pydantic. Raises
    :class:`ConfigError` naming the first bad key (after ``prefix``; ``whole`` when the
    error is about the whole record). ``sources`` maps a top-level key to the file it was
    read from: an error under such a key names that file, as ``FILE: unknown key 'KEY'`` or
    ``FILE: key 'KEY': MESSAGE``."""
    import pydantic

    try:
        return _adapter(cls).validate_python(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        name = name or getattr(err.get("ctx", {}).get("error"), "key", "")  # a _KeyError of __post_init__
        message = err.get("msg", "invalid value").removeprefix("Value error, ")
        unknown = err.get("type") == "unexpected_keyword_argument"
        if unknown:
            message = "unknown setting"
        field = (prefix + name) if name else (whole or prefix.rstrip("."))
        source = (sources or {}).get(field.split(".", 1)[0])
        if source is None:
            raise ConfigError(field, message) from None
        if unknown:
            raise ConfigError(field, f"unknown key {field!r}", source) from None
        message = _TOML_SHAPES.get(err.get("type", ""), message)
        raise ConfigError(field, f"key {field!r}: {message}", source) from None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings: ``overrides`` (flags) > ``JOBQ_*`` > TOML file > defaults.

    The file is ``config_file``, else ``$JOBQ_CONFIG``, else ``./jobq.toml`` when present.
    Raises :class:`ConfigError` naming the bad key, and the file when the key was read from one
    (``jobq.toml: unknown key 'x'``).
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}  # key -> the file it was read from (an error names both)
    path = config_file or env.get("JOBQ_CONFIG")
    if path is None and Path("jobq.toml").is_file():
        path = "jobq.toml"
    if path is not None:
        import tomllib

        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", "no such file", os.fspath(path)) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("config", f"not valid TOML: {exc}", os.fspath(path)) from None
        except OSError as exc:
            raise ConfigError("config", f"{exc.strerror or exc}", os.fspath(path)) from None
        sources = dict.fromkeys(data, os.fspath(path))
    for name in _SCALAR_FIELDS:
        value = env.get(f"JOBQ_{name.upper()}")
        if value not in (None, ""):
            data[name] = value
            sources.pop(name, None)
    for name, value in (overrides or {}).items():
        if value is not None:
            data[name] = value
            sources.pop(name, None)
    if not data.keys() - {"db"} and isinstance(data.get("db", ""), str):
        return Settings(**data)  # the defaults and a path: nothing to validate
    return validate(Settings, data, sources=sources)
