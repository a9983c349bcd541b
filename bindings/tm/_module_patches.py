"""Patches the adapters apply to a framework's module: now if it is imported, else once it is.

Both adapters change a few classes of the frameworks a server runs on (twisted.words' realm,
Twisted's DeferredQueue, websockets' protocol: their instances are shared by the connections of
a server). A program may import such a module after the reactor or loop is made (`twistd words`
imports the service after installing the reactor), so a module not yet imported is patched when
it is: a finder ahead of the others on `sys.meta_path` finds nothing itself, but wraps the loader
that the others find for a listed module so that the patches run once the module's code has.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from types import ModuleType
from typing import Callable, Iterable

Patch = Callable[[ModuleType], None]

_lock = threading.Lock()
# module name -> the patches it waits for; a module leaves once patched.
_waiting: dict[str, list[Patch]] = {}
# (module name, patch) of every patch asked for, applied or waiting: each is applied once.
_asked: set[tuple[str, Patch]] = set()


def when_imported(names: Iterable[str], patch: Patch) -> None:
    """Calls patch(module) for each named module: at once if it is imported, else right after it
    is. Each (module, patch) pair once: a second call with the same patch does nothing."""
    for name in names:
        with _lock:
            if (name, patch) in _asked:
                continue
            _asked.add((name, patch))
            module = sys.modules.get(name)
            if module is None:
                _waiting.setdefault(name, []).append(patch)
                if _finder not in sys.meta_path:
                    sys.meta_path.insert(0, _finder)
                continue
        patch(module)


def _take(name: str) -> list[Patch]:
    with _lock:
        return _waiting.pop(name, [])


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec

        class PatchingLoader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                for patch in _take(module.__name__):
                    patch(module)

            def __getattr__(self, name):  # resource readers and the like: the real loader's
                return getattr(loader, name)

        spec.loader = PatchingLoader()
        return spec


_finder = _PatchOnImport()

__all__ = ["when_imported"]
