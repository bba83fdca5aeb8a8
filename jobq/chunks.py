"""Kept so that jobs stored before the layout by role (target ``jobq.chunks:run_chunk``) still run."""

from .worker.chunks import run_chunk

__all__ = ["run_chunk"]
