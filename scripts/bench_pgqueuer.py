"""pgqueuer beside jobq on PostgreSQL (issue 15): one-at-a-time enqueues, each its own
round trip and commit, as ``q.submit`` is, timed in alternating blocks with jobq's. Run by
scripts/bench_pg.py (``--only postgres``)."""

from __future__ import annotations

import asyncio
import time

from bench_common import INSTALL_HINT, TARGET


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


def pgqueuer_single(url: str, n: int, block: int = 50) -> tuple[float, float]:
    """(pgqueuer's enqueues per second, jobq's submits per second), one at a time, ``n`` each,
    timed in alternating blocks of ``block`` on the same server and database (``url``, a scratch
    database the caller drops): both wait on a commit's WAL flush, whose time on a shared
    machine moves from second to second, so the two are measured over the same seconds."""
    import psycopg
    from pgqueuer.db import SyncPsycopgDriver
    from pgqueuer.queries import SyncQueries

    import jobq

    asyncio.run(_install(url))
    q = jobq.Queue(f"{url}{'&' if '?' in url else '?'}schema=jobq_bench")
    q.submit(TARGET, (0,))  # schema created, target imported: not timed
    with psycopg.connect(url, autocommit=True) as conn:
        queries = SyncQueries(SyncPsycopgDriver(conn))
        queries.enqueue("bench_add", b"0")  # connected, statements prepared: not timed
        spent = [0.0, 0.0]
        for start in range(0, n, block):
            size = min(block, n - start)
            t0 = time.perf_counter()
            for i in range(start, start + size):
                queries.enqueue("bench_add", str(i).encode())
            t1 = time.perf_counter()
            for i in range(start, start + size):
                q.submit(TARGET, (i,))
            spent[0] += t1 - t0
            spent[1] += time.perf_counter() - t1
        (stored,) = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()  # type: ignore[misc]
    if stored != n + 1:
        raise RuntimeError(f"pgqueuer stored {stored} of {n + 1} jobs")
    return n / spent[0], n / spent[1]
