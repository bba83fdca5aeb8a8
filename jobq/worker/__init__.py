"""The worker process: its main loop (``main``), the messages it exchanges with its supervisor
(``messages``), the job context a running job sees (``current_job``), the event loop for
``async def`` jobs (``aioloop``) and the chunk runner of chunked maps (``chunks``).

Imports ``core`` and ``store`` only.
"""
