"""Flow control in the claim (issue 17): per-queue caps and rates, and fair shares between
the partitions of a queue. Runs inside the claim's write transaction, after the backend made
limited claims take turns (PostgreSQL: an advisory lock; SQLite: the write lock itself).

- **Rate**: a token bucket of starts per queue, stored in its ``queues`` row (``tokens``,
  ``refilled_at``): it refills at ``rate_count / rate_period`` per second up to
  ``rate_count`` (the burst), and each claimed job spends one token in the same transaction.
  Every supervisor of the database spends from the same bucket, and a job the bucket does
  not pay for is left queued (never claimed early and held).
- **Partitions**: a queue that holds jobs with a ``partition`` is claimed round robin: the
  partitions with due jobs are visited in key order from the queue's cursor (``rr_cursor``),
  each found by one seek of the partition index; a batch takes the head job of each, then
  the next of each, and so on; priorities are kept within a partition.
  ``partition_concurrency`` caps each partition's running jobs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.models import JobError, Outcome
from . import queries as Q

#: how far ahead a claim may take jobs of a rated queue (beyond the supervisor's idle slots)
RATED_PREFETCH_SECONDS = 0.01

#: jobs a partition gets per visit of a fair claim (fewer when the claim needs fewer)
QUANTUM = 64


@dataclass
class QueueControl:
    """A queue's stored controls (one row of ``queues``)."""

    name: str
    concurrency: int | None
    paused: bool
    rate_count: int | None
    rate_period: float | None
    tokens: float | None
    refilled_at: float | None
    partition_concurrency: int | None
    partitioned: bool
    rr_cursor: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> QueueControl:
        name, cap, paused, count, period, tokens, refilled, per_partition, partitioned, cursor = row
        return cls(name, cap, bool(paused), count, period, tokens, refilled, per_partition, bool(partitioned), cursor)

    def tokens_at(self, now: float) -> float:
        """The bucket's tokens at ``now`` (infinite without a rate). A clock behind the last
        refill (another host's) refills nothing rather than going back."""
        if not self.rate_count or not self.rate_period:
            return math.inf
        if self.tokens is None or self.refilled_at is None:
            return float(self.rate_count)  # a new (or reset) bucket is full
        gained = max(0.0, now - self.refilled_at) * self.rate_count / self.rate_period
        return min(float(self.rate_count), self.tokens + gained)

    @property
    def limited(self) -> bool:
        """Whether claims of this queue must take turns (a cap, a rate or partitions)."""
        return self.concurrency is not None or bool(self.rate_count) or self.partitioned


@dataclass
class LimitedPick:
    """The jobs a limited claim picked, and what the claim spends for them."""

    ids: list[int]
    controls: dict[str, QueueControl]
    cursors: dict[str, str]  # partitioned queue -> the last partition served


