"""Bad input: every rejected job definition leaves the database untouched (API, CLI, config)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobq
from jobq.cli import main as cli_main

ADD = "tests.tasks:add"


@pytest.fixture
def small_queue(tmp_path: Path) -> jobq.Queue:
    path = str(tmp_path / "small.db")
    return jobq.Queue(path, config=jobq.Settings(db=path, max_payload_bytes=100))


def rejected(q: jobq.Queue, field: str | tuple[str, ...], target: Any = ADD, **kwargs: Any) -> jobq.ValidationError:
    """Submit must raise ValidationError naming ``field`` and add no job."""
    before = q.store.count_jobs()
    with pytest.raises(jobq.ValidationError) as info:
        q.submit(target, **kwargs)
    fields = (field,) if isinstance(field, str) else field
    assert info.value.field in fields, f"field {info.value.field!r}, expected {fields}: {info.value}"
    assert str(info.value).strip()
    assert q.store.count_jobs() == before
    return info.value


def _case_id(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = "huge"
    return f"{type(value).__name__}:{text[:20]}"


@pytest.fixture
def seeded(queue: jobq.Queue) -> jobq.Queue:
    queue.submit(ADD, args=(1,))
    return queue


# -- one case at a time ----------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "",
        "add",
        "tests.tasks",
        "tests.tasks:",
        ":add",
        "tests.tasks:add:x",
        "tests tasks:add",
        "1tests:add",
        "tests..tasks:add",
        "tests.tasks:add()",
        "tests/tasks:add",
        "tests.tasks:add ",
        5,
        None,
        b"tests.tasks:add",
        ["a:b"],
    ],
)
def test_bad_target_format(seeded: jobq.Queue, target: Any) -> None:
    rejected(seeded, "target", target)
    rejected(seeded, "target", target, check=False)


@pytest.mark.parametrize(
    "target", ["no_such_module_xyz:fn", "tests.tasks:no_such_function", "tests.no_such_module:add", "os:sep", "os.path:sep"]
)
def test_unimportable_or_uncallable_target(seeded: jobq.Queue, target: str) -> None:
    rejected(seeded, "target", target)


def test_unimportable_target_accepted_without_check(seeded: jobq.Queue) -> None:
    job = seeded.submit("no_such_module_xyz:fn", check=False)
    assert seeded.record(job.id).target == "no_such_module_xyz:fn"
    assert seeded.store.count_jobs() == 2


def test_lambda_target_rejected(seeded: jobq.Queue) -> None:
    rejected(seeded, "target", lambda: 1)


@pytest.mark.parametrize(
    "args",
    [
        [{1, 2}],
        {1, 2},
        [object()],
        [float("nan")],
        [float("inf")],
        [[1, [2, -math.inf]]],
        [b"bytes"],
        [10**5000],  # too many digits for JSON text
        [{"k": {3}}],
        [{(1, 2): "tuple key"}],
        "a string",
        5,
        {"a": 1},
    ],
    ids=_case_id,
)
def test_args_not_json(seeded: jobq.Queue, args: Any) -> None:
    rejected(seeded, "args", args=args)


@pytest.mark.parametrize(
    "kwargs",
    [
        [1, 2],
        "x=1",
        5,
        {"x": {1, 2}},
        {"x": float("nan")},
        {"x": object()},
        {1: 2},
        {None: 1},
        {(1, 2): 3},
        {"ok": 1, 2.5: 1},
    ],
    ids=_case_id,
)
def test_kwargs_not_a_str_keyed_json_object(seeded: jobq.Queue, kwargs: Any) -> None:
    rejected(seeded, "kwargs", kwargs=kwargs)


@pytest.mark.parametrize("queue_name", ["", "q" * 65, "with space", "slash/name", "tab\t", "é", "a:b", "new\nline", 5, None])
def test_bad_queue_name(seeded: jobq.Queue, queue_name: Any) -> None:
    rejected(seeded, "queue", queue=queue_name)


@pytest.mark.parametrize("queue_name", ["q" * 64, "a", "A-b_c.9"])
def test_good_queue_names(seeded: jobq.Queue, queue_name: str) -> None:
    job = seeded.submit(ADD, args=(1,), queue=queue_name)
    assert seeded.record(job.id).queue == queue_name


@pytest.mark.parametrize("priority", ["1", "high", 1.0, 2.5, True, False, [1], float("nan"), 2**63])
def test_bad_priority(seeded: jobq.Queue, priority: Any) -> None:
    rejected(seeded, "priority", priority=priority)


def test_payload_limit(small_queue: jobq.Queue) -> None:
    small_queue.submit(ADD, args=("x" * 50,))
    assert small_queue.store.count_jobs() == 1
    err = rejected(small_queue, "args", args=("x" * 200,))
    assert "max_payload_bytes" in str(err) or "100" in str(err)
    rejected(small_queue, ("args", "kwargs"), args=(1,), kwargs={"y": "x" * 200})


def test_depends_on_unknown_id(seeded: jobq.Queue) -> None:
    rejected(seeded, "depends_on", depends_on=[987654])
    rejected(seeded, "depends_on", depends_on=987654)
    rejected(seeded, "depends_on", depends_on=["not-an-id"])
    existing = seeded.get(1)
    rejected(seeded, "depends_on", depends_on=[existing, 987654])  # all or nothing


def test_bad_name(seeded: jobq.Queue) -> None:
    rejected(seeded, "name", name=5)
    rejected(seeded, "name", name=["x"])


# -- property-based: API ---------------------------------------------------------------
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\x00b", -0.0]),  # lone surrogate, NUL
)
_weird = st.one_of(st.binary(max_size=5), st.builds(object), st.frozensets(st.integers(), max_size=3), st.complex_numbers())
_values = st.recursive(
    st.one_of(_json_scalars, _weird),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), children, max_size=4),
    ),
    max_leaves=12,
)
_identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_targets = st.one_of(
    st.builds(lambda m, f: f"{'.'.join(m)}:{f}", st.lists(_identifier, min_size=1, max_size=3), _identifier),
    st.text(max_size=30),
    st.sampled_from([ADD, "tests.tasks:echo", "tests.tasks:add:x", ":", "a:", ":b"]),
    st.integers(),
    st.none(),
)
_queues = st.one_of(
    st.just("default"), st.from_regex(r"[A-Za-z0-9_.\-]{0,70}", fullmatch=True), st.text(max_size=70), st.integers(), st.none()
)
_priorities = st.one_of(
    st.none(), st.integers(min_value=-(2**40), max_value=2**40), st.floats(), st.booleans(), st.text(max_size=5)
)
_args = st.one_of(st.lists(_values, max_size=5), st.tuples(_values), _values)
_kwargs = st.one_of(
    st.none(), st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), _values, max_size=4), _values
)
_names = st.one_of(st.none(), st.text(max_size=40), st.integers(), st.sampled_from(["\ud800", "a\x00b", "n" * 501]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=_targets, args=_args, kwargs=_kwargs, queue_name=_queues, priority=_priorities, name=_names)
def test_random_job_definitions(
    small_queue: jobq.Queue, target: Any, args: Any, kwargs: Any, queue_name: Any, priority: Any, name: Any
) -> None:
    q = small_queue
    before = q.store.count_jobs()
    try:
        job = q.submit(target, args=args, kwargs=kwargs, queue=queue_name, priority=priority, name=name, check=False)
    except jobq.ValidationError as exc:
        assert exc.field, exc
        assert q.store.count_jobs() == before
        return
    # Accepted: it reads back exactly as a JSON round trip of what was given.
    assert q.store.count_jobs() == before + 1
    rec = q.record(job.id)
    assert rec.state == "queued"
    assert rec.target == target
    assert rec.queue == queue_name
    assert rec.priority == (priority if priority is not None else 0)
    assert type(rec.priority) is int
    assert rec.name == name
    given_args = list(args) if isinstance(args, tuple) else args
    assert rec.args == json.loads(json.dumps(given_args))
    assert rec.kwargs == (kwargs or {})  # keyword names are strings; nothing is renamed
    assert q.get(str(job.id)).id == job.id


# -- property-based: CLI ---------------------------------------------------------------
_option_names = st.sampled_from(
    [
        "--kwargs",
        "--queue",
        "--priority",
        "--name",
        "--no-check",
        "--timeout",
        "--retries",
        "--delay",
        "--json",
        "--key",
        "--after",
        "--at",
        "--result-ttl",
        "--retry-backoff",
        "--bogus",
        "-x",
        "--",
    ]
)
_tokens = st.one_of(
    _option_names,
    st.sampled_from(
        [
            ADD,
            "tests.tasks:echo",
            "nope.mod:fn",
            "1",
            "-1",
            "1.5",
            "null",
            "[1,2]",
            '{"a":1}',
            '{"a":',
            "NaN",
            "Infinity",
            "",
            "9" * 30,
            "true",
            "\udcff",
            "--kwargs={}",
            "--priority=7",
        ]
    ),
    st.text(max_size=15).filter(lambda s: "\x00" not in s),
)


@settings(max_examples=100, deadline=None)
@given(argv=st.lists(_tokens, max_size=8))
def test_random_cli_submit_arguments(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "cli.db")
        before = jobq.Queue(db).store.count_jobs()
        result = CliRunner().invoke(cli_main, ["--db", db, "submit", *argv], catch_exceptions=True)
        output = result.output
        assert result.exit_code in (0, 2), f"exit {result.exit_code} for {argv!r}:\n{output}\n{result.exception!r}"
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in output
        after = jobq.Queue(db).store.count_jobs()
        if result.exit_code == 2:
            assert after == before, f"{argv!r} failed but added a job"
        else:
            assert after - before in (0, 1)


# -- settings --------------------------------------------------------------------------
def test_load_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf.toml"
    config.write_text("lease_seconds = 11\nheartbeat_seconds = 2\ngrace_seconds = 5\nretries = 4\nmax_output_bytes = 100\n")
    environ = {"JOBQ_HEARTBEAT_SECONDS": "3", "JOBQ_GRACE_SECONDS": "6", "JOBQ_RETRIES": "5"}
    s = jobq.load_settings(config, overrides={"grace_seconds": 7, "retries": None}, environ=environ)
    assert s.grace_seconds == 7  # flag > env > file
    assert s.heartbeat_seconds == 3  # env > file
    assert s.retries == 5  # a None flag does not override
    assert s.lease_seconds == 11  # file > default
    assert s.max_output_bytes == 100
    assert s.kill_grace_seconds == jobq.Settings().kill_grace_seconds  # default
    # Without an explicit file, JOBQ_CONFIG names it.
    s = jobq.load_settings(environ={"JOBQ_CONFIG": str(config)})
    assert s.lease_seconds == 11 and s.heartbeat_seconds == 2
    # No file at all: defaults; then ./jobq.toml is read when present.
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    assert jobq.load_settings(environ={}).lease_seconds == jobq.Settings().lease_seconds
    (here / "jobq.toml").write_text("lease_seconds = 13\n")
    assert jobq.load_settings(environ={}).lease_seconds == 13
    assert jobq.load_settings(environ={"JOBQ_LEASE_SECONDS": "14"}).lease_seconds == 14


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('heartbeat_seconds = "soon"\n', "heartbeat_seconds"),
        ("concurrency = 0\n", "concurrency"),
        ("max_payload_bytes = -5\n", "max_payload_bytes"),
        ('start_method = "teleport"\n', "start_method"),
        ("unknown_key = 1\n", "unknown_key"),
        ("[queues.emails]\nretries = -1\n", "retries"),
    ],
)
def test_bad_toml_value_raises_config_error(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(jobq.ConfigError) as info:
        jobq.load_settings(config, environ={})
    assert key in (info.value.field or "") or key in str(info.value), str(info.value)


def test_bad_env_value_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(jobq.ConfigError) as info:
        jobq.load_settings(environ={"JOBQ_CONCURRENCY": "many"}, overrides={"db": str(tmp_path / "x.db")})
    assert "concurrency" in str(info.value)


def test_bad_toml_syntax_raises_config_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("lease_seconds = = 3\n")
    with pytest.raises(jobq.ConfigError):
        jobq.load_settings(config, environ={})
    with pytest.raises(jobq.ConfigError):
        jobq.load_settings(tmp_path / "missing.toml", environ={})
