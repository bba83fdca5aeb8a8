"""A module whose import leaves a trace: the allow-list tests prove a refused job's target is
never imported. The marker path comes from ``JOBQ_TEST_IMPORT_MARKER``."""

from __future__ import annotations

import os

_marker = os.environ.get("JOBQ_TEST_IMPORT_MARKER")
if _marker:
    with open(_marker, "a") as fh:
        fh.write(f"imported in {os.getpid()}\n")


def run() -> str:
    return "ran"
