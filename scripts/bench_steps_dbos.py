"""The DBOS side of the durable-steps benchmark (issue 16), run in a child process so DBOS's
threads and globals stay out of the benchmark: the same workflows as jobq's, DBOS Transact
on SQLite. Prints one JSON object: seconds for one run of N steps, and each 10-step run.

    python scripts/bench_steps_dbos.py DB_PATH N RUNS
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    path, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from dbos import DBOS

    DBOS(config={"name": "jobq-bench", "system_database_url": f"sqlite:///{path}", "log_level": "WARNING"})

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def workflow(count: int) -> int:
        total = 0
        for i in range(count):
            total += noop(i)
        return total

    DBOS.launch()
    try:
        workflow(10)  # schema made, code warm: not timed
        t0 = time.perf_counter()
        assert workflow(n) == n * (n - 1) // 2
        long_run = time.perf_counter() - t0
        short_runs = []
        for _ in range(runs):
            t0 = time.perf_counter()
            workflow(10)
            short_runs.append(time.perf_counter() - t0)
    finally:
        DBOS.destroy()
    print(json.dumps({"long": long_run, "short": short_runs}))


if __name__ == "__main__":
    main()
