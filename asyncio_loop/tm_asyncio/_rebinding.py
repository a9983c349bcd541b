"""Servers whose handlers rebind a variable that every connection shares.

A handler that keeps a count in a module global (``global hits; hits += 1``) or in a variable of
an enclosing function (``nonlocal hits; hits += 1``) is correct on asyncio's loop, which runs one
callback at a time. In parallel mode two connections' callbacks run at once, and ``hits += 1``
loses updates (99 of 100 in a test of 100 clients); the race reporter does not see closure cells
and is off unless asked for. The loop therefore reads the code of a server's protocol factory
before it serves, and a server found to rebind such a variable runs its connections on the loop's
strand, one callback at a time, with a warning that names the variable and where it is assigned
(tm_asyncio.EventLoop.create_server; docs/ASYNCIO.md, "Parallel mode").

What is read: the factory itself (a function, a class, a bound method, a functools.partial) and,
for asyncio.start_server, the handler behind its factory; each function's nested code (inner
functions, lambdas, comprehensions); the classes and functions of the program's own modules that
the code names as globals or holds in its closure (a factory ``lambda: Proto()`` leads to
``Proto``'s methods), a few levels deep. Code of the standard library, of installed packages and of
tm itself is not read: a framework's module state is its own affair, and reading it would only
turn servers serial for assignments they never make per connection.

What is not seen: mutation of a shared object through its methods or items (``hits.append(1)``,
``counts[key] += 1``), which the race reporter covers for dicts; code reached only through
attributes or calls the analysis cannot resolve statically. Rebinding an attribute of a managed
object (``self.server.hits += 1`` where the loop manages the server, docs/MANAGED_STATE.md) is
transactional and needs no fallback.
"""

from __future__ import annotations

import dis
import functools
import inspect
import sys
import sysconfig
import types
from pathlib import Path

from tm_asyncio._managed import start_server_callback

_GLOBAL_STORES = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})
_CELL_STORES = frozenset({"STORE_DEREF", "DELETE_DEREF"})
# How many hops from the factory (a class from a function naming it, a method from its class...).
_MAX_DEPTH = 4
_OWN_PACKAGES = frozenset({"tm", "tm_asyncio", "tm_twisted", "twisted"})


def shared_rebindings(protocol_factory) -> list[str]:
    """What the code behind protocol_factory rebinds that every connection shares, each as
    ``"global NAME (FILE:LINE)"`` or ``"nonlocal NAME (FILE:LINE)"``; empty when nothing."""
    found: dict[str, None] = {}  # ordered and without repeats
    _visit(protocol_factory, found, set(), _MAX_DEPTH)
    return list(found)


def _visit(obj, found: dict[str, None], seen: set[int], depth: int) -> None:
    if depth < 0 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        _visit(obj.func, found, seen, depth)
        for arg in (*obj.args, *obj.keywords.values()):
            if isinstance(arg, type) or callable(arg):
                _visit(arg, found, seen, depth - 1)
    elif isinstance(obj, types.MethodType):
        # The method only: the owner's other methods run when the code calls them through an
        # attribute, which this reading does not follow.
        _visit(obj.__func__, found, seen, depth)
    elif isinstance(obj, type):
        if not _is_program_code(obj):
            return
        for base in obj.__mro__[1:]:
            _visit(base, found, seen, depth - 1)
        for member in vars(obj).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            elif isinstance(member, property):
                member = member.fget
            if isinstance(member, types.FunctionType):
                _visit(member, found, seen, depth)
    elif isinstance(obj, types.FunctionType):
        handler = start_server_callback(obj)
        if handler is not None:  # asyncio.start_server's factory: what runs is the handler
            _visit(handler, found, seen, depth)
            return
        if not _is_program_code(obj):
            return
        loaded = _read_code(obj.__code__, frozenset(obj.__code__.co_freevars), found)
        for cell in obj.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(contents, type) or callable(contents):
                _visit(contents, found, seen, depth - 1)
        for name in loaded:
            value = obj.__globals__.get(name)
            if isinstance(value, (type, types.FunctionType)):
                _visit(value, found, seen, depth - 1)


def _read_code(
    code: types.CodeType, shared_cells: frozenset[str], found: dict[str, None]
) -> set[str]:
    """Records code's rebinding of globals and of shared_cells: the free variables that the
    function object holding code closes over (bound once, when the server's factory was made).
    Returns the global names the code (its inner functions' included) loads."""
    loaded = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_GLOBAL":
            loaded.add(instruction.argval)
        elif instruction.opname in _GLOBAL_STORES:
            found[f"global {instruction.argval} ({_where(code, instruction)})"] = None
        elif instruction.opname in _CELL_STORES and instruction.argval in shared_cells:
            found[f"nonlocal {instruction.argval} ({_where(code, instruction)})"] = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            # An inner function's cells are its maker's: shared only where they pass through.
            loaded |= _read_code(const, shared_cells & frozenset(const.co_freevars), found)
    return loaded


def _where(code: types.CodeType, instruction: dis.Instruction) -> str:
    line = instruction.positions.lineno if instruction.positions else None
    return f"{code.co_filename}:{line or code.co_firstlineno}"


@functools.cache
def _library_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return tuple(Path(root).resolve() for root in roots)


def _is_program_code(obj) -> bool:
    """Whether obj was defined by the program itself, not the standard library, an installed
    package or tm."""
    module_name = getattr(obj, "__module__", None) or ""
    if module_name.partition(".")[0] in _OWN_PACKAGES | sys.stdlib_module_names:
        return False
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:  # a builtin or extension type: nothing to read
        return False
    if source is None:
        return module_name == "__main__"
    path = Path(source).resolve()
    return not any(path.is_relative_to(root) for root in _library_roots())


__all__ = ["shared_rebindings"]
