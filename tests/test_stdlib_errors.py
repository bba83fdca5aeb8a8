"""Issue 18: jobq's standard-library shapes fail as the standard library does. Each case runs
the same inputs through ``multiprocessing.Pool`` / ``ProcessPoolExecutor`` and through
``jobq.Pool`` / ``jobq.Executor``, and compares what comes out: the exception's class, args
and message, the remote traceback as ``__cause__``, the results before an iterable's own error.
Where jobq rebuilds the job's exception it is also a ``jobq.JobFailed``."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from tests import stack_tasks
from tests.conftest import REPO, _env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, jobq.Pool]]:
    db = tmp_path_factory.mktemp("stdlib") / "jobs.db"
    with multiprocessing.get_context("fork").Pool(2) as mp, jobq.Pool(2, db=db) as jp:
        yield mp, jp


@pytest.fixture(scope="module")
def executors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, jobq.Executor]]:
    db = tmp_path_factory.mktemp("stdlib-ex") / "jobs.db"
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as std:
        jex = jobq.Executor(2, db=db)
        try:
            yield std, jex
        finally:
            jex.shutdown()


def raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - what the call raised is the subject
        return exc
    raise AssertionError("no exception raised")


def shape(exc: BaseException) -> tuple[str, tuple[Any, ...], str, str]:
    """What a caller sees: class name, args (tuples as lists: JSON), message, the cause's kind."""
    args = tuple(list(a) if isinstance(a, tuple) else a for a in exc.args)
    cause = type(exc.__cause__).__name__.lstrip("_") if exc.__cause__ is not None else ""
    return type(exc).__name__, args, str(exc), cause


CASES = [
    (stack_tasks.raise_value, ()),
    (stack_tasks.raise_key, ("order-7",)),
    (stack_tasks.raise_file_not_found, ("/no/such/file",)),
    (stack_tasks.raise_order, (7,)),
]


@pytest.mark.parametrize(("fn", "args"), CASES, ids=[fn.__name__ for fn, _ in CASES])
def test_pool_apply_raises_the_jobs_own_exception(pools: tuple[Any, jobq.Pool], fn: Any, args: tuple[Any, ...]) -> None:
    mp, jp = pools
    theirs = raised(lambda: mp.apply(fn, args))
    ours = raised(lambda: jp.apply(fn, args))
    assert shape(ours) == shape(theirs)
    assert isinstance(ours, type(theirs)) and isinstance(ours, jobq.JobFailed)
    assert fn.__name__ in str(ours.__cause__)  # the worker's traceback
    assert ours.job_id > 0 and ours.error_type == type(theirs).__name__
    if isinstance(theirs, OSError):
        assert (ours.errno, ours.filename) == (theirs.errno, theirs.filename)  # type: ignore[attr-defined]
    # apply_async(...).get() and Executor.submit(...).result() alike
    assert shape(raised(lambda: jp.apply_async(fn, args).get(timeout=60))) == shape(theirs)


@pytest.mark.parametrize(("fn", "args"), CASES, ids=[fn.__name__ for fn, _ in CASES])
def test_future_result_raises_the_jobs_own_exception(
    executors: tuple[Any, jobq.Executor], fn: Any, args: tuple[Any, ...]
) -> None:
    std, jex = executors
    theirs = raised(lambda: std.submit(fn, *args).result(timeout=60))
    ours = raised(lambda: jex.submit(fn, *args).result(timeout=60))
    assert shape(ours) == shape(theirs)
    assert isinstance(ours, jobq.JobFailed)
    ours_map = raised(lambda: list(jex.map(stack_tasks.fail_on, range(5))))
    theirs_map = raised(lambda: list(std.map(stack_tasks.fail_on, range(5))))
    assert shape(ours_map) == shape(theirs_map)


def test_map_and_map_async_error_callback(pools: tuple[Any, jobq.Pool]) -> None:
    mp, jp = pools
    assert shape(raised(lambda: jp.map(stack_tasks.fail_on, range(6)))) == shape(
        raised(lambda: mp.map(stack_tasks.fail_on, range(6)))
    )
    got: dict[str, BaseException] = {}
    done = {"mp": threading.Event(), "jobq": threading.Event()}

    def callback(name: str) -> Callable[[BaseException], None]:
        def cb(exc: BaseException) -> None:
            got[name] = exc
            done[name].set()

        return cb

    theirs = mp.map_async(stack_tasks.fail_on, range(6), error_callback=callback("mp"))
    ours = jp.map_async(stack_tasks.fail_on, range(6), error_callback=callback("jobq"))
    assert done["mp"].wait(60) and done["jobq"].wait(60)
    assert shape(got["jobq"]) == shape(got["mp"])
    assert shape(raised(lambda: ours.get(60))) == shape(raised(lambda: theirs.get(60)))
    # a chunked map names the failing item as well
    chunked = raised(lambda: jp.map(stack_tasks.fail_on, range(20), chunksize=4))
    assert shape(chunked) == shape(raised(lambda: mp.map(stack_tasks.fail_on, range(20), chunksize=4)))
    assert chunked.index == 3  # type: ignore[attr-defined]


