"""The PostgreSQL rows of scripts/bench.py (issue 6), measured in the same run as the SQLite ones.

jobq on PostgreSQL (``postgresql://...?schema=<fresh>``, dropped afterwards) beside procrastinate
(its own fresh database, 2 worker processes of concurrency 1, dropped afterwards) and Celery
(``--pool prefork -c 2``: one worker, 2 pool processes), on RabbitMQ at 127.0.0.1:5672 (``rpc://``
results) and on Redis at 127.0.0.1:6379 (Redis results), whichever answer. Same workload as the
rest of the benchmark: N queued ``add(x) -> x + 1`` jobs, time from the start of the workers to
the last result stored. A peer whose package or server is missing is skipped with the reason.

Not run on its own: ``python scripts/bench.py --only postgres``.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import bench_common as common
import bench_pgqueuer
import bench_tasks
from bench_common import INSTALL_HINT, Check, Report, Sizes
from bench_limit import stepper

import jobq

PG_DEFAULT = os.environ.get("JOBQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/0"
CELERY_BROKERS = {"amqp": "RabbitMQ, rpc://", "redis": "Redis, Redis results"}
PEER_SINGLE_MAX = 1000  # peers' one-by-one submits timed on at most this many jobs (the rest in bulk)


# -- PostgreSQL housekeeping -------------------------------------------------------------------
def postgres_reason(url: str) -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'jobq[postgres]')"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at {url} ({str(exc).strip().splitlines()[0]})"
    return None


def server_version(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    except Exception:  # noqa: BLE001 - no server: the postgres rows say why
        return None


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@contextmanager
def jobq_schema(base: str) -> Iterator[str]:
    """A jobq URL on a schema of its own, dropped afterwards."""
    schema = f"jobq_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        with common.shielded():
            _admin(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def scratch_database(base: str) -> Iterator[str]:
    """A URL on a database of its own, dropped (connections and all) afterwards."""
    name = f"jobq_bench_{os.getpid()}_peer_{uuid.uuid4().hex[:8]}"
    _admin(base, f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        with common.shielded():
            _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _end_leader(proc: Any) -> None:
    """End a worker that leads its own process group: SIGTERM to the leader (a warm shutdown
    that ends its pool), then SIGKILL to whatever is left of the group."""
    with common.shielded():
        if proc.pid is not None and proc.is_alive():
            common._signal(proc.pid, signal.SIGTERM, group=False)
            proc.join(30)
        common._end_process(proc, group=True)


def _pause(t0: float) -> None:
    """Between two polls of a drain: often at first, then at most 1/200 of the time so far
    (the figure is off by under 0.5%, and a slow peer is not slowed further by the polling)."""
    time.sleep(min(0.05, max(0.005, (time.perf_counter() - t0) / 200)))


# -- jobq on PostgreSQL ------------------------------------------------------------------------
def _succeeded(q: jobq.Queue) -> int:
    return sum(states.get("succeeded", 0) for states in q.store.counts().values())


def jobq_pg_drain(url: str, n: int, workers: int, timeout: float = 600, label: str = "jobq on PostgreSQL") -> float:
    """Seconds for a burst supervisor to run ``n`` queued jobs of ``url`` (any backend)."""
    q = jobq.Queue(url)
    q.submit_many(common.TARGET, ((i,) for i in range(n)))
    proc = common.FORK.Process(target=common._run_burst_supervisor, args=(url, workers), name="bench-jobq-pg-supervisor")
    t0 = time.perf_counter()
    proc.start()
    try:
        deadline = time.monotonic() + timeout
        while (done := _succeeded(q)) < n:
            if time.monotonic() > deadline or not proc.is_alive():
                raise RuntimeError(f"{label}: {done}/{n} succeeded (supervisor alive: {proc.is_alive()})")
            _pause(t0)
        elapsed = time.perf_counter() - t0
        proc.join(60)
    finally:
        common._end_process(proc)
    return elapsed


def jobq_pg_submits(url: str, single: int, bulk: int) -> tuple[float, float]:
    q = jobq.Queue(url)
    q.submit(common.TARGET, (0,))  # schema created, target imported: not timed
    t0 = time.perf_counter()
    for i in range(single):
        q.submit(common.TARGET, (i,))
    single_rate = single / (time.perf_counter() - t0)
    args = [(i,) for i in range(bulk)]
    t0 = time.perf_counter()
    q.submit_many(common.TARGET, args)
    return single_rate, bulk / (time.perf_counter() - t0)


# -- procrastinate -----------------------------------------------------------------------------
def _procrastinate_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.task(name="bench_add", queue="bench")(bench_tasks.add)
    return app


def _procrastinate_worker(url: str) -> None:
    os.setsid()  # its own group, ended with it
    _procrastinate_app(url).run_worker(queues=["bench"], concurrency=1, wait=False, install_signal_handlers=False)


def procrastinate_run(base: str, n: int, workers: int, timeout: float = 900) -> tuple[float, float]:
    """(one-by-one defers per second, drain seconds) in a database of its own."""
    import psycopg

    with scratch_database(base) as url:
        app = _procrastinate_app(url)
        single = min(n, PEER_SINGLE_MAX)
        with app.open():
            app.schema_manager.apply_schema()
            task = app.tasks["bench_add"]
            t0 = time.perf_counter()
            for i in range(single):
                task.defer(x=i)
            single_rate = single / (time.perf_counter() - t0)
            if n > single:
                task.batch_defer(*({"x": i} for i in range(single, n)))
        name = "bench-procrastinate"
        procs = [common.FORK.Process(target=_procrastinate_worker, args=(url,), name=name) for _ in range(workers)]
        count = (
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed') "
            "FROM procrastinate_jobs"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            try:
                for p in procs:
                    p.start()
                deadline = time.monotonic() + timeout
                while True:
                    done, failed = conn.execute(count).fetchone()  # type: ignore[misc]
                    if done >= n:
                        break
                    if failed or time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                        raise RuntimeError(f"procrastinate: {done}/{n} succeeded, {failed} failed")
                    _pause(t0)
                drain = time.perf_counter() - t0
                for p in procs:
                    p.join(30)
            finally:
                with common.shielded():
                    for p in procs:
                        _end_leader(p)
    return single_rate, drain


# -- Celery ------------------------------------------------------------------------------------
def _celery_app(broker: str, queue: str) -> Any:
    import celery

    app = celery.Celery(
        "jobq_bench", broker=AMQP_URL if broker == "amqp" else REDIS_URL, backend="rpc://" if broker == "amqp" else REDIS_URL
    )
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,  # no pidbox queues left behind
        worker_hijack_root_logger=False,
        result_expires=3600,
    )
    app.task(name="bench_add")(bench_tasks.add)
    return app


def _celery_worker(broker: str, queue: str, workers: int) -> None:
    os.setsid()  # its own group: the pool processes are ended with it
    warnings.filterwarnings("ignore")  # running as root, etc.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the banner
    argv = ["worker", "--pool", "prefork", "-c", str(workers), "-Q", queue, "--loglevel", "ERROR", "-n", f"{queue}@%h"]
    _celery_app(broker, queue).worker_main([*argv, "--without-gossip", "--without-mingle", "--without-heartbeat"])


def celery_reasons() -> dict[str, str]:
    """Why each Celery broker cannot be used (absent: usable)."""
    try:
        import celery  # noqa: F401
    except ImportError:
        return dict.fromkeys(CELERY_BROKERS, "celery " + INSTALL_HINT)
    out: dict[str, str] = {}
    try:
        from kombu import Connection

        with Connection(AMQP_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable RabbitMQ here
        out["amqp"] = f"no RabbitMQ answering on 127.0.0.1:5672 ({type(exc).__name__})"
    try:
        import redis  # noqa: F401
    except ImportError:
        out["redis"] = "redis " + INSTALL_HINT
    else:
        if why := common.redis_unreachable():
            out["redis"] = why
    return out


def celery_run(broker: str, n: int, workers: int) -> tuple[float, float]:
    """(one-by-one send_task per second, drain seconds): N tasks queued, then the worker
    started; drained when every result is in the result backend."""
    from celery.result import ResultSet

    queue = f"jobq-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    app = _celery_app(broker, queue)
    proc = None
    ids: list[str] = []
    try:
        t0 = time.perf_counter()
        results = [app.send_task("bench_add", args=(i,)) for i in range(n)]
        single_rate = n / (time.perf_counter() - t0)
        ids = [r.id for r in results]
        proc = common.FORK.Process(target=_celery_worker, args=(broker, queue, workers), name="bench-celery-worker")
        t0 = time.perf_counter()
        proc.start()
        values = ResultSet(results).join_native(timeout=60 + n / 20, interval=0.005)
        drain = time.perf_counter() - t0
        if values[-1] != n:
            raise RuntimeError(f"Celery: last result {values[-1]!r}, expected {n}")
    finally:
        with common.shielded():
            if proc is not None:
                _end_leader(proc)
            _celery_cleanup(app, broker, queue, ids)
    return single_rate, drain


def _celery_cleanup(app: Any, broker: str, queue: str, ids: list[str]) -> None:
    with common.shielded():
        if broker == "redis":
            import redis

            conn = redis.Redis(host="127.0.0.1", port=6379)
            for i in range(0, len(ids), 1000):
                conn.delete(*(f"celery-task-meta-{t}" for t in ids[i : i + 1000]))
            conn.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        else:
            with app.connection_for_write() as conn:
                channel = conn.default_channel
                channel.queue_delete(queue)
                channel.exchange_delete(queue)
        app.close()


# -- the section -------------------------------------------------------------------------------
def _pg_run(
    rep: Report, s: Sizes, workers: int, base: str, r: int, celery_ok: list[str], procrastinate_ok: bool
) -> dict[str, float]:
    fig: dict[str, float] = {}
    step = stepper(rep, r, s, fig)

    def jobq_drain() -> None:
        with jobq_schema(base) as url:
            fig["pg.drain.jobq"] = s.drain / jobq_pg_drain(url, s.drain, workers)

    def procrastinate() -> None:
        single, drain = procrastinate_run(base, s.pg_peer, workers)
        fig["pg.submit.procrastinate_single"], fig["pg.drain.procrastinate"] = single, s.pg_peer / drain

    def celery(broker: str) -> None:
        single, drain = celery_run(broker, s.pg_peer, workers)
        fig[f"pg.submit.celery_{broker}_single"], fig[f"pg.drain.celery_{broker}"] = single, s.pg_peer / drain

    def submits() -> None:
        with jobq_schema(base) as url:
            fig["pg.submit.jobq_single"], fig["pg.submit.jobq_bulk"] = jobq_pg_submits(url, s.single, s.bulk)

    step("pg.jobq_drain", f"jobq on PostgreSQL, drain of {s.drain:,}", jobq_drain)
    if procrastinate_ok:
        step("pg.procrastinate", f"procrastinate, drain of {s.pg_peer:,}", procrastinate)
    for broker in celery_ok:
        step(f"pg.celery_{broker}", f"Celery ({CELERY_BROKERS[broker]}), drain of {s.pg_peer:,}", lambda b=broker: celery(b))

    def pgqueuer() -> None:  # issue 15: one-at-a-time enqueues, each its own commit
        with scratch_database(base) as url:
            peer, ours = bench_pgqueuer.pgqueuer_single(url, min(s.single, PEER_SINGLE_MAX))
            fig["pg.submit.pgqueuer_single"], fig["pg.submit.jobq_single_beside_pgqueuer"] = peer, ours

    step("pg.jobq_submit", "jobq on PostgreSQL, submits", submits)
    if s.peers and not bench_pgqueuer.pgqueuer_reason():
        step("pg.pgqueuer", "pgqueuer, one-at-a-time enqueues", pgqueuer)
    return fig


def pg_latency(rep: Report, s: Sizes, workers: int, base: str) -> None:
    common.say(f"  PostgreSQL latency: {s.latency} submit+join round trips, then idle CPU over {s.idle_seconds:g}s")
    with jobq_schema(base) as url:
        common.measure_latency(rep, jobq.Queue(url), s, workers, "pg.", "jobq ")


def section_postgres(rep: Report, s: Sizes, workers: int, base: str = PG_DEFAULT) -> None:
    reason = postgres_reason(base)
    if reason:
        rep.skipped["postgres"] = reason
        common.say(f"postgres: skipped: {reason}")
        return
    try:
        import procrastinate  # noqa: F401

        procrastinate_ok = True
    except ImportError:
        procrastinate_ok = False
        rep.skipped["procrastinate"] = INSTALL_HINT
    if bench_pgqueuer.pgqueuer_reason():
        rep.skipped["pgqueuer"] = INSTALL_HINT
    celery_no = celery_reasons()
    for broker, why in celery_no.items():
        rep.skipped[f"celery_{broker}"] = why
    celery_ok = [b for b in CELERY_BROKERS if b not in celery_no]
    for peer in ("procrastinate", "pgqueuer", "celery_amqp", "celery_redis"):
        if peer in rep.skipped:
            common.say(f"{peer}: skipped: {rep.skipped[peer]}")
    common.say(f"postgres: jobq {s.drain:,} jobs, peers {s.pg_peer:,} jobs, {workers} workers, {s.repeat} run(s)")
    runs = [_pg_run(rep, s, workers, base, r, celery_ok, procrastinate_ok) for r in range(s.repeat)]
    peer_n = "" if s.pg_peer == s.drain else f"; {s.pg_peer:,} jobs"
    labels = {
        "pg.drain.jobq": "jobq on PostgreSQL (Supervisor, burst)",
        "pg.drain.procrastinate": f"procrastinate ({workers} worker processes{peer_n})",
        "pg.drain.celery_amqp": f"Celery -c {workers} prefork ({CELERY_BROKERS['amqp']}{peer_n})",
        "pg.drain.celery_redis": f"Celery -c {workers} prefork ({CELERY_BROKERS['redis']}{peer_n})",
        "pg.submit.jobq_single": "jobq on PostgreSQL, q.submit one by one",
        "pg.submit.procrastinate_single": f"procrastinate defer, one by one ({min(s.pg_peer, PEER_SINGLE_MAX):,})",
        "pg.submit.celery_amqp_single": f"Celery send_task, one by one (RabbitMQ; {s.pg_peer:,})",
        "pg.submit.celery_redis_single": f"Celery send_task, one by one (Redis; {s.pg_peer:,})",
        "pg.submit.jobq_bulk": f"jobq on PostgreSQL, q.submit_many ({s.bulk:,} jobs)",
        "pg.submit.pgqueuer_single": f"pgqueuer enqueue, one by one ({min(s.single, PEER_SINGLE_MAX):,})",
        "pg.submit.jobq_single_beside_pgqueuer": "jobq q.submit, one by one, in blocks beside pgqueuer's",
    }
    for key, value in common._median_of(runs).items():
        rep.add(key, value, "jobs/s", labels[key])
    try:
        pg_latency(rep, s, workers, base)
    except Exception as exc:  # noqa: BLE001
        rep.errors["pg.latency"] = f"{type(exc).__name__}: {exc}"


# -- targets and table ---------------------------------------------------------------------------
def target_checks(f: dict[str, float]) -> list[Check]:
    celery = [f[k] for k in ("pg.drain.celery_amqp", "pg.drain.celery_redis") if k in f]
    jobq_drain = f.get("pg.drain.jobq")
    return [
        (
            "PostgreSQL: drain >= 10x procrastinate",
            jobq_drain / f["pg.drain.procrastinate"] if jobq_drain and "pg.drain.procrastinate" in f else None,
            ">=",
            10.0,
            "x",
        ),
        (
            "PostgreSQL: drain >= 5x Celery (its faster broker)",
            jobq_drain / max(celery) if jobq_drain and celery else None,
            ">=",
            5.0,
            "x",
        ),
        ("PostgreSQL: latency p50 <= 5 ms", f.get("pg.latency.p50_ms"), "<=", 5.0, " ms"),
    ]


def single_submit_check(f: dict[str, float]) -> Check:
    """Issue 15: one-at-a-time submits against pgqueuer's, in the same run."""
    single, peer = f.get("pg.submit.jobq_single_beside_pgqueuer"), f.get("pg.submit.pgqueuer_single")
    return ("PostgreSQL: single submit >= 1.5x pgqueuer", single / peer if single and peer else None, ">=", 1.5, "x")


