"""The state invariants: rules every job row obeys at rest, on either backend, and the check
that finds the rows breaking them. The chaos soak (scripts/chaos_checks.py) and the tests
(``Store.invariant_violations``) use these; nothing here writes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.models import MAX_LOST_ATTEMPTS, STATES

# Row rules that hold for every job at rest on either backend (from jobq/store/sql.py: how
# claims, fenced finishes, retries, take-backs and cancellations write a row). Each query
# returns the ids of the rows that break its rule.
_STATES_SQL = ",".join(f"'{s}'" for s in STATES)
ROW_RULES: tuple[tuple[str, str], ...] = (
    ("state not a jobq state", f"SELECT id FROM jobs WHERE state NOT IN ({_STATES_SQL})"),
    (
        "running without owner/lease/start/worker or attempt",
        "SELECT id FROM jobs WHERE state='running' AND (owner IS NULL OR lease_expires_at IS NULL "
        "OR started_at IS NULL OR worker IS NULL OR attempts < 1)",
    ),
    (
        "claimed without owner/lease or attempt, or with a start",
        "SELECT id FROM jobs WHERE state='claimed' AND (owner IS NULL OR lease_expires_at IS NULL OR attempts < 1 "
        "OR started_at IS NOT NULL OR worker IS NOT NULL)",
    ),
    (
        "lease held while not claimed or running",
        "SELECT id FROM jobs WHERE state NOT IN ('claimed','running') AND lease_expires_at IS NOT NULL",
    ),
    (
        "unfinished with an owner or a finish time",
        "SELECT id FROM jobs WHERE state IN ('queued','scheduled','waiting') AND (owner IS NOT NULL OR finished_at IS NOT NULL)",
    ),
    (
        "finished without a finish time",
        "SELECT id FROM jobs WHERE state IN ('succeeded','failed','cancelled') AND finished_at IS NULL",
    ),
    (
        "succeeded without a result or with an error",
        "SELECT id FROM jobs WHERE state='succeeded' AND (result IS NULL OR error IS NOT NULL)",
    ),
    ("failed without an error", "SELECT id FROM jobs WHERE state='failed' AND error IS NULL"),
    (
        "attempts out of range",
        f"SELECT id FROM jobs WHERE attempts < 0 OR max_attempts < 1 OR attempts > max_attempts + {MAX_LOST_ATTEMPTS}",
    ),
    (
        "attempt error of a missing job or an attempt not made",
        "SELECT e.job_id FROM job_errors e LEFT JOIN jobs j ON j.id=e.job_id "
        "WHERE j.id IS NULL OR e.attempt < 1 OR e.attempt > j.attempts",
    ),
)


@dataclass(frozen=True)
class Violation:
    """One rule and the ids of the rows that break it (at most ``LIMIT``)."""

    rule: str
    job_ids: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.rule}: ids {', '.join(map(str, self.job_ids))}"


LIMIT = 20


def violations(
    read: Callable[[str], Sequence[Sequence[Any]]], counts: Mapping[str, Mapping[str, int]] | None = None
) -> list[Violation]:
    """Every rule broken in the database that ``read`` (one SELECT -> rows) reads, and whether
    the ``counts`` by queue and state that the store reports match the rows."""
    found = []
    for rule, sql in ROW_RULES:
        bad = sorted({int(r[0]) for r in read(sql)})
        if bad:
            found.append(Violation(rule, tuple(bad[:LIMIT])))
    if counts is None:
        return found
    counted = {(q, s): n for q, states in counts.items() for s, n in states.items() if n}
    actual = {(q, s): n for q, s, n in read("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")}
    if counted != actual:
        off = sorted(k for k in set(counted) | set(actual) if counted.get(k) != actual.get(k))
        found.append(Violation(f"stored counts differ from the rows for {off[:5]}", ()))
    return found
