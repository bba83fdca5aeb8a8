"""The multiprocessing tutorial's example jobq grew from, run through ``jobq.Process``: the
only change is its first line (``import multiprocessing`` became ``import jobq as
multiprocessing``). Each ``Worker: N`` is a durable job in ./jobq.db (or ``JOBQ_DB``), run by
a supervisor embedded until the processes are joined; ``join()`` prints what it printed."""

import jobq as multiprocessing


def worker(num):
    """thread worker function"""
    print(f"Worker: {num}")


if __name__ == "__main__":
    jobs = []
    for i in range(5):
        p = multiprocessing.Process(target=worker, args=(i,))
        jobs.append(p)
        p.start()
    for j in jobs:
        j.join()
