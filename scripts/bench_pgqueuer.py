"""pgqueuer beside jobq on PostgreSQL (issue 15): one-at-a-time enqueues, each its own
round trip and commit, as ``q.submit`` is. Run by scripts/bench_pg.py (``--only postgres``)."""

from __future__ import annotations

import asyncio
import time

from bench_common import INSTALL_HINT


def pgqueuer_reason() -> str | None:
    """Why pgqueuer cannot be measured (None: it can)."""
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


async def _install(url: str) -> None:
    import psycopg
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.queries import Queries

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await Queries(PsycopgDriver(conn)).install()
    finally:
        await conn.close()


def pgqueuer_single(url: str, n: int) -> float:
    """Enqueues per second, one at a time (``SyncQueries.enqueue``), into a fresh install of
    pgqueuer's tables in the database at ``url`` (a scratch database: the caller drops it)."""
    import psycopg
    from pgqueuer.db import SyncPsycopgDriver
    from pgqueuer.queries import SyncQueries

    asyncio.run(_install(url))
    with psycopg.connect(url, autocommit=True) as conn:
        queries = SyncQueries(SyncPsycopgDriver(conn))
        queries.enqueue("bench_add", b"0")  # connected, statements prepared: not timed
        t0 = time.perf_counter()
        for i in range(n):
            queries.enqueue("bench_add", str(i).encode())
        rate = n / (time.perf_counter() - t0)
        (stored,) = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()  # type: ignore[misc]
    if stored != n + 1:
        raise RuntimeError(f"pgqueuer stored {stored} of {n + 1} jobs")
    return rate
