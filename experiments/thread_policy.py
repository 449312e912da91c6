"""Thread policy of every command (README "Threads on a shared machine").

OpenMP threads that finish a parallel region first normally spin, waiting for the others; when
another process holds one of the cores, the waiting thread burns the time slice the late thread
needs, and 2 torch threads ran 3-10x slower than 1 on the 2-core machine (`make bench-threads`).
With OMP_WAIT_POLICY=PASSIVE they sleep instead: 2 threads were then never slower than ~1.2x one
thread, and faster when a core was free. The variable is read once, when torch loads its OpenMP
runtime, so `apply_defaults()` must run before torch is imported; a value the user exported wins.
"""

from __future__ import annotations

import os

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Environment defaults set before torch is imported (never overriding the user's)."""


def apply_defaults() -> None:
    """Set DEFAULTS in os.environ where unset (call before `import torch`)."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
