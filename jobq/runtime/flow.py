"""The configuration's flow controls (``[queues.NAME]``), stored by every supervisor when it
starts so that they hold for every supervisor of the database."""

from __future__ import annotations

from ..core.config import Settings
from ..core.limits import parse_rate
from ..store import Store


def apply_queue_settings(store: Store, settings: Settings, now: float) -> None:
    """Store each configured queue's cap, rate and per-partition cap."""
    for name, qs in settings.queues.items():
        if qs.concurrency:
            store.set_queue_limit(name, qs.concurrency, now)
        if qs.rate is not None:
            rate = parse_rate(qs.rate, f"queues.{name}.rate")
            wanted = (rate[0], rate[1]) if rate else (None, None)
            current = next((c for c in store.queue_controls() if c.name == name), None)
            if current is None or (current.rate_count, current.rate_period) != wanted:
                store.set_queue_rate(name, wanted[0], wanted[1], now)  # a restart does not refill the bucket
        if qs.partition_concurrency:
            store.set_partition_limit(name, qs.partition_concurrency, now)
