"""Durability you can choose (issue 12): drain and one-by-one submit under ``durability =
"normal"`` and ``"full"``, in the same run, the two interleaved. SQLite always; PostgreSQL
too when a server answers (``--postgres URL``).

- normal: SQLite ``synchronous=NORMAL`` (WAL); PostgreSQL supervisors and workers commit with
  ``synchronous_commit=off``. A process crash loses nothing; a power loss may lose the last
  acknowledged commits.
- full: SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on`` on every connection.
  Every acknowledged submit and finish survives a power loss.

    python scripts/bench.py --only durability
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import bench_common as common
from bench_common import Check, Report, Sizes, say
from bench_pg import jobq_pg_drain

import jobq

MODES = ("normal", "full")


@contextmanager
def durability(mode: str) -> Iterator[None]:
    """``JOBQ_DURABILITY=mode`` for this process and the supervisors it forks."""
    old = os.environ.get("JOBQ_DURABILITY")
    os.environ["JOBQ_DURABILITY"] = mode
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("JOBQ_DURABILITY", None)
        else:
            os.environ["JOBQ_DURABILITY"] = old


def _submits(url: str, n: int) -> float:
    """Seconds for ``n`` one-by-one ``q.submit`` calls (each acknowledged, i.e. committed)."""
    q = jobq.Queue(url)
    q.submit(common.TARGET, (0,))  # schema made, target imported: not timed
    t0 = time.perf_counter()
    for i in range(n):
        q.submit(common.TARGET, (i,))
    return time.perf_counter() - t0


def _backends(tmp: Path, pg_url: str | None) -> list[tuple[str, Callable[[str], object]]]:
    """(figure prefix, context manager factory giving a fresh database URL for a tag)."""

    @contextmanager
    def sqlite_db(tag: str) -> Iterator[str]:
        yield str(tmp / f"durability-{tag}.db")

    out: list[tuple[str, Callable[[str], object]]] = [("durability.", sqlite_db)]
    if pg_url is not None:
        import bench_pg

        out.append(("pg.durability.", lambda tag: bench_pg.jobq_schema(pg_url)))
    return out


def section_durability(rep: Report, s: Sizes, workers: int, tmp: Path, pg_url: str | None = None) -> None:
    """Drain and submit rates under each mode, interleaved over ``s.repeat`` runs."""
    single = max(50, s.single // 2)
    for prefix, make_db in _backends(tmp, pg_url):
        runs: dict[str, list[float]] = {}
        for r in range(s.repeat):
            for mode in MODES:
                say(f"  run {r + 1}/{s.repeat}: {prefix}{mode}: drain of {s.drain}, {single} submits")
                with durability(mode):
                    with make_db(f"{r}-{mode}-drain") as url:  # type: ignore[attr-defined]
                        runs.setdefault(f"{prefix}drain_{mode}", []).append(
                            s.drain / jobq_pg_drain(url, s.drain, workers, label=f"jobq ({mode})")
                        )
                    with make_db(f"{r}-{mode}-submit") as url:  # type: ignore[attr-defined]
                        runs.setdefault(f"{prefix}submit_{mode}", []).append(single / _submits(url, single))
        where = "PostgreSQL" if prefix.startswith("pg.") else "SQLite"
        for what in ("drain", "submit"):
            for mode in MODES:
                key = f"{prefix}{what}_{mode}"
                label = f"{where} {what}, durability={mode}" + (" (one by one)" if what == "submit" else "")
                rep.add(key, statistics.median(runs[key]), "jobs/s", label)
            rep.add(
                f"{prefix}{what}_full_ratio",
                rep.figures[f"{prefix}{what}_full"] / rep.figures[f"{prefix}{what}_normal"],
                "x",
                f"{where} {what}: full / normal",
            )


def target_checks(f: dict[str, float]) -> list[Check]:
    # No target in the issue: the figures are the documentation of the price of "full".
    return []


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    for prefix, title in (("durability.", "durability (SQLite)"), ("pg.durability.", "durability (PostgreSQL)")):
        keys = [k for k in f if k.startswith(prefix)]
        if keys:
            lines.append(f"{title}: jobs/s under normal and full")
            for what in ("drain", "submit"):
                for key in (f"{prefix}{what}_normal", f"{prefix}{what}_full", f"{prefix}{what}_full_ratio"):
                    row(key, "")
