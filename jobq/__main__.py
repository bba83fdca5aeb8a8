"""``python -m jobq``: the same as the ``jobq`` command."""

from .cli import main

main()
