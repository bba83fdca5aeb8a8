"""Several hosts, for real: jobq supervisors on three Linux namespace-hosts, one link cut.

    python scripts/hosts.py [--db URL] [--jobs N] [--hosts K] [--concurrency C] [--job-seconds T]
                            [--lease S] [--heartbeat S] [--cut-seconds S] [--session-timeout S]
                            [--throughput-jobs M] [--throughput-repeats R] [--throughput-work-jobs W]
                            [--run-dir DIR] [--json FILE]
    python scripts/hosts.py --clean      # only remove a crashed run's leftovers

Needs root on Linux (``ip``, ``unshare``, ``socat``) and a PostgreSQL server (``--db``, by
default ``$JOBQ_TEST_POSTGRES`` or ``postgresql://postgres@127.0.0.1:5432/test``; a fresh
schema ``jobq_hosts_<hex>`` is made and dropped unless the URL names one with ``?schema=``).

Each host is a network namespace ``jobq-host-<i>`` reached through a veth pair (root side
``jqh<i>r`` 10.231.<i>.1/30, host side ``jqh<i>h`` 10.231.<i>.2/30), with a host name of its
own (UTS namespace: ``host-a``, ``host-b``, ...) and a ``/tmp`` of its own (mount namespace;
a bind mount of ``<run dir>/<host>/tmp``). PostgreSQL listens on loopback only, so a
``socat`` forwarder per host listens on the root side of its veth and forwards to the
server: the server's configuration is not touched, and traffic stays on addresses this
script made. Every host runs one ``jobq worker start`` against the same schema, as a role
made for the run (``hosts_db.py``: ``idle_in_transaction_session_timeout`` of
``--session-timeout``, by default half the lease; 0 for none, which shows why it is needed).
Leases and heartbeats are short (``--lease 2 --heartbeat 0.5`` by default, through
``JOBQ_LEASE_SECONDS``/``JOBQ_HEARTBEAT_SECONDS``).

What it does:

1. Starts the K hosts and their supervisors.
2. The cut: submits ``--jobs`` jobs ``hosts_tasks:record(T)`` (each logs ``job id, attempt,
   host, time`` to its host's own /tmp). Once the last host has a job on every worker and a
   tenth of the jobs are done, its link goes down (``ip link set jqh<i>r down``: its
   connections stall, nothing is killed). The jobs it held then are its *in-flight* jobs.
   The others must take them back within two leases; after ``--cut-seconds`` the link comes
   back: its late finishes must be refused by the fence ("result dropped" in its log), and
   it must be listed live again and go on claiming and running new jobs.
3. Checks, and exits 1 on any problem: every job succeeded and ran at least once; the only
   jobs that ran twice are in-flight ones; every in-flight job was taken back (a
   ``LeaseExpired`` error) and no other job was attempted twice; every refused finish is an
   in-flight job; the cut host ran new jobs after the link returned; no host took another's
   jobs as "dead"; each host logged only its own host name.
4. Throughput: with K, then K-1, ... 1 hosts up (one drains and stops after each step; each
   must exit 0 on SIGTERM): one run of ``--throughput-work-jobs`` jobs of T seconds each
   (against the ideal, workers / T), on fresh supervisors, and the median of
   ``--throughput-repeats`` runs of ``--throughput-jobs`` no-op jobs. Printed as
   ``throughput: K hosts: X ...``.

Everything made is removed on exit, by pid and by name, also on errors, SIGTERM and Ctrl-C;
leftovers of a crashed run (namespaces ``jobq-host-*`` and what runs in them, links ``jqh*``,
forwarders on 10.231.*, schemas and roles ``jobq_hosts_*``) are removed first. One run at a
time (a lock on /run/jobq-hosts.lock). The last line is ``hosts: ok`` or ``hosts: FAILED``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from hosts_db import DEFAULT_DB, Database, drop_leftovers  # noqa: E402
from hosts_net import Host, clean_leftovers, run_lock, unavailable, wait_for  # noqa: E402

import jobq  # noqa: E402
from jobq.store.base import SupervisorInfo  # noqa: E402


# -- the run -------------------------------------------------------------------------------
class Run:
    """The hosts of one run, the queue seen from the root namespace, and what happened."""

    def __init__(self, args: argparse.Namespace, db: Database, run_dir: Path) -> None:
        self.args = args
        self.db = db
        self.run_dir = run_dir
        self.q = jobq.Queue(db.url)
        self.hosts = [Host(i, run_dir, db.server, args.hostname) for i in range(args.hosts)]
        self.problems: list[str] = []
        self.summary: dict[str, Any] = {"hosts": [h.name for h in self.hosts], "throughput": {}}

    def problem(self, text: str) -> None:
        print(f"!! {text}", flush=True)
        self.problems.append(text)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("JOBQ_CONFIG", "JOBQ_HOST_ID", "JOBQ_DB", "TMPDIR"):
            env.pop(name, None)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        env["JOBQ_LEASE_SECONDS"] = f"{self.args.lease:g}"
        env["JOBQ_HEARTBEAT_SECONDS"] = f"{self.args.heartbeat:g}"
        env["JOBQ_IDLE_POLL_SECONDS"] = "0.2"
        return env

    def live(self) -> dict[str, SupervisorInfo]:
        """Live supervisors by host (told apart by pid: they may share a host name)."""
        pids = {h.supervisor.pid: h.name for h in self.hosts if h.supervisor is not None}
        return {pids[s.pid]: s for s in self.q.store.supervisors() if s.pid in pids}

    def launch(self, hosts: list[Host]) -> None:
        """Start a supervisor on each host, and wait until each has registered."""
        old = {h.name: h.sup_id for h in hosts}
        for host in hosts:
            host.start_supervisor(self.db.url_via(host.root_addr), self.args.concurrency, self.env(), HERE)

        def registered() -> bool:
            live = self.live()
            return all(h.name in live and live[h.name].id != old[h.name] for h in hosts)

        wait_for(registered, 60, f"the supervisors on {', '.join(h.name for h in hosts)} to register")
        live = self.live()
        for host in hosts:
            host.sup_id = live[host.name].id
            if live[host.name].host != host.hostname:
                self.problem(f"the supervisor on {host.name} registered as host {live[host.name].host!r}, not {host.hostname!r}")
            assert host.supervisor is not None
            print(
                f"{host.name}: host name {host.hostname}, netns {host.netns}, {host.host_addr} -> forwarder {host.root_addr}, "
                f"supervisor {host.sup_id} (pid {host.supervisor.pid})",
                flush=True,
            )

    def fresh(self, hosts: list[Host]) -> None:
        """New supervisors on these hosts (the old ones drain): measurements start alike,
        with no supervisor still sizing its claims by the jobs it ran before."""
        for host in hosts:
            host.terminate()
        for host in hosts:
            self.check_exit(host)
        self.launch(hosts)

    def succeeded(self, queue: str) -> int:
        return self.q.status()["queues"].get(queue, {}).get("succeeded", 0)

    def start(self) -> None:
        for host in self.hosts:
            host.create()
        self.launch(self.hosts)

    # -- 2. the cut --------------------------------------------------------------------------
    def in_flight_of(self, sup_id: str) -> set[int]:
        """The jobs the supervisor holds: claimed (prefetched) or running."""
        held = [r for state in ("claimed", "running") for r in self.q.store.list_jobs(state, "main", 100_000)]
        return {r.id for r in held if r.owner == sup_id}

    def cut(self) -> None:
        args, victim = self.args, self.hosts[-1]
        jobs = self.q.submit_many("hosts_tasks:record", [(args.job_seconds,) for _ in range(args.jobs)], queue="main")
        self.summary["jobs"] = len(jobs)
        self.summary["job_ids"] = [int(j.id) for j in jobs]
        started = time.monotonic()

        def busy() -> bool:  # in the middle of its jobs: every worker on one, a tenth of the work done
            return len(self.in_flight_of(victim.sup_id)) >= args.concurrency and self.succeeded("main") >= args.jobs // 10

        wait_for(busy, 60, f"{victim.name} to be busy", 0.02)
        victim.cut()
        cut_at = time.monotonic()
        self.summary["cut_at"] = time.time()
        done_at_cut = self.succeeded("main")
        # Nothing of the victim's reaches the server any more; let what was already on its way land.
        time.sleep(0.3)
        in_flight = self.in_flight_of(victim.sup_id)
        self.summary["in_flight"] = sorted(in_flight)
        if not in_flight:
            self.problem(f"{victim.name} held no job just after the cut (taken from it while it was still connected?)")
        print(
            f"cut: {victim.name}'s link down {cut_at - started:.1f}s in, {done_at_cut}/{args.jobs} done, "
            f"{len(in_flight)} jobs in flight on it",
            flush=True,
        )

        def taken_over() -> bool:
            return not (self.in_flight_of(victim.sup_id) & in_flight)

        # The lease runs out at most one lease after the cut; another host's next heartbeat takes it back.
        due = args.lease * 2 + 1
        try:
            wait_for(taken_over, due, "the other hosts to take the in-flight jobs back", 0.05)
        except TimeoutError:
            self.problem(
                f"the in-flight jobs of {victim.name} were not taken back within {due:g}s of the cut (lease {args.lease:g}s)"
            )
            for line in self.db.blocked():
                self.problem(f"blocked: {line}")
            with contextlib.suppress(TimeoutError):
                wait_for(taken_over, args.lease * 4 + 20, "the other hosts to take the in-flight jobs back", 0.1)
        took = time.monotonic() - cut_at
        self.summary["taken_back_after_s"] = round(took, 2)
        print(f"cut: the others took its {len(in_flight)} jobs back {took:.1f}s after the cut", flush=True)
        wait_for(lambda: time.monotonic() >= cut_at + args.cut_seconds, args.cut_seconds + 1, "the cut to last", 0.05)
        victim.restore()
        restored_at, restored_wall = time.monotonic(), time.time()
        print(f"cut: link back up after {restored_at - cut_at:.1f}s, {self.succeeded('main')}/{args.jobs} done", flush=True)

        def back() -> bool:
            sup = self.live().get(victim.name)
            return sup is not None and sup.heartbeat_at > restored_wall

        try:
            wait_for(back, 60, f"{victim.name} to be listed live again", 0.05)
            self.summary["back_after_s"] = round(time.monotonic() - restored_at, 2)
            print(f"cut: {victim.name} heartbeating again {self.summary['back_after_s']}s after the link came back", flush=True)
        except TimeoutError:
            self.problem(f"{victim.name} was not listed live again within 60s of the link coming back")
        wait_for(lambda: self.succeeded("main") >= args.jobs, 180, f"all {args.jobs} jobs to succeed", 0.1)
        self.summary["main_seconds"] = round(time.monotonic() - started, 2)
        self.summary["restored_at"] = restored_wall
        print(f"all {args.jobs} jobs succeeded {self.summary['main_seconds']}s after submission", flush=True)

    # -- 3. checks ---------------------------------------------------------------------------
    def check(self) -> None:
        args, victim = self.args, self.hosts[-1]
        in_flight = set(self.summary.get("in_flight", []))
        runs: dict[int, list[tuple[int, str, float]]] = {}
        for host in self.hosts:
            for job_id, attempt, name, at in host.runs():
                if name != host.hostname:
                    self.problem(f"{host.name}'s /tmp holds a run logged by host name {name}, not {host.hostname}")
                runs.setdefault(job_id, []).append((attempt, host.name, at))
        records = self.q.store.list_jobs(None, "main", 100_000)
        states: dict[str, int] = {}
        for r in records:
            states[r.state] = states.get(r.state, 0) + 1
        if states != {"succeeded": args.jobs}:
            self.problem(f"main jobs by state: {states} (want {args.jobs} succeeded)")
        ids = {r.id for r in records}
        never = sorted(ids - set(runs))
        if never:
            self.problem(f"{len(never)} jobs succeeded but never ran (lost): {never[:10]}")
        dups = {j: len(v) for j, v in runs.items() if len(v) > 1}
        stray = sorted(set(dups) - in_flight)
        if stray:
            self.problem(f"{len(stray)} jobs ran twice but were not in flight at the cut: {stray[:10]}")
        self.summary["duplicates"] = len(dups)
        self.summary["runs"] = sum(len(v) for v in runs.values())
        lease_errors = {j: [e.get("type") for e in self.q.record(j).errors] for j in in_flight}
        not_taken = sorted(j for j, types in lease_errors.items() if "LeaseExpired" not in types)
        if not_taken:
            self.problem(f"{len(not_taken)} in-flight jobs carry no LeaseExpired error: {not_taken[:10]}")
        others = sorted(r.id for r in records if r.id not in in_flight and r.attempts != 1)
        if others:
            self.problem(f"{len(others)} jobs that were not in flight at the cut were attempted again: {others[:10]}")
        fenced = victim.fenced()
        self.summary["fenced"] = sorted(fenced)
        if not fenced:
            self.problem(f"{victim.name} logged no refused (fenced) late finish")
        if fenced - in_flight:
            self.problem(f"{victim.name} had finishes refused of jobs not in flight: {sorted(fenced - in_flight)[:10]}")
        restored = self.summary.get("restored_at", float("inf"))
        later = [j for j, v in runs.items() if j not in in_flight and any(n == victim.name and at > restored for _, n, at in v)]
        self.summary["victim_jobs_after"] = len(later)
        if not later:
            self.problem(f"{victim.name} ran no new job after its link came back")
        per_host = {h.name: sum(1 for v in runs.values() for _, n, _ in v if n == h.name) for h in self.hosts}
        self.summary["runs_per_host"] = per_host
        for host in self.hosts:
            if not per_host[host.name]:
                self.problem(f"{host.name} ran no job")
            swept = host.log_lines("is dead; took back")
            if swept:
                self.problem(f"{host.name} declared another host's supervisor dead: {swept[0]}")
        print(
            f"runs: {self.summary['runs']} executions of {len(ids)} jobs by host {per_host}; "
            f"{len(dups)} ran twice (all in flight at the cut: {not stray}); {len(fenced)} late finishes refused; "
            f"{victim.name} ran {len(later)} new jobs after the link came back",
            flush=True,
        )

    # -- 4. throughput -----------------------------------------------------------------------
    def throughput(self) -> None:
        """With K, K-1, ... 1 hosts up (one drains and stops after each step): the median rate
        of ``--throughput-repeats`` runs of ``--throughput-jobs`` no-op jobs, and of one run of
        ``--throughput-work-jobs`` jobs of ``--job-seconds`` each (the scaling of real work)."""
        args = self.args
        for k in range(len(self.hosts), 0, -1):
            hosts = f"{k} host{'s' if k > 1 else ''}"
            if args.throughput_work_jobs > 0:
                self.fresh(self.hosts[:k])
                rate = self.rate(f"work{k}", "hosts_tasks:record", [(args.job_seconds,)] * args.throughput_work_jobs)
                ideal = k * args.concurrency / args.job_seconds if args.job_seconds else float("inf")
                self.summary.setdefault("work_throughput", {})[k] = round(rate, 1)
                print(
                    f"throughput: {hosts}: {rate:.0f} jobs/s of {args.job_seconds * 1000:g} ms each "
                    f"({rate / ideal:.0%} of the {ideal:.0f}/s its {k * args.concurrency} workers could do)",
                    flush=True,
                )
            if args.throughput_jobs > 0:
                self.fresh(self.hosts[:k])
                rates = sorted(
                    self.rate(f"noop{k}_{i}", "hosts_tasks:noop", [()] * args.throughput_jobs)
                    for i in range(args.throughput_repeats)
                )
                median = rates[len(rates) // 2]
                self.summary["throughput"][k] = round(median, 1)
                print(
                    f"throughput: {hosts}: {median:.0f} no-op jobs/s (median of {', '.join(f'{r:.0f}' for r in rates)}; "
                    f"{args.throughput_jobs} jobs, {args.concurrency} workers per host)",
                    flush=True,
                )
            self.hosts[k - 1].terminate()
            self.check_exit(self.hosts[k - 1])

    def rate(self, queue: str, target: str, args_list: list[tuple[Any, ...]]) -> float:
        """Jobs per second from the submit's commit until the last one succeeded."""
        n = len(args_list)
        self.q.submit_many(target, args_list, queue=queue)
        start = time.monotonic()  # claims begin once the submit commits
        wait_for(lambda: self.succeeded(queue) >= n, 300, f"{n} jobs in queue {queue}", 0.01)
        return n / (time.monotonic() - start)

    def check_exit(self, host: Host) -> None:
        """The host's supervisor, told to drain (SIGTERM), must exit 0."""
        code = host.wait_supervisor(30)
        if code != 0:
            self.problem(f"the supervisor on {host.name} exited with {code} on SIGTERM: see {host.log}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--hosts", type=int, default=3, choices=range(2, 10), metavar="K")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--job-seconds", type=float, default=0.03)
    p.add_argument("--throughput-jobs", type=int, default=5000)
    p.add_argument("--throughput-repeats", type=int, default=3)
    p.add_argument("--throughput-work-jobs", type=int, default=1000)
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--heartbeat", type=float, default=0.5)
    p.add_argument("--cut-seconds", type=float, default=5.0)
    p.add_argument(
        "--session-timeout",
        type=float,
        help="idle_in_transaction_session_timeout of the run's role (default: half the lease; 0: none, the server's default)",
    )
    p.add_argument(
        "--hostname",
        help="one host name for every host (default: host-a, host-b, ...); with their own "
        "/tmp, they must still not take each other for dead",
    )
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--clean", action="store_true", help="only remove a crashed run's leftovers, then exit")
    args = p.parse_args(argv)
    if args.session_timeout is None:
        args.session_timeout = args.lease / 2
    if args.jobs < 100 or args.concurrency < 1 or args.job_seconds < 0 or args.lease <= 0 or args.heartbeat <= 0:
        p.error("--jobs >= 100, --concurrency >= 1, --job-seconds >= 0, --lease and --heartbeat > 0")
    return args


