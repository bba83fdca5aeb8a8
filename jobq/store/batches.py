"""A streamed submit's items, encoded as JSON argument lists in batches bounded by count and
bytes (each batch one short transaction), so a map of any size holds the write lock briefly."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..core.errors import ValidationError
from ..core.models import dumps

STREAM_CHUNK_BYTES = 1 << 20  # a batch's arguments, about
STREAM_CHUNK_SECONDS = 0.5  # a slow iterable's items are stored within this


def encoded_batches(
    args_iter: Iterable[list[Any]], chunk: int, kwargs_bytes: int, max_payload_bytes: int
) -> Iterator[tuple[int, str]]:
    """(count, JSON array) of successive batches of ``args_iter``, each validated: at most
    ``chunk`` items or about ``STREAM_CHUNK_BYTES`` of JSON (judged by the first item), or
    what arrived within ``STREAM_CHUNK_SECONDS``."""
    it = iter(args_iter)
    batch: list[Any] = []
    for args in it:  # the first item sizes the batches
        try:
            chunk = max(1, min(chunk, STREAM_CHUNK_BYTES // (len(dumps(args)) + 1)))
        except (TypeError, ValueError):
            pass  # the batch's encoding names the bad item
        batch.append(args)
        break
    else:
        return
    first = 0
    clock = time.monotonic
    deadline = clock() + STREAM_CHUNK_SECONDS
    while True:
        if len(batch) >= chunk or clock() >= deadline:
            yield len(batch), encode_batch(batch, first, kwargs_bytes, max_payload_bytes)
            first += len(batch)
            batch = []
            deadline = clock() + STREAM_CHUNK_SECONDS
        append = batch.append
        for args in it:  # one item a turn: a slow iterable's items are stored within the deadline
            append(args)
            if len(batch) >= chunk or clock() >= deadline:
                break
        else:
            break
    if batch:
        yield len(batch), encode_batch(batch, first, kwargs_bytes, max_payload_bytes)


def encode_batch(batch: list[Any], first: int, kwargs_bytes: int, max_payload_bytes: int) -> str:
    """The batch's argument lists as one JSON array: one C call instead of one per job. Only
    when that fails or runs long are the items looked at one by one, to name the bad one."""
    array = None
    try:
        # Items that look big together (a chunked map's) go one by one at once: the whole
        # array would be encoded only to find it over the limit.
        if len(dumps(batch[0])) * len(batch) + kwargs_bytes <= max_payload_bytes:
            array = dumps(batch)
    except (TypeError, ValueError):
        array = None
    if array is None or len(array) + kwargs_bytes > max_payload_bytes:
        texts = []
        for offset, args in enumerate(batch):
            try:
                text = dumps(args)
            except (TypeError, ValueError) as exc:
                raise ValidationError("args", f"item {first + offset}: not JSON-serialisable: {exc}") from None
            if len(text) + kwargs_bytes > max_payload_bytes:
                raise ValidationError("args", f"item {first + offset}: payload over max_payload_bytes={max_payload_bytes}")
            texts.append(text)
        array = "[" + ",".join(texts) + "]"  # the items' texts: big items (chunks) are encoded twice, not three times
    return array
