"""Bad input, property-based (hypothesis): CLI arguments, configuration values and the job
definitions of ``submit --file``. Whatever is refused gets one clear ``Error:`` line and a
non-zero exit, and the database file is byte-for-byte what it was.

The CLI runs in this process (click's runner: the real command, the real store, a real file),
so a few hundred examples take seconds; tests/test_cli.py runs it as a subprocess."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import jobq
from jobq.cli import main
from jobq.core.allow import ENTRY_PATTERN
from jobq.core.config import QUEUE_NAME_PATTERN, Settings, parse_duration
from jobq.core.models import TARGET_PATTERN

PROPS = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Db:
    """A database with a few jobs, settled (WAL checkpointed) so that its bytes can be compared."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        q = jobq.Queue(self.path)
        q.submit("tests.tasks:add", args=(1, 2))
        q.submit("tests.tasks:add", args=(3, 4), queue="other")
        q.store.close()
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.before = self.snapshot()

    def snapshot(self) -> tuple[bytes, bytes]:
        wal = Path(self.path + "-wal")
        return Path(self.path).read_bytes(), wal.read_bytes() if wal.exists() else b""

    def unchanged(self) -> bool:
        return self.snapshot() == self.before


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    yield Db(tmp_path / "jobs.db")


def cli(db: Db, *args: str, env: dict[str, str] | None = None) -> Any:
    env = {"JOBQ_CONFIG": None, **(env or {})}  # type: ignore[dict-item]
    return CliRunner().invoke(main, ["--db", db.path, *args], env=env, catch_exceptions=False)


def assert_refused(db: Db, result: Any, *fields: str) -> None:
    assert result.exit_code != 0, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr  # one clear line
    assert "Traceback" not in result.output
    if fields:
        assert any(f in lines[0] for f in fields), (fields, lines[0])
    assert db.unchanged(), "the database changed although the input was refused"


def _not(predicate: Any) -> Any:
    def bad(value: str) -> bool:
        try:
            return not predicate(value)
        except Exception:
            return True

    return bad


def _int(text: str) -> bool:
    int(text)
    return True


def _duration(text: str) -> bool:
    parse_duration(text)
    return True


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
not_ints = texts.filter(_not(_int))
not_durations = texts.filter(_not(_duration))
bad_targets = texts.filter(lambda t: not re.match(TARGET_PATTERN, t) and not t.startswith("-") and t.strip() != "")
bad_queues = texts.filter(lambda t: not re.match(QUEUE_NAME_PATTERN, t))


# -- CLI arguments -------------------------------------------------------------------------------
@PROPS
@given(
    case=st.one_of(
        st.tuples(st.just("--priority"), not_ints | st.integers().filter(lambda n: abs(n) >= 2**31).map(str)),
        st.tuples(st.just("--retries"), not_ints | st.integers(max_value=-1).map(str)),
        st.tuples(st.sampled_from(["--timeout", "--delay", "--result-ttl", "--retry-backoff"]), not_durations),
        st.tuples(st.just("--queue"), bad_queues),
        st.tuples(st.just("--kwargs"), texts.filter(_not(lambda t: isinstance(json.loads(t), dict)))),
        st.tuples(st.just("--at"), texts),
        st.tuples(st.just("--after"), texts.filter(lambda t: not t.strip().isdigit())),
    )
)
def test_submit_refuses_bad_options(db: Db, case: tuple[str, str]) -> None:
    option, value = case
    result = cli(db, "submit", "tests.tasks:add", "1", f"{option}={value}")
    if option == "--at" and result.exit_code == 0:
        assume(False)  # a valid ISO time: not bad input
    assert_refused(db, result)


@PROPS
@given(target=bad_targets, no_check=st.booleans())
def test_submit_refuses_bad_targets(db: Db, target: str, no_check: bool) -> None:
    result = cli(db, "submit", *(["--no-check"] if no_check else []), target, "1")
    assert_refused(db, result, "target", "TARGET")


@PROPS
@given(
    args=st.one_of(
        st.tuples(st.just("list"), st.sampled_from(["--limit", "--state"]), texts),
        st.tuples(st.sampled_from(["status", "cancel", "result", "logs", "retry"]), texts.filter(lambda t: not t.isdigit())),
        st.tuples(st.just("purge"), st.just("--older-than"), not_durations),
        st.tuples(st.just("health"), st.just("--max-age"), not_durations),
    )
)
def test_other_commands_refuse_bad_arguments(db: Db, args: tuple[str, ...]) -> None:
    command, *rest = args
    if len(rest) == 2 and rest[0].startswith("--"):  # an option and its value
        rest = [f"{rest[0]}={rest[1]}"]
    elif rest and rest[0].startswith("-"):
        rest = ["--", *rest]
    result = cli(db, command, *rest)
    if command == "list" and result.exit_code == 0:
        assume(False)  # e.g. --limit=5: a valid value
    if command == "health":
        assert result.exit_code == 2, result.output
    assert_refused(db, result)


