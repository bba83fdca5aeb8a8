"""The supervisor and what it runs: the claim/dispatch loop (``dispatch``), periodic duties
(``duties``: heartbeat, sweep, schedules, purge), booking workers' reports (``reports``), the
pool of forked workers (``workerpool``), wake-ups (``notify``), log formatting (``logformat``),
schedules (``schedules``) and running in the background of a program (``background``).

Imports ``core``, ``store`` and ``worker``.
"""
