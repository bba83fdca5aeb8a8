"""The shapes of the standard library, made durable: :class:`Process`, :class:`Pool`,
:class:`Executor`, and the supervisor they embed for their life (``embedded``).

Imports ``client`` and below.
"""
