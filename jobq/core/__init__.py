"""The core: what every other layer shares and nothing here imports from above it.

Job states and records (``models``), submit-time validation (``spec``), settings (``config``),
targets and the allow-list (``allow``), typed errors (``errors``), file modes (``fsmodes``) and
a supervisor's presence on this host (``local``: lock files, host identity, the wake-up poke).
"""

__version__ = "0.1.0"
