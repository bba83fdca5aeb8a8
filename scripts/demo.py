"""A short end-to-end demo of jobq on a SQLite file.

It submits the classic multiprocessing example (five jobs that each print ``Worker: N``)
plus a small map/reduce, runs a supervisor with two worker processes until every job has
finished, and shows the status, a result and a job's captured output.

    python scripts/demo.py [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile

import jobq
from jobq.examples import worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database file (default: a new one in a temporary directory)")
    options = parser.parse_args()
    db = options.db or os.path.join(tempfile.mkdtemp(prefix="jobq-demo-"), "demo.db")
    # The supervisor logs each line a job prints, prefixed with the job's id.
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    q = jobq.Queue(db)
    print(f"database: {db}")
    jobs = [q.submit(worker, args=(i,), name=f"worker-{i}") for i in range(5)]
    squares = q.map("jobq.examples:square", range(1, 11))
    total = q.submit("jobq.examples:total", depends_on=squares, pass_results=True)
    print(f"submitted jobs {', '.join(str(j.id) for j in jobs)}, group {squares.id} and job {total.id}")

    with jobq.Supervisor(q, concurrency=2):
        results = [j.join(timeout=30) for j in jobs]
        print("worker results:", results)
        print("squares:", squares.join(timeout=30))
        print("sum of squares 1..10:", total.join(timeout=30))

    status = q.status()
    print("status:", json.dumps(status["counts"]))
    print(f"result of job {jobs[3].id}:", json.dumps(q.get(jobs[3].id).result))
    print(f"output of job {jobs[3].id}:", q.logs(jobs[3].id).strip())
    assert status["counts"]["succeeded"] == len(jobs) + len(squares) + 1, status


if __name__ == "__main__":
    main()
