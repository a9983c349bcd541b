"""Twisted's process-wide caches that make the workers queue on one lock, made per thread.

On a free-threaded CPython 3.13, looking a key up in a dict whose keys are not all ``str`` takes
that dict's lock. twisted.web keeps one such dict for the whole process: ``http_headers``'
header-name cache (``_nameEncoder``, keyed by ``bytes`` and ``str``), which every header
operation of every request reads. With two workers serving twisted.web, a fifth of the server's
samples were threads waiting for that lock or yielding the CPU to the one holding it (``perf``,
docs/TWISTED.md). The reactor gives each worker thread a cache of its own before its workers
start: the same class, the same results, no shared lock.

Only where it pays (more than one worker, no GIL) and only for modules already imported when the
reactor starts running, so that a program that never imports twisted.web does not pay for it.
"""

from __future__ import annotations

import sys
import threading

from tm_twisted._compat import NAME_ENCODER_ATTRIBUTE, NAME_ENCODER_CLASS


class PerThreadNameEncoder:
    """Twisted's ``_NameEncoder`` interface over one ``_NameEncoder`` per thread."""

    def __init__(self, encoder_type: type) -> None:
        self._encoder_type = encoder_type
        self._local = threading.local()

    def encode(self, name: str | bytes) -> bytes:
        encoder = getattr(self._local, "encoder", None)
        if encoder is None:
            encoder = self._local.encoder = self._encoder_type()
        return encoder.encode(name)


def make_per_thread(workers: int, gil_enabled: bool) -> list[str]:
    """Replaces the shared caches of the imported Twisted modules; returns what was replaced."""
    if workers <= 1 or gil_enabled:
        return []
    http_headers = sys.modules.get("twisted.web.http_headers")
    encoder = getattr(http_headers, NAME_ENCODER_ATTRIBUTE, None)
    if encoder is None or type(encoder).__name__ != NAME_ENCODER_CLASS:
        return []
    # twisted.web.http imports the instance by name (`from ... import _nameEncoder`): every
    # module holding that one object gets the replacement.
    per_thread = PerThreadNameEncoder(type(encoder))
    replaced = []
    for name, module in list(sys.modules.items()):
        if getattr(module, NAME_ENCODER_ATTRIBUTE, None) is encoder:
            setattr(module, NAME_ENCODER_ATTRIBUTE, per_thread)
            replaced.append(f"{name}.{NAME_ENCODER_ATTRIBUTE}")
    return sorted(replaced)