@PROPS
@given(entry=texts.filter(lambda t: not ENTRY_PATTERN.match(t) and "," not in t and not t.isspace()))
def test_worker_start_refuses_bad_allow_entries(db: Db, entry: str) -> None:
    # Refused before the supervisor starts (a valid entry would start one: not generated).
    assert_refused(db, cli(db, "worker", "start", f"--allow={entry}"), "--allow")


# -- configuration values ------------------------------------------------------------------------
SCALARS = [f.name for f in dataclasses.fields(Settings) if f.name not in ("queues", "schedules", "db")]
toml_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    texts,
    st.lists(st.one_of(st.integers(min_value=-5, max_value=5), texts), max_size=3),
)


def _toml(key: str, value: Any) -> str:
    # JSON's literals are TOML's, but for DEL, which TOML wants escaped as well
    text = json.dumps(value, ensure_ascii=False).replace(chr(0x7F), "\\u007f")
    return f"{key} = {text}\n"


@PROPS
@given(key=st.sampled_from(SCALARS), value=toml_values, via=st.sampled_from(["file", "env"]))
def test_bad_config_values_are_refused_naming_the_key(db: Db, tmp_path: Path, key: str, value: Any, via: str) -> None:
    env: dict[str, str] = {}
    config = tmp_path / "jobq.toml"
    if via == "file":
        config.write_text(_toml(key, value), encoding="utf-8")
        env["JOBQ_CONFIG"] = str(config)
    else:
        text = value if isinstance(value, str) else json.dumps(value)
        assume("\x00" not in text)
        env[f"JOBQ_{key.upper()}"] = text
    try:
        jobq.load_settings(environ=env)
    except jobq.ConfigError as exc:
        assert exc.field.split(".")[0] == key, (exc.field, key)
    else:
        assume(False)  # a valid value: not what this test is about
    result = CliRunner().invoke(main, ["--db", db.path, "submit", "tests.tasks:add", "1"], env=env, catch_exceptions=False)
    assert_refused(db, result, key)


@PROPS
@given(text=st.text(max_size=60))
def test_a_config_file_that_is_not_toml_or_not_ours_is_refused(db: Db, tmp_path: Path, text: str) -> None:
    config = tmp_path / "jobq.toml"
    config.write_text(text + "\nno_such_key_here = 1\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["--db", db.path, "--config", str(config), "submit", "tests.tasks:add", "1"], catch_exceptions=False
    )
    assert_refused(db, result, "config", "no_such_key_here", str(config))


# -- submit --file definitions ---------------------------------------------------------------------
GOOD = {"target": "tests.tasks:add", "args": [1, 2]}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
FIELDS = ["target", "args", "kwargs", "queue", "priority", "name", "timeout", "retries", "delay", "run_at", "key"]
definitions = st.dictionaries(st.sampled_from(FIELDS) | texts, json_values, max_size=4)


@PROPS
@given(bad=definitions | json_values, good_before=st.integers(min_value=0, max_value=3))
def test_submit_file_is_all_or_nothing(db: Db, tmp_path: Path, bad: Any, good_before: int) -> None:
    path = tmp_path / "jobs.jsonl"
    lines = [json.dumps(GOOD)] * good_before + [json.dumps(bad)]
    path.write_text("\n".join(lines) + "\n")
    result = cli(db, "submit", "--file", str(path))
    assume(result.exit_code != 0)  # a definition that happens to be valid is not bad input
    assert_refused(db, result)


@PROPS
@given(text=st.text(alphabet=string.printable, min_size=1, max_size=40))
def test_submit_file_lines_that_are_not_json(db: Db, tmp_path: Path, text: str) -> None:
    try:
        json.loads(text)
        assume(False)
    except ValueError:
        pass
    assume(text.strip() and "\n" not in text.strip() and "\r" not in text and "\x0b" not in text and "\x0c" not in text)
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + text + "\n")
    result = cli(db, "submit", "--file", str(path))
    assert_refused(db, result, "not JSON")
