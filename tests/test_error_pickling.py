"""Every jobq error crosses a process boundary whole: a ``multiprocessing`` pool (or a
``concurrent.futures`` process executor) pickles a child's exception back to its caller.
Before ``JobqError.__reduce__``, an error whose constructor takes fields (``ValidationError``
and its kin) failed to unpickle, and the caller got a pool-internal error instead."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

from jobq.core import errors as E

pytestmark = pytest.mark.timeout(60)

ERRORS = [
    E.ValidationError("args", "item 3: not JSON"),
    E.ConfigError("workers", "must be at least 1", "jobq.toml"),
    E.TargetNotAllowed("os:system"),
    E.JobNotFound(7),
    E.GroupNotFound("g12"),
    E.GroupIncomplete("g12", 30, 61.0),
    E.StoreError("database is locked"),
    E.StoreBusy("busy"),
    E.JobFailed(5, "ValueError", "bad", traceback="tb", index=2, error_class="builtins:ValueError", error_args=["bad"]),
    E.StepMismatch(1, "fetch", "parse"),
    E.StepNotSerializable("fetch", "set is not JSON"),
    E.EventTimeout("paid", 2.5),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_a_jobq_error_pickles_with_its_message_and_fields(error: E.JobqError) -> None:
    error.add_note("seen by the test")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.args == error.args
    assert vars(back) == vars(error)  # fields (field, job_id, index, source...) and notes


def raise_validation_error(value: int) -> int:
    raise E.ValidationError("value", f"{value} is too big")


def test_a_validation_error_raised_in_a_pool_child_reaches_the_caller_as_itself() -> None:
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(raise_validation_error, (99,))
        with pytest.raises(E.ValidationError) as caught:
            result.get(timeout=30)
        pool.close()
        pool.join()
    assert caught.value.field == "value" and caught.value.message == "99 is too big"
