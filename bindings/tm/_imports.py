"""An import inside a transaction makes it inevitable before importlib takes the module's lock.

importlib loads a module holding a lock of that module's (``_ModuleLockManager``), and reading
the module's file is I/O, which makes the transaction inevitable (tm/_io.py): the loading
transaction waits for the inevitable token while holding the module's lock. A transaction that
holds the token and imports the same module then waits for that lock: neither moves. With two
workers on 3.13t a Starlette application served by uvicorn hung so at its first streamed
response, whose handlers import anyio's backend lazily on two strands at once
(tests/python/test_asyncio_differential.py). Taking the token first orders the two waits: a
module's lock is only ever held by the inevitable transaction or by a thread outside any.

``importlib._bootstrap._find_and_load`` is where both the ``import`` statement (once the module
is not found loaded) and ``importlib.import_module`` go to load; a module already loaded costs a
dictionary lookup more.
"""

from __future__ import annotations

import sys

import _frozen_importlib

from tm._core import in_transaction, inevitable, is_inevitable

# typeshed declares none of importlib's private functions.
_original_find_and_load = _frozen_importlib._find_and_load  # type: ignore[attr-defined]


def _needs_loading(name: str) -> bool:
    module = sys.modules.get(name)
    return module is None or bool(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
    )


def _find_and_load(name, import_):
    if in_transaction() and not is_inevitable() and _needs_loading(name):
        inevitable()
    return _original_find_and_load(name, import_)


def install() -> None:
    """Idempotent; called when tm is imported."""
    _frozen_importlib._find_and_load = _find_and_load  # type: ignore[attr-defined]


__all__ = ["install"]