def _on_signal(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clean:
        with run_lock():
            clean_leftovers()
            drop_leftovers(args.db)
        print("hosts: leftovers removed", flush=True)
        return 0
    reason = unavailable()
    if reason:
        print(f"hosts: cannot make namespace-hosts here: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    db = Database(args.db, args.session_timeout)
    own_dir = args.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="jobq-hosts-")) if own_dir else args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    run: Run | None = None
    with run_lock():
        clean_leftovers()
        drop_leftovers(args.db)
        try:
            db.create()
            run = Run(args, db, run_dir)
            timeout = f"{args.session_timeout:g}s" if db.role else "none"
            print(
                f"hosts: {args.hosts} namespace-hosts, schema {db.schema}, role {db.role} (idle-in-transaction "
                f"timeout {timeout}), run directory {run_dir}",
                flush=True,
            )
            run.start()
            run.cut()
            run.check()
            run.throughput()
        except (TimeoutError, jobq.JobqError, KeyboardInterrupt) as exc:
            if run is None:
                raise
            run.problem(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleaning up: a second signal must not cut it short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if run is not None:
                for host in run.hosts:
                    host.destroy()
                run.q.store.close()
            clean_leftovers()
            db.drop()
            if own_dir:
                shutil.rmtree(run_dir, ignore_errors=True)
    assert run is not None
    run.summary["problems"] = run.problems
    if args.json:
        args.json.write_text(json.dumps(run.summary, indent=1))
    print(f"hosts: {'ok' if not run.problems else 'FAILED'}", flush=True)
    return 0 if not run.problems else 1


if __name__ == "__main__":
    sys.exit(main())
