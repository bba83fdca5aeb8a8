"""What a program that submits and waits uses: :class:`Queue` (``queue``), the handles it
returns (``handles``: :class:`Job`, :class:`Group`), waiting for many jobs at once
(``waiting``), asyncio (``aio``) and the ``@q.task`` decorator (``decorator``).

Imports ``core``, ``store``, ``worker`` (chunk layout) and ``runtime`` (schedules).
"""
