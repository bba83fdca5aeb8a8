"""Durability you can choose (issue 12): ``durability = "normal" | "full"`` reaches every
connection jobq opens, on SQLite and PostgreSQL. (What it costs: scripts/bench.py.)"""

from __future__ import annotations

import pytest

import jobq
from jobq.store import open_store

SQLITE_SYNC = {"normal": 1, "full": 2}  # PRAGMA synchronous: NORMAL = 1, FULL = 2


@pytest.mark.parametrize("mode", ["normal", "full"])
def test_sqlite_synchronous_follows_durability(tmp_path, mode: str) -> None:
    db = str(tmp_path / "jobs.db")
    q = jobq.Queue(db, config=jobq.load_settings(environ={"JOBQ_DURABILITY": mode}, overrides={"db": db}))
    assert q.settings.durability == mode
    assert q.store._read("PRAGMA synchronous")[0][0] == SQLITE_SYNC[mode]
    # The supervisor's and the workers' own stores are opened the same way.
    runner = open_store(db, 5.0, mode)
    runner.tune_for_runner()
    assert runner._read("PRAGMA synchronous")[0][0] == SQLITE_SYNC[mode]
    with jobq.Supervisor(q, concurrency=1):
        assert q.submit("tests.tasks:add", args=(1, 2)).join(timeout=30) == 3


@pytest.mark.parametrize("mode", ["normal", "full"])
def test_postgres_synchronous_commit_follows_durability(pg_url: str, mode: str) -> None:
    submitter = open_store(pg_url, 5.0, mode)
    runner = open_store(pg_url, 5.0, mode)
    runner.tune_for_runner()  # what supervisors and workers do with their connections
    submit_setting = submitter._read("SHOW synchronous_commit")[0][0]
    runner_setting = runner._read("SHOW synchronous_commit")[0][0]
    if mode == "full":
        assert (submit_setting, runner_setting) == ("on", "on")
    else:
        assert runner_setting == "off"  # claims, heartbeats and results
    submitter.close()
    runner.close()


def test_durability_is_validated() -> None:
    with pytest.raises(jobq.ConfigError) as info:
        jobq.load_settings(environ={"JOBQ_DURABILITY": "paranoid"})
    assert info.value.field == "durability"
