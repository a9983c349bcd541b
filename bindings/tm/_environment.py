"""Settings read from the environment, shared by the Twisted and asyncio adapters."""

from __future__ import annotations

import os


def workers_from_environment(default: int) -> int:
    """The worker count TM_WORKERS asks for (0 means one per core), or `default` when it is unset.

    A value that is not a whole number, or is negative, raises ValueError naming the variable.
    """
    value = os.environ.get("TM_WORKERS")
    if value is None:
        return default
    try:
        workers = int(value)
    except ValueError:
        raise ValueError(f"TM_WORKERS must be a whole number, not {value!r}") from None
    if workers < 0:
        raise ValueError(f"TM_WORKERS must not be negative, not {workers}")
    return workers