def render_rows(f: dict[str, float], row: Callable[[str, str], None], lines: list[str]) -> None:
    if not any(k.startswith("pg.") for k in f):
        return

    def vs(key: str, peer: str) -> str:
        return f"jobq/peer {f[key] / f[peer]:.2f}x" if key in f and peer in f else ""

    lines.append("PostgreSQL: drain (jobs/s, from start to last result stored)")
    row("pg.drain.jobq", "")
    for k in ("pg.drain.procrastinate", "pg.drain.celery_amqp", "pg.drain.celery_redis"):
        row(k, vs("pg.drain.jobq", k))
    lines.append("PostgreSQL: submit (jobs/s)")
    row("pg.submit.jobq_single", "")
    for k in ("pg.submit.procrastinate_single", "pg.submit.celery_amqp_single", "pg.submit.celery_redis_single"):
        row(k, vs("pg.submit.jobq_single", k))
    row("pg.submit.jobq_single_beside_pgqueuer", "")
    row("pg.submit.pgqueuer_single", vs("pg.submit.jobq_single_beside_pgqueuer", "pg.submit.pgqueuer_single"))
    row("pg.submit.jobq_bulk", "")
    lines.append("PostgreSQL: latency and idle cost")
    for k in ("pg.latency.p50_ms", "pg.latency.p99_ms", "pg.latency.idle_cpu_percent"):
        row(k, "")