class FlowControl:
    """The limited claim (a mixin of the transitions)."""

    claim_lock: str

    def _serialize_limited_claims(self, conn: Any) -> None:
        """Make claims of limited queues take turns (no-op where writes already do)."""

    def _claim_rows(self, conn: Any, picked: str, params: tuple[Any, ...]) -> list[Any]:
        """Claim the jobs that the query ``picked`` selects (``params``: its own, then the
        claim's owner, time and lease end); their rows, as :data:`Q.CLAIM` returns them."""
        rows: list[Any] = conn.execute(Q.CLAIM.format(picked=picked), params).fetchall()
        return rows

    def _pick_limited(
        self, conn: Any, queues: Sequence[str] | None, qsql: str, qparams: tuple[Any, ...], limit: int, now: float, slots: int
    ) -> LimitedPick:
        """Up to ``limit`` due jobs within every queue's cap, rate and partition shares
        (``qsql``: the claim's filter of queues and slots, paused queues excluded; ``slots``:
        the most cpus a job may need)."""
        self._serialize_limited_claims(conn)
        # Read after the turn is ours: the buckets and cursors are those the last claim left.
        controls = {c.name: c for c in map(QueueControl.from_row, conn.execute(Q.QUEUE_CONTROLS).fetchall())}
        served = [c for c in controls.values() if queues is None or c.name in queues]
        capped = [c.name for c in served if c.concurrency is not None]
        running = (
            dict(conn.execute(Q.HELD_BY_QUEUE.format(marks=Q.marks(len(capped))), tuple(capped)).fetchall()) if capped else {}
        )
        budget: dict[str, int] = {}
        for c in served:
            room = math.inf if c.concurrency is None else c.concurrency - running.get(c.name, 0)
            tokens = c.tokens_at(now)
            if tokens != math.inf:
                # No more than the supervisor's idle slots either, beyond what the rate refills in
                # RATED_PREFETCH_SECONDS: a rated job starts about when it is claimed, never queued
                # behind others in a worker (its start would drift from the claim that paid for it,
                # and starts could bunch past the rate); a rate too high to bind keeps prefetching.
                ahead = max(slots, math.floor((c.rate_count or 0) * RATED_PREFETCH_SECONDS / (c.rate_period or 1.0)))
                room = min(room, math.floor(tokens + 1e-9), ahead)
            if c.paused:
                room = 0
            if room != math.inf:
                budget[c.name] = max(0, int(room))
        shut = sorted(q for q, n in budget.items() if n <= 0)
        if shut:
            qsql += f" AND queue NOT IN ({Q.marks(len(shut))})"
            qparams += tuple(shut)
        sources: list[list[tuple[int, str, str | None]]] = []
        rows = conn.execute(Q.PICK.format(queues=qsql, lock=self.claim_lock), (now, *qparams, limit)).fetchall()
        sources.append([(job_id, queue, None) for job_id, queue, _ in rows])
        for c in served:
            if c.partitioned and budget.get(c.name, 1) > 0:
                want = min(limit, budget.get(c.name, limit))
                sources.append(self._pick_fair(conn, c, want, now, slots))
        ids: list[int] = []
        cursors: dict[str, str] = {}
        for job_id, queue, partition in _round_robin(sources):
            if len(ids) >= limit:
                break
            if queue in budget:
                if budget[queue] <= 0:
                    continue
                budget[queue] -= 1
            ids.append(job_id)
            if partition is not None:
                cursors[queue] = partition
        return LimitedPick(ids, controls, cursors)

    def _pick_fair(self, conn: Any, c: QueueControl, want: int, now: float, slots: int) -> list[tuple[int, str, str | None]]:
        """Up to ``want`` due jobs of the partitioned queue ``c``, round robin across its
        partitions from its cursor, keeping ``partition_concurrency``."""
        cap = c.partition_concurrency
        running: dict[str, int] = {}
        if cap is not None:
            running = dict(conn.execute(Q.HELD_BY_PARTITION, (c.name,)).fetchall())
        full = {k for k, n in running.items() if n >= (cap or 0)}
        cursor = c.rr_cursor or ""
        # A visit takes up to a quantum of jobs from a partition: its jobs lie together in the
        # table, so a claim of a few partitions' runs writes far fewer pages than one job from
        # each of many (one job from each of 100 partitions halved the drain); a claim still
        # visits at least 4 partitions when there are that many.
        quantum = max(1, min(QUANTUM, want // 4))
        n_heads = -(-want // quantum) + len(full)
        heads = self._partition_heads(conn, c.name, cursor, n_heads, now, slots)
        if len(heads) < n_heads and cursor:  # wrap around to the partitions before the cursor
            seen = {k for k, _ in heads}
            heads += [
                h for h in self._partition_heads(conn, c.name, "", n_heads, now, slots) if h[0] <= cursor and h[0] not in seen
            ]
        every = len(heads) < n_heads  # every partition with due jobs is among the heads
        heads = [(k, job_id) for k, job_id in heads if k not in full]
        if not heads:
            return []
        if every:  # share the claim among them all
            return self._share(conn, c, heads, want, cap, running, now, slots)
        out: list[tuple[int, str, str | None]] = []
        visited: set[str] = set()
        while heads:
            for k, job_id in heads:
                visited.add(k)
                lane = self._lane(conn, c, k, job_id, min(quantum, want - len(out)), cap, running, now, slots)
                out += [(i, c.name, k) for i in lane]
                if len(out) >= want:
                    return out
            # Partitions with fewer jobs than a quantum left room: visit the next ones.
            asked = -(-(want - len(out)) // quantum)
            more = self._partition_heads(conn, c.name, heads[-1][0], asked, now, slots)
            heads = [(k, job_id) for k, job_id in more if k not in full and k not in visited]
        return out[:want]

    def _share(
        self,
        conn: Any,
        c: QueueControl,
        heads: list[tuple[str, int]],
        want: int,
        cap: int | None,
        running: dict[str, int],
        now: float,
        slots: int,
    ) -> list[tuple[int, str, str | None]]:
        """Up to ``want`` jobs shared evenly among ``heads``, every partition with due jobs."""
        per = -(-want // len(heads))
        lanes = [self._lane(conn, c, k, job_id, per, cap, running, now, slots) for k, job_id in heads]
        short = want - sum(len(lane) for lane in lanes)
        full_lanes = [i for i, lane in enumerate(lanes) if len(lane) == per]
        if short > 0 and full_lanes:  # partitions with fewer jobs left room: the others fill it
            more = per + -(-short // len(full_lanes))
            for i in full_lanes:
                lanes[i] = self._lane(conn, c, heads[i][0], heads[i][1], more, cap, running, now, slots)
        out: list[tuple[int, str, str | None]] = [
            (job_id, c.name, k) for (k, _), lane in zip(heads, lanes, strict=True) for job_id in lane
        ]
        return out[:want]

    def _lane(
        self,
        conn: Any,
        c: QueueControl,
        partition: str,
        head: int,
        room: int,
        cap: int | None,
        running: dict[str, int],
        now: float,
        slots: int,
    ) -> list[int]:
        """Up to ``room`` due jobs of one partition, its head first, within its cap."""
        if cap is not None:
            room = min(room, cap - running.get(partition, 0))
        if room <= 1:
            return [head]
        rows = conn.execute(Q.PICK_PARTITION.format(lock=self.claim_lock), (c.name, partition, now, slots, room)).fetchall()
        return [r[0] for r in rows] or [head]

    def _partition_heads(self, conn: Any, queue: str, after: str, count: int, now: float, slots: int) -> list[tuple[str, int]]:
        """(partition, its first due job) of up to ``count`` partitions of ``queue`` after ``after``."""
        if count <= 0:
            return []
        params = (queue, after, now, slots, queue, now, slots, queue, now, slots, count)
        rows = conn.execute(Q.PARTITION_HEADS, params).fetchall()
        return [(k, job_id) for k, job_id in rows]

    def _count_crash(self, conn: Any, o: Outcome, crashes: int, error: JobError) -> JobError | None:
        """Count a worker's death by a signal (any other end of an attempt resets the count);
        the ``Quarantined`` error once ``o.max_crashes`` came in a row, else None."""
        crashes_now = crashes + 1 if o.crashed else 0
        quarantined = bool(o.crashed and o.max_crashes and crashes_now >= o.max_crashes)
        if crashes_now != crashes or quarantined:
            conn.execute(Q.SET_CRASHES, (crashes_now, int(quarantined), o.job_id))
        if not quarantined:
            return None
        return JobError(
            "Quarantined",
            f"its worker died by a signal in {crashes_now} attempts in a row (max_crashes={o.max_crashes}); "
            f"last: {error.message}",
        )

    def _spend(self, conn: Any, pick: LimitedPick, claimed_queues: Sequence[str], now: float) -> None:
        """Spend one token per claimed job of each rated queue and move the partition cursors."""
        spent: dict[str, int] = {}
        for queue in claimed_queues:
            spent[queue] = spent.get(queue, 0) + 1
        for queue, n in spent.items():
            c = pick.controls.get(queue)
            if c is not None and c.rate_count:
                # The refill time never goes back: a host whose clock is behind the last claimer's
                # gains nothing until it catches up, so skewed clocks never add a burst.
                conn.execute(Q.SPEND_TOKENS, (c.tokens_at(now) - n, max(now, c.refilled_at or now), queue))
        for queue, partition in pick.cursors.items():
            conn.execute(Q.MOVE_CURSOR, (partition, queue))


def _round_robin(sources: list[list[tuple[int, str, str | None]]]) -> list[tuple[int, str, str | None]]:
    """One item of each source in turn (unpartitioned jobs and each partitioned queue's share)."""
    out = []
    for rank in range(max((len(s) for s in sources), default=0)):
        for source in sources:
            if rank < len(source):
                out.append(source[rank])
    return out
