"""Configuration errors name the file and the key (one line, exit 2), and ``jobq --version``
reports the backend of ``--db`` / ``--config`` whatever the order of the options. Real
subprocesses, real files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import jobq
from tests.conftest import _env

pytestmark = pytest.mark.timeout(60)

PG = "postgresql://nobody@127.0.0.1:9/none"  # never contacted: --version does not connect


def jobq_cmd(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m jobq ARGS`` run in ``cwd``, with no JOBQ_* of the caller's but ``env``."""
    full = {k: v for k, v in _env().items() if not k.startswith("JOBQ_")}
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args],
        cwd=cwd,
        env={**full, **(env or {})},
        capture_output=True,
        text=True,
        timeout=50,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr of a usage error (exit 2, nothing on stdout), without ``Error: ``."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0].removeprefix("Error: ")


# -- configuration errors ---------------------------------------------------------------------
BAD_FILES = [
    ("0=0\n", "jobq.toml: unknown key '0'"),
    ("zzz = 3\n", "jobq.toml: unknown key 'zzz'"),
    ("[queues.emails]\nbogus = 1\n", "jobq.toml: unknown key 'queues.emails.bogus'"),
    ("[queues]\nemails = 1\n", "jobq.toml: key 'queues.emails': expected a table"),
    ("queues = 3\n", "jobq.toml: key 'queues': expected a table"),
    ("[schedules]\nname = 'a'\n", "jobq.toml: key 'schedules': expected an array"),
    ('[queues."no spaces"]\n', "jobq.toml: key 'queues': bad queue name 'no spaces'"),
    ('heartbeat_seconds = "soon"\n', "jobq.toml: key 'heartbeat_seconds': not a duration: 'soon'"),
    ("[queues.emails]\nretries = -1\n", "jobq.toml: key 'queues.emails.retries': "),
    ("lease_seconds = = 3\n", "jobq.toml: not valid TOML: "),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
@pytest.mark.parametrize("how", ["--config", "found in the working directory"])
def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key(tmp_path: Path, text: str, expected: str, how: str) -> None:
    (tmp_path / "jobq.toml").write_text(text)
    db = tmp_path / "jobs.db"
    config = ["--config", "jobq.toml"] if how == "--config" else []
    line = one_error_line(jobq_cmd(tmp_path, "--db", str(db), *config, "status"))
    assert line.startswith(expected), line
    assert not db.exists(), "the database was created although the configuration was refused"


def test_the_api_names_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text("retries = 2\n0 = 0\n")
    with pytest.raises(jobq.ConfigError) as info:
        jobq.load_settings(config, environ={})
    assert str(info.value) == f"{config}: unknown key '0'"
    assert (info.value.field, info.value.source) == ("0", str(config))


def test_a_value_from_the_environment_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text("concurrency = 2\n")
    with pytest.raises(jobq.ConfigError) as info:
        jobq.load_settings(config, environ={"JOBQ_CONCURRENCY": "0"})
    assert info.value.source is None and str(config) not in str(info.value)
    assert info.value.field == "concurrency"
    # ... and a good value from the environment hides the file's bad one.
    config.write_text("concurrency = 0\n")
    assert jobq.load_settings(config, environ={"JOBQ_CONCURRENCY": "3"}).concurrency == 3


# -- jobq --version, either order ------------------------------------------------------------
def version(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = jobq_cmd(cwd, *args, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.strip()


def test_version_reports_the_backend_of_db_whatever_the_order(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    q = jobq.Queue(str(db))
    q.submit("tests.tasks:add", (1, 2))  # a real SQLite file of jobq's
    # Closed now, not whenever the garbage collector gets to it: the last connection to close
    # checkpoints the WAL into the file, which would change it under the check below.
    q.close()
    before = db.stat().st_mtime_ns, db.stat().st_size
    sqlite_line = f"jobq {jobq.__version__}, backend sqlite (SQLite {sqlite3.sqlite_version})"
    pg_line = f"jobq {jobq.__version__}, backend postgresql"
    pg_config = tmp_path / "pg.toml"
    pg_config.write_text(f'db = "{PG}"\n')
    # The default would be PostgreSQL (from the environment, or from the config file): --db wins.
    for env, extra in (({"JOBQ_DB": PG}, ()), ({}, ("--config", str(pg_config)))):
        assert version(tmp_path, "--version", "--db", str(db), *extra, env=env) == sqlite_line
        assert version(tmp_path, "--db", str(db), "--version", *extra, env=env) == sqlite_line
        assert version(tmp_path, *extra, "--version", "--db", str(db), env=env) == sqlite_line
    # The default is SQLite: --db (or the config file's db) names PostgreSQL.
    assert version(tmp_path, "--version", "--db", PG) == pg_line
    assert version(tmp_path, "--db", PG, "--version") == pg_line
    assert version(tmp_path, "--version", "--config", str(pg_config)) == pg_line
    assert version(tmp_path, "--config", str(pg_config), "--version") == pg_line
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before  # --version did not open it
    assert jobq.Queue(str(db)).store.count_jobs() == 1