def test_what_cannot_be_rebuilt_stays_job_failed(pools: tuple[Any, jobq.Pool]) -> None:
    _, jp = pools
    for fn in (stack_tasks.raise_needs_keyword, stack_tasks.raise_with_object_args):
        exc = raised(lambda fn=fn: jp.apply(fn))
        assert type(exc) is jobq.JobFailed
        assert exc.error_type in ("NeedsKeyword", "OrderError")
    # a class whose module the caller never imported is not imported for it
    exc = raised(lambda: jp.apply("json:loads", ("{",)))
    assert type(exc).__name__ == "JSONDecodeError" and isinstance(exc, ValueError)  # json is imported here
    assert isinstance(exc, jobq.JobFailed)


def test_imap_over_an_iterable_that_raises(pools: tuple[Any, jobq.Pool]) -> None:
    mp, jp = pools

    def run(pool: Any, method: str) -> tuple[list[Any], BaseException, Any]:
        it = getattr(pool, method)(stack_tasks.square, stack_tasks.items_then_error(4))
        out: list[Any] = []
        try:
            for value in it:
                out.append(value)
        except Exception as exc:  # noqa: BLE001 - the iterable's error, compared below
            return out, exc, it
        raise AssertionError("the iterable's error was not raised")

    for method in ("imap", "imap_unordered"):
        theirs, their_exc, their_it = run(mp, method)
        ours, our_exc, our_it = run(jp, method)
        assert shape(our_exc) == shape(their_exc) == ("KeyError", ("the iterable broke",), "'the iterable broke'", "")
        assert type(raised(lambda it=our_it: next(it))) is StopIteration  # then the iterator is done
        if method == "imap":
            assert ours == theirs == [0, 1, 4, 9]
            assert type(raised(lambda it=their_it: next(it))) is StopIteration
        else:  # multiprocessing may raise before the last results come; jobq yields them all first
            assert set(theirs) <= {0, 1, 4, 9} and sorted(ours) == [0, 1, 4, 9]
    # map raises the iterable's error at once, before anything is submitted
    before = jp.queue.store.count_jobs()
    assert shape(raised(lambda: jp.map(stack_tasks.square, stack_tasks.items_then_error(2)))) == shape(
        raised(lambda: mp.map(stack_tasks.square, stack_tasks.items_then_error(2)))
    )
    assert jp.queue.store.count_jobs() == before


RESOURCES_SCRIPT = """
import gc, os, threading, warnings
import jobq
from tests import stack_tasks

def fds():
    return sorted(os.listdir("/proc/self/fd"))

warnings.simplefilter("error", ResourceWarning)
db = {db!r}
jobq.Queue(db).close()
before = fds()
with jobq.Pool(2, db=db) as pool:
    assert pool.apply(stack_tasks.square, (3,)) == 9
    assert pool.map(stack_tasks.square, range(5)) == [0, 1, 4, 9, 16]
    assert list(pool.imap_unordered(stack_tasks.square, range(3)))
pool = jobq.Pool(2, db=db)
pool.map_async(stack_tasks.square, range(3)).get(60)
pool.close()
pool.join()
pool = jobq.Pool(2, db=db)
pool.apply_async(stack_tasks.square, (2,)).get(60)
pool.terminate()
pool.join()
executor = jobq.Executor(2, db=db)
assert executor.submit(stack_tasks.square, 4).result(60) == 16
executor.shutdown()
del pool, executor
gc.collect()
assert fds() == before, (before, fds())
assert threading.enumerate() == [threading.main_thread()], threading.enumerate()
print("clean")
"""


def test_pools_release_every_socket_pipe_and_thread(tmp_path: Path) -> None:
    script = tmp_path / "resources.py"
    script.write_text(RESOURCES_SCRIPT.format(db=str(tmp_path / "jobs.db")))
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", str(script)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"
    assert "ResourceWarning" not in proc.stderr, proc.stderr
