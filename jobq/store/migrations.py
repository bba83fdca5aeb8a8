"""Versioned schema of the SQLite store. ``PRAGMA user_version`` holds the version applied;
each entry moves the schema one version on. Never edit a released entry: append a new one."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT,
                target TEXT NOT NULL,
                args TEXT NOT NULL DEFAULT '[]',
                kwargs TEXT NOT NULL DEFAULT '{}',
                queue TEXT NOT NULL DEFAULT 'default',
                priority INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL DEFAULT 1,
                retries INTEGER NOT NULL DEFAULT 0,
                retry_backoff REAL NOT NULL DEFAULT 1,
                retry_backoff_max REAL NOT NULL DEFAULT 300,
                timeout REAL,
                run_at REAL NOT NULL,
                owner TEXT,
                worker INTEGER,
                lease_expires_at REAL,
                result TEXT,
                error TEXT,
                created_at REAL NOT NULL,
                started_at REAL,
                finished_at REAL,
                key TEXT,
                group_id INTEGER,
                group_index INTEGER,
                pass_results INTEGER NOT NULL DEFAULT 0,
                deps_pending INTEGER NOT NULL DEFAULT 0,
                progress REAL,
                progress_message TEXT,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                result_ttl REAL
            )""",
            # Exactly what the claim reads, over runnable jobs only.
            "CREATE INDEX jobs_claim ON jobs(priority DESC, run_at, id) WHERE state = 'queued'",
            "CREATE INDEX jobs_scheduled ON jobs(run_at) WHERE state = 'scheduled'",
            "CREATE INDEX jobs_running ON jobs(owner) WHERE state = 'running'",
            "CREATE INDEX jobs_key ON jobs(key) WHERE key IS NOT NULL",
            "CREATE INDEX jobs_group ON jobs(group_id, group_index) WHERE group_id IS NOT NULL",
            "CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL",
            "CREATE INDEX jobs_ttl ON jobs((finished_at + result_ttl)) WHERE result_ttl IS NOT NULL",
            # No plain index on state: the planner would prefer it to the partial claim index.
            """CREATE TABLE job_deps (
                job_id INTEGER NOT NULL,
                depends_on INTEGER NOT NULL,
                position INTEGER NOT NULL,
                PRIMARY KEY (job_id, depends_on)
            ) WITHOUT ROWID""",
            "CREATE INDEX job_deps_reverse ON job_deps(depends_on)",
            """CREATE TABLE job_errors (
                job_id INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                error TEXT NOT NULL,
                at REAL NOT NULL,
                PRIMARY KEY (job_id, attempt)
            )""",
            "CREATE TABLE job_output (job_id INTEGER PRIMARY KEY, output TEXT NOT NULL)",
            "CREATE TABLE job_groups (id INTEGER PRIMARY KEY AUTOINCREMENT, size INTEGER NOT NULL, created_at REAL NOT NULL)",
            """CREATE TABLE supervisors (
                id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                concurrency INTEGER NOT NULL,
                queues TEXT,
                started_at REAL NOT NULL,
                heartbeat_at REAL NOT NULL,
                lock_path TEXT
            )""",
            """CREATE TABLE schedules (
                name TEXT PRIMARY KEY,
                target TEXT NOT NULL,
                args TEXT NOT NULL,
                kwargs TEXT NOT NULL,
                queue TEXT NOT NULL,
                cron TEXT,
                every REAL,
                next_run_at REAL NOT NULL,
                last_run_at REAL
            )""",
            # Counts by queue and state kept by triggers, so `jobq status` costs the same
            # with a million jobs in the file as with none.
            """CREATE TABLE job_counts (
                queue TEXT NOT NULL,
                state TEXT NOT NULL,
                n INTEGER NOT NULL,
                PRIMARY KEY (queue, state)
            ) WITHOUT ROWID""",
            """CREATE TRIGGER jobs_counts_insert AFTER INSERT ON jobs BEGIN
                INSERT INTO job_counts(queue, state, n) VALUES (new.queue, new.state, 1)
                ON CONFLICT(queue, state) DO UPDATE SET n = n + 1;
            END""",
            # The two hot moves, queued -> running (claim) and running -> succeeded (finish),
            # are counted by the store once per statement instead (SQLiteStore._count_moves).
            """CREATE TRIGGER jobs_counts_update AFTER UPDATE OF state, queue ON jobs
            WHEN (old.state IS NOT new.state OR old.queue IS NOT new.queue)
            AND NOT (old.queue = new.queue AND ((old.state = 'queued' AND new.state = 'running')
                OR (old.state = 'running' AND new.state = 'succeeded'))) BEGIN
                UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
                INSERT INTO job_counts(queue, state, n) VALUES (new.queue, new.state, 1)
                ON CONFLICT(queue, state) DO UPDATE SET n = n + 1;
            END""",
            """CREATE TRIGGER jobs_counts_delete AFTER DELETE ON jobs BEGIN
                UPDATE job_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
            END""",
        ],
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
