"""Capturing what a job prints: the worker's fds 1 and 2 point at one file for its life, and a
job's output is what the file gained while it ran."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from ..core.fsmodes import open_or_create


class OutputCapture:
    """Points the worker's fds 1 and 2 at one file for its whole life; a job's output is what
    the file gained while it ran (a bounded tail is kept). Two cheap calls a job, no dup2."""

    # Start the file afresh once it grows past this, between jobs.
    ROLLOVER_BYTES = 8 * 2**20

    def __init__(self, path: str, max_bytes: int, file_mode: int = 0o600) -> None:
        self.max_bytes = max_bytes
        self.fd = open_or_create(path, file_mode, os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        _flush_std()
        os.dup2(self.fd, 1)
        os.dup2(self.fd, 2)
        # The embedding process may have swapped sys.stdout/sys.stderr for objects that are
        # not fds 1 and 2 (pytest, Jupyter, redirect_stdout): a job's print must reach the file.
        sys.stdout = _stream_on(1, sys.stdout)
        sys.stderr = _stream_on(2, sys.stderr)
        for stream in (sys.stdout, sys.stderr):  # a running job's lines reach the file as printed
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        self.offset = 0

    def start(self) -> int:
        """Where this job's output begins in the file."""
        _flush_std()
        if self.offset > self.ROLLOVER_BYTES:
            os.ftruncate(self.fd, 0)
            self.offset = 0
        return self.offset

    def stop(self) -> str:
        _flush_std()
        size = os.lseek(self.fd, 0, os.SEEK_END)  # the file's size: a quarter of an fstat's cost
        start, self.offset = self.offset, size
        if size <= start:
            return ""
        return read_range(self.fd, start, size, self.max_bytes)


def _stream_on(fd: int, current: Any) -> Any:
    try:
        if current is not None and current.fileno() == fd:
            return current
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return open(fd, "w", encoding="utf-8", errors="replace", closefd=False)


def read_range(fd: int, start: int, end: int, max_bytes: int) -> str:
    """Bytes ``start..end`` of an open file, at most the last ``max_bytes``, noting any cut."""
    if end <= start or max_bytes == 0:
        return ""
    first = max(start, end - max_bytes)
    # NUL is dropped: no backend's text column stores it the same way.
    text = os.pread(fd, end - first, first).decode("utf-8", errors="replace").replace("\x00", "")
    if first > start:
        text = f"[... {first - start} bytes of earlier output dropped]\n" + text
    return text


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
