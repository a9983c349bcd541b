"""Settings read from the environment, shared by the Twisted and asyncio adapters."""

from __future__ import annotations

import os
import sys


def workers_from_environment(default: int | None = None) -> int:
    """The worker count TM_WORKERS asks for (0 means one per core), or `default` when it is unset;
    without a default, the count both adapters use: one worker per core where callbacks can run
    in parallel (a free-threaded interpreter), one where the GIL would serialize them anyway.

    A value that is not a whole number, or is negative, raises ValueError naming the variable.
    """
    value = os.environ.get("TM_WORKERS")
    if value is None:
        if default is not None:
            return default
        return 1 if gil_enabled() else 0
    try:
        workers = int(value)
    except ValueError:
        raise ValueError(f"TM_WORKERS must be a whole number, not {value!r}") from None
    if workers < 0:
        raise ValueError(f"TM_WORKERS must not be negative, not {workers}")
    return workers


def gil_enabled() -> bool:
    """Whether this interpreter runs with the GIL (always before CPython 3.13)."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_gil_enabled is None or is_gil_enabled()


def one_strand_from_environment() -> bool:
    """Whether a reactor's events should all share one strand: TM_STRANDS=one or many decides;
    unset, one exactly where the GIL is enabled.

    Under the GIL, callbacks cannot run in parallel, and running them on several strands only
    changes their order from the one a single-threaded reactor has. One strand keeps that order
    (DESIGN.md contract: on a GIL interpreter behaviour equals the stock reactor's). Another
    value raises ValueError naming the variable.
    """
    value = os.environ.get("TM_STRANDS")
    if value is None:
        return gil_enabled()
    if value not in ("one", "many"):
        raise ValueError(f"TM_STRANDS must be 'one' or 'many', not {value!r}")
    return value == "one"


def _probability_and_seed(name: str) -> tuple[float, int] | None:
    """The "probability[:seed]" of environment variable `name`, or None when it is unset. A value
    that does not parse, or a probability outside [0, 1], raises ValueError naming the variable."""
    value = os.environ.get(name)
    if value is None:
        return None
    probability_text, _, seed_text = value.partition(":")
    try:
        probability = float(probability_text)
        seed = int(seed_text) if seed_text else 0
    except ValueError:
        raise ValueError(f"{name} must be probability[:seed], not {value!r}") from None
    if not 0.0 <= probability <= 1.0 or seed < 0:
        raise ValueError(f"{name} needs a probability in [0, 1] and a seed >= 0, not {value!r}")
    return probability, seed


def abort_injection_from_environment() -> None:
    """Sets the test modes TM_ABORT_INJECTION and TM_SCHEDULE_NOISE ask for, each
    "probability[:seed]"; unset, each is left as it is.

    Abort injection (tm.set_abort_injection) aborts that fraction of transaction attempts at a
    point where a real conflict could abort them (a reactor callback's at its commit), to test
    that a program's outcome does not depend on aborts. Schedule noise (tm.set_schedule_noise)
    pauses that fraction of commits at random, to explore other interleavings.
    """
    from tm import _core

    injection = _probability_and_seed("TM_ABORT_INJECTION")
    noise = _probability_and_seed("TM_SCHEDULE_NOISE")
    if injection is not None:
        _core.set_abort_injection(*injection)
    if noise is not None:
        _core.set_schedule_noise(*noise)
