"""Configuration errors name the file and the key (one line, exit 2). Real subprocesses, real
files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import jobq
from tests.conftest import _env

pytestmark = pytest.mark.timeout(60)


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
