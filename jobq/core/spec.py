"""Job definitions as submitted: :class:`JobSpec`, validated with pydantic (imported only by
the code paths that submit), and :func:`validate_spec`."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic import ValidationError as PydanticValidationError

from .config import QUEUE_NAME_PATTERN
from .errors import ValidationError
from .models import TARGET_PATTERN, dumps


class JobSpec(BaseModel):
    """One job definition as submitted. Validation errors name the field."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(pattern=TARGET_PATTERN, max_length=500)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str = Field(default="default", pattern=QUEUE_NAME_PATTERN)
    priority: StrictInt = Field(default=0, ge=-(2**31), le=2**31 - 1)
    name: str | None = Field(default=None, max_length=500)
    timeout: float | None = Field(default=None, gt=0, le=10**9)
    retries: StrictInt = Field(default=0, ge=0, le=10**6)
    retry_backoff: float = Field(default=1.0, ge=0, le=10**9)
    retry_backoff_max: float = Field(default=300.0, ge=0, le=10**9)
    run_at: float | None = None
    key: str | None = Field(default=None, min_length=1, max_length=500)
    depends_on: list[StrictInt] = Field(default_factory=list)
    pass_results: bool = False
    result_ttl: float | None = Field(default=None, ge=0)
    # issue 17: a fair share inside the queue, a memory cap, cpu slots, and debounce
    partition: str | None = Field(default=None, min_length=1, max_length=200)
    memory_mb: StrictInt | None = Field(default=None, ge=1, le=2**40)
    cpus: StrictInt = Field(default=1, ge=1, le=4096)
    on_conflict: Literal["return", "replace"] = "return"

    # The JSON text of args and kwargs, made once by validate_spec and stored as is (plain
    # fields: pydantic's private attributes cost microseconds per access).
    args_text: str | None = Field(default=None, exclude=True, repr=False)
    kwargs_text: str | None = Field(default=None, exclude=True, repr=False)
    # The submitting span's W3C trace context as JSON (jobq.core.tracing), set after validation.
    trace: str | None = Field(default=None, exclude=True, repr=False, max_length=4096)

    @field_validator("args", mode="before")
    @classmethod
    def _tuple_args(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError("expected a list (or tuple) of JSON values")
        return list(value) if isinstance(value, tuple) else value

    @field_validator("kwargs")
    @classmethod
    def _str_keys(cls, value: dict[Any, Any]) -> dict[str, Any]:
        if not all(isinstance(k, str) for k in value):
            raise ValueError("keys must be strings")
        return value

    def args_json(self) -> str:
        """``args`` as compact JSON (raises TypeError/ValueError when it is not JSON)."""
        text = self.args_text
        if text is None:
            text = self.args_text = dumps(self.args)
        return text

    def kwargs_json(self) -> str:
        """``kwargs`` as compact JSON (raises TypeError/ValueError when it is not JSON)."""
        text = self.kwargs_text
        if text is None:
            text = self.kwargs_text = dumps(self.kwargs)
        return text

    @field_validator("name", "key", "partition")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("timeout", "retry_backoff", "retry_backoff_max", "run_at", "result_ttl")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


def validate_spec(data: dict[str, Any], max_payload_bytes: int) -> JobSpec:
    """Build a :class:`JobSpec` or raise :class:`ValidationError` naming the bad field."""
    try:
        spec = JobSpec.model_validate(data)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc", ())
        fieldname = str(loc[0]) if loc else "job"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "string_pattern_mismatch" and fieldname == "target":
            msg = "expected 'package.module:function'"
        elif err.get("type") == "string_pattern_mismatch" and fieldname == "queue":
            msg = "expected 1-64 of letters, digits, '_', '.', '-'"
        raise ValidationError(fieldname, msg) from None
    try:
        args_text = spec.args_text = dumps(spec.args)
    except (TypeError, ValueError) as exc:
        raise ValidationError("args", f"not JSON-serialisable: {exc}") from None
    try:
        kwargs_text = spec.kwargs_text = dumps(spec.kwargs)
    except (TypeError, ValueError) as exc:
        raise ValidationError("kwargs", f"not JSON-serialisable: {exc}") from None
    size = len(args_text) + len(kwargs_text)
    if size > max_payload_bytes:
        raise ValidationError("args", f"payload is {size} bytes, over max_payload_bytes={max_payload_bytes}")
    return spec
