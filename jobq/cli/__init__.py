"""The ``jobq`` command: parses, calls the API, prints, maps errors to exit codes.

Exit codes: 0 success; 1 the job failed or was cancelled; 2 usage error, bad input or an
unknown id; 3 the job is unfinished; 4 the database cannot be used.
"""

from __future__ import annotations

from . import dashboard, jobs, manage, service, steps, workers  # noqa: F401 - each registers its commands on main
from .app import main

__all__ = ["main"]
