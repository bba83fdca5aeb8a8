"""Settings: one pydantic model. Precedence: flag > ``JOBQ_*`` environment > TOML file > defaults."""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from .allow import check_allowed, parse_allowed
from .errors import ConfigError, TargetNotAllowed
from .fsmodes import DEFAULT_FILE_MODE, parse_file_mode

QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class QueueSettings(_Strict):
    """Per-queue defaults and limits (``[queues.NAME]`` in the TOML file)."""

    concurrency: int | None = Field(default=None, ge=1)
    timeout: float | None = None
    retries: int | None = Field(default=None, ge=0)
    priority: int | None = None
    retry_backoff: float | None = None
    retry_backoff_max: float | None = None

    @field_validator("timeout", "retry_backoff", "retry_backoff_max", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)


_NO_QUEUE_SETTINGS = QueueSettings()


class ScheduleSettings(_Strict):
    """A periodic job declared in the configuration (``[[schedules]]``)."""

    name: str = Field(min_length=1, max_length=200)
    target: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str = Field(default="default", pattern=QUEUE_NAME_PATTERN)
    cron: str | None = None
    every: float | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleSettings:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron or every")
        return self


class Settings(_Strict):
    """Every setting jobq reads. ``config/jobq.toml`` documents each key."""

    db: str = "jobq.db"
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=1.0, gt=0)
    grace_seconds: float = Field(default=30.0, ge=0)
    kill_grace_seconds: float = Field(default=3.0, ge=0)
    idle_poll_seconds: float = Field(default=0.5, gt=0)
    busy_timeout_seconds: float = Field(default=60.0, gt=0)
    max_output_bytes: int = Field(default=65536, ge=0)
    max_payload_bytes: int = Field(default=1048576, ge=1)
    max_jobs_per_worker: int | None = Field(default=None, ge=1)
    max_memory_per_worker: int | None = Field(default=None, ge=1, description="MB")
    timeout: float | None = None
    retries: int = Field(default=0, ge=0)
    retry_backoff: float = Field(default=1.0, ge=0)
    retry_backoff_max: float = Field(default=300.0, ge=0)
    result_ttl: float | None = None
    start_method: str | None = Field(default=None, pattern=r"^(fork|spawn|forkserver)$")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    host_id: str | None = Field(default=None, min_length=1, max_length=200)
    log_format: Literal["text", "json"] = "text"
    file_mode: int = DEFAULT_FILE_MODE
    allowed_targets: list[str] | None = None
    durability: Literal["normal", "full"] = "normal"
    queues: dict[str, QueueSettings] = Field(default_factory=dict)
    schedules: list[ScheduleSettings] = Field(default_factory=list)

    @field_validator(
        "lease_seconds",
        "heartbeat_seconds",
        "grace_seconds",
        "kill_grace_seconds",
        "idle_poll_seconds",
        "busy_timeout_seconds",
        "timeout",
        "retry_backoff",
        "retry_backoff_max",
        "result_ttl",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("file_mode", mode="before")
    @classmethod
    def _file_mode(cls, value: Any) -> int:
        return parse_file_mode(value)

    @field_validator("allowed_targets", mode="before")
    @classmethod
    def _allowed(cls, value: Any) -> list[str] | None:
        return parse_allowed(value) or None

    @model_validator(mode="after")
    def _schedules_allowed(self) -> Settings:
        for s in self.schedules:
            try:
                check_allowed(s.target, self.allowed_targets)
            except TargetNotAllowed as exc:
                raise ValueError(f"schedule {s.name!r}: {exc.message}") from None
        return self

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: dict[str, QueueSettings]) -> dict[str, QueueSettings]:
        for name in value:
            if not re.match(QUEUE_NAME_PATTERN, name):
                raise ValueError(f"bad queue name {name!r}: 1-64 of letters, digits, _ . -")
        return value

    @field_validator("schedules")
    @classmethod
    def _unique_schedules(cls, value: list[ScheduleSettings]) -> list[ScheduleSettings]:
        names = [s.name for s in value]
        if len(names) != len(set(names)):
            raise ValueError("schedule names must be unique")
        return value

    def queue_settings(self, queue: str) -> QueueSettings:
        """The per-queue settings of ``queue`` (empty when none are configured)."""
        return self.queues.get(queue) or _NO_QUEUE_SETTINGS

    def host(self) -> str:
        """The name supervisors register under: ``host_id``, else the machine's host name."""
        return self.host_id or socket.gethostname()

    def effective_concurrency(self) -> int:
        """``concurrency`` or, when unset, the number of cores."""
        return self.concurrency or os.cpu_count() or 1


_SCALAR_FIELDS = [n for n in Settings.model_fields if n not in ("queues", "schedules")]


def _pydantic_error_line(exc: PydanticValidationError, prefix: str = "") -> tuple[str, str]:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    message = err.get("msg", "invalid value").removeprefix("Value error, ")
    return (prefix + field) if field else prefix.rstrip("."), message


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings: ``overrides`` (flags) > ``JOBQ_*`` > TOML file > defaults.

    The file is ``config_file``, else ``$JOBQ_CONFIG``, else ``./jobq.toml`` when present.
    Raises :class:`ConfigError` naming the bad key.
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = config_file or env.get("JOBQ_CONFIG")
    if path is None and Path("jobq.toml").is_file():
        path = "jobq.toml"
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("config", f"no such file: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("config", f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError("config", f"{path}: {exc.strerror or exc}") from None
    for name in _SCALAR_FIELDS:
        value = env.get(f"JOBQ_{name.upper()}")
        if value not in (None, ""):
            data[name] = value
    for name, value in (overrides or {}).items():
        if value is not None:
            data[name] = value
    try:
        return Settings.model_validate(data)
    except PydanticValidationError as exc:
        field, message = _pydantic_error_line(exc)
        raise ConfigError(field, message) from None
