"""Servers whose callbacks rebind or change a variable that every connection shares.

A handler that keeps a count in a module global (``global hits; hits += 1``) or in a variable of
an enclosing function (``nonlocal hits; hits += 1``) is correct on an event loop that runs one
callback at a time. With connections in parallel, two connections' callbacks run at once, and
``hits += 1`` loses updates (99 of 100 in a test of 100 clients); the race reporter does not see
closure cells and is off unless asked for. The adapters therefore read the code behind a server's
protocol factory before it serves, and a server found to do so runs its connections one callback
at a time, with a warning that names the variable and where it is changed (tm_asyncio's
create_server, docs/ASYNCIO.md "Parallel mode"; tm_twisted's listenTCP, docs/MANAGED_STATE.md).

What is read: the factory itself (a function, a class, a bound method, a functools.partial) and,
for asyncio.start_server, the handler behind its factory; each function's nested code (inner
functions, lambdas, comprehensions); the classes and functions of the program's own modules that
the code names as globals or holds in its closure (a factory ``lambda: Proto()`` leads to
``Proto``'s methods), a few levels deep. Code of the standard library, of installed packages and of
tm itself is not read: a framework's module state is its own affair, and reading it would only
turn servers serial for assignments they never make per connection. But the objects a framework's
factory is made with are followed to the program's handlers: what a library function closes over
or a partial holds, the items of containers, and the attributes of installed packages' and the
program's objects (not the standard library's: a logger leads to every logger), at most
_MAX_OBJECTS of them. uvicorn's factory is a closure over its Config, whose application (a
Starlette one) holds its routes, which hold the program's endpoints.

The same holds for a module global that the code changes in place and also reads: a ``dict``,
``list``, ``set``, ``bytearray`` or ``deque`` it stores items in, deletes from or calls a mutating
method of, or a class of the program or an instance of one whose attributes it assigns. The classic chat
keeps its connections in a module-level set that each handler adds itself to, discards itself
from and iterates to broadcast: in parallel mode a handler's ``add`` ran beside another's
iteration (``RuntimeError: Set changed size during iteration``; tests/python/
test_asyncio_shared_rebinding.py). ``counts[key] += 1`` loses updates the same way. A global only
changed in place (``background_tasks.add(task)`` and its ``discard`` as a done callback, the
pattern asyncio's documentation gives) is left alone: each such call is atomic on its own.

What is not seen: changes through another name bound to the shared object (``users = USERS;
users[name] = ...``), through objects reached from a global (``STATE.users[name] = ...``), or in
code reached only through attributes or calls the analysis cannot resolve statically. Rebinding
an attribute of a managed object (``self.server.hits += 1`` where the loop manages the server,
``self.factory.hits += 1`` under Twisted, docs/MANAGED_STATE.md) is transactional and needs no
fallback.
"""

from __future__ import annotations

import collections
import dis
import functools
import inspect
import sys
import sysconfig
import types
from pathlib import Path
from typing import Callable

from tm._core import Object


_GLOBAL_STORES = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})
_CELL_STORES = frozenset({"STORE_DEREF", "DELETE_DEREF"})
# How many hops from the factory (a class from a function naming it, a method from its class...).
_MAX_DEPTH = 4
# How many objects the reading visits at most: the objects a factory is made with lead to a
# framework's whole configuration.
_MAX_OBJECTS = 5000
_TM_PACKAGES = frozenset({"tm", "tm_asyncio", "tm_twisted"})
# Whose code is not read: tm's, and Twisted's, whose objects lead to the program's (a Site's
# resources) but whose own assignments are the reactor's concern.
_OWN_PACKAGES = _TM_PACKAGES | {"twisted"}

# Module globals whose changes in place are looked for (below, _ChangesInPlace).
_CONTAINERS = (dict, list, set, bytearray, collections.deque)
# Their methods that change them.
_MUTATORS = frozenset(
    {
        "add", "append", "appendleft", "clear", "difference_update", "discard", "extend",
        "extendleft", "insert", "intersection_update", "pop", "popitem", "popleft", "remove",
        "reverse", "rotate", "setdefault", "sort", "symmetric_difference_update", "update",
        "__setitem__", "__delitem__", "__iadd__", "__ior__",
    }
)  # fmt: skip
# Instructions that only push: they leave what the stack holds as it was.
_PUSHES_ONLY = frozenset(
    {
        "LOAD_CONST", "LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR",
        "LOAD_FAST_LOAD_FAST", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_NAME",
        "PUSH_NULL", "LOAD_SMALL_INT", "NOP", "RESUME", "EXTENDED_ARG", "KW_NAMES", "PRECALL",
        "CACHE",
    }
)  # fmt: skip
# How many instructions after a global's load the reading follows what becomes of it.
_WINDOW = 24


def shared_rebindings(*factories, unwrap: Callable[[object], object] | None = None) -> list[str]:
    """What the code behind the factories rebinds or changes in place that every connection
    shares, each as ``"global NAME (FILE:LINE)"``, ``"nonlocal NAME (FILE:LINE)"`` or ``"global
    NAME in place (FILE:LINE)"``; empty when nothing. unwrap(function) gives the callable a
    framework's function stands for (asyncio.start_server's factory: its handler), or None."""
    found: dict[str, None] = {}  # ordered and without repeats
    changes = _ChangesInPlace()
    walk = _Walk()
    unwrap = unwrap or _nothing
    for factory in factories:
        _visit(factory, found, walk, _MAX_DEPTH, changes, unwrap)
        while walk.pending:  # the objects met on the way, nearest first
            obj, depth = walk.pending.popleft()
            _visit(obj, found, walk, depth, changes, unwrap)
    for change in changes.racing():
        found[change] = None
    return list(found)


class _ChangesInPlace:
    """The module globals the code changes in place and the ones it reads, per module."""

    def __init__(self) -> None:
        # (id of the module's globals, name) -> where the first change in place is
        self.changed: dict[tuple[int, str], str] = {}
        self.read: set[tuple[int, str]] = set()

    def record(self, code, instructions, at: int, globals_: dict) -> None:
        """instructions[at] loads a global: records what the code does with it if it is a
        container, a class of the program or an instance of one."""
        name = instructions[at].argval
        value = globals_.get(name)
        if isinstance(value, _CONTAINERS):
            attributes = False
        elif _is_program_instance(value) or _is_program_class(value):
            attributes = True
        else:
            return
        key = (id(globals_), name)
        changes, reads = _follow(instructions, at, attributes)
        if changes:
            self.changed.setdefault(
                key, f"global {name} in place ({_where(code, instructions[at])})"
            )
        if reads:
            self.read.add(key)

    def racing(self) -> list[str]:
        """The globals both changed in place and read: a read can see a change half made (an
        iteration, a count read and then written back)."""
        return [where for key, where in self.changed.items() if key in self.read]


def _is_program_instance(value) -> bool:
    if isinstance(value, (type, types.ModuleType, types.FunctionType, Object)):
        return False
    return not callable(value) and _is_program_code(type(value))


def _is_program_class(value) -> bool:
    """A class of the program, whose attributes (`Chat.count += 1`) every connection shares."""
    return isinstance(value, type) and _is_program_code(value)


def _follow(instructions, at: int, attributes: bool) -> tuple[bool, bool]:
    """Whether the value loaded at instructions[at] (and the copies of it the stack makes) is
    changed in place and whether it is read, in the instructions after it: a small simulation of
    the stack in which True marks the value."""
    stack = [True]
    changes = reads = False
    for instruction in instructions[at + 1 : at + 1 + _WINDOW]:
        op, arg = instruction.opname, instruction.arg
        if op == "COPY":
            stack.append(len(stack) >= arg and stack[-arg])
            continue
        if op == "SWAP":
            if len(stack) >= arg:
                stack[-1], stack[-arg] = stack[-arg], stack[-1]
            continue
        if op in _PUSHES_ONLY:
            stack.extend([False] * max(0, dis.stack_effect(instruction.opcode, arg, jump=False)))
            continue
        if op in ("STORE_SUBSCR", "DELETE_SUBSCR"):  # TOS1[TOS] = TOS2; del TOS1[TOS]
            taken = stack[-3:] if op == "STORE_SUBSCR" else stack[-2:]
            if len(stack) >= 2 and stack[-2]:
                changes = True
            elif any(taken):
                reads = True
            del stack[-len(taken) :]
        elif op in ("STORE_ATTR", "DELETE_ATTR"):  # TOS.name = TOS1; del TOS.name
            taken = stack[-2:] if op == "STORE_ATTR" else stack[-1:]
            if stack and stack[-1] and attributes:
                changes = True
            elif any(taken):
                reads = True
            del stack[-len(taken) :]
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            if stack and stack[-1]:
                if not attributes and instruction.argval in _MUTATORS:
                    changes = True
                else:
                    reads = True
            if stack:
                stack[-1] = False
            stack.extend([False] * max(0, dis.stack_effect(instruction.opcode, arg, jump=False)))
        else:
            # Anything else reads what it takes: at least the top, and as many more as it
            # leaves fewer on the stack.
            effect = dis.stack_effect(instruction.opcode, arg, jump=False)
            taken_count = min(len(stack), max(1, 1 - effect))
            if any(stack[len(stack) - taken_count :]):
                reads = True
            del stack[len(stack) - taken_count :]
            stack.extend([False] * max(0, taken_count + effect))
        if not any(stack):
            break
    return changes, reads


def _nothing(obj) -> None:
    return None


def _visit(
    obj,
    found: dict[str, None],
    walk: _Walk,
    depth: int,
    changes: _ChangesInPlace,
    unwrap: Callable[[object], object],
) -> None:
    if depth < 0 or id(obj) in walk.seen or len(walk.seen) >= _MAX_OBJECTS:
        return
    walk.seen.add(id(obj))
    if isinstance(obj, functools.partial):
        _visit(obj.func, found, walk, depth, changes, unwrap)
        for arg in (*obj.args, *obj.keywords.values()):
            _visit(arg, found, walk, depth - 1, changes, unwrap)
    elif isinstance(obj, types.MethodType):
        # The method only: the owner's other methods run when the code calls them through an
        # attribute, which this reading does not follow.
        _visit(obj.__func__, found, walk, depth, changes, unwrap)
    elif isinstance(obj, type):
        if not _is_program_code(obj):
            return
        for base in obj.__mro__[1:]:
            _visit(base, found, walk, depth - 1, changes, unwrap)
        for member in vars(obj).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            elif isinstance(member, property):
                member = member.fget
            if isinstance(member, types.FunctionType):
                _visit(member, found, walk, depth, changes, unwrap)
    elif isinstance(obj, types.FunctionType):
        handler = unwrap(obj)
        if handler is not None:  # asyncio.start_server's factory: what runs is the handler
            _visit(handler, found, walk, depth, changes, unwrap)
            return
        if not _is_program_code(obj):
            # A framework's function is not read, but what it closes over may hold the program's
            # handlers (uvicorn's factory: a closure over its Config, whose application is ours).
            for contents in closure_contents(obj):
                _visit(contents, found, walk, depth - 1, changes, unwrap)
            return
        loaded = _read_code(
            obj.__code__, frozenset(obj.__code__.co_freevars), found, changes, obj.__globals__
        )
        for contents in closure_contents(obj):
            if isinstance(contents, type) or callable(contents):
                _visit(contents, found, walk, depth - 1, changes, unwrap)
        for name in loaded:
            value = obj.__globals__.get(name)
            if isinstance(value, (type, types.FunctionType)):
                _visit(value, found, walk, depth - 1, changes, unwrap)
    elif isinstance(obj, (list, tuple, set, frozenset, dict)):
        walk.pending.extend((item, depth) for item in tuple(_items(obj)))
    elif _may_lead_to_program_code(obj):
        # The objects a server's factory is made with: a framework's configuration, its
        # application and the routes that hold the program's handlers (uvicorn's factory is a
        # closure over a Config whose application is a Starlette one), breadth first: a
        # twisted.web Site's resources before all that its reactor holds.
        if _is_program_code(type(obj)):
            _visit(type(obj), found, walk, depth, changes, unwrap)
        walk.pending.extend((value, depth) for value in _attributes(obj))


def closure_contents(function: types.FunctionType) -> list:
    """What function's closure cells hold (its empty cells left out)."""
    contents = []
    for cell in function.__closure__ or ():
        try:
            contents.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return contents


class _Walk:
    """The objects visited, and those met and still to visit (breadth first)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.pending: collections.deque[tuple[object, int]] = collections.deque()


def _items(container):
    return container.values() if isinstance(container, dict) else container


def _may_lead_to_program_code(obj) -> bool:
    """Whether obj is an instance of a class of the program or of an installed package: not of
    the standard library (a logger leads to every logger) or tm."""
    module = getattr(type(obj), "__module__", None) or ""
    return module.partition(".")[0] not in _TM_PACKAGES | sys.stdlib_module_names


def _attributes(obj) -> tuple:
    """The values of obj's own attributes: its __dict__'s and its slots' (Sanic's application
    keeps its router in a slot)."""
    values = list(vars(obj).values()) if isinstance(getattr(obj, "__dict__", None), dict) else []
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            descriptor = cls.__dict__.get(name)
            if isinstance(descriptor, types.MemberDescriptorType):
                try:
                    values.append(descriptor.__get__(obj, cls))
                except AttributeError:  # an empty slot
                    continue
    return tuple(values)


def _read_code(
    code: types.CodeType,
    shared_cells: frozenset[str],
    found: dict[str, None],
    changes: _ChangesInPlace,
    globals_: dict,
) -> set[str]:
    """Records code's rebinding of globals and of shared_cells: the free variables that the
    function object holding code closes over (bound once, when the server's factory was made),
    and its changes in place and reads of globals (changes). Returns the global names the code
    (its inner functions' included) loads."""
    loaded = set()
    instructions = list(dis.get_instructions(code))
    for at, instruction in enumerate(instructions):
        if instruction.opname == "LOAD_GLOBAL":
            loaded.add(instruction.argval)
            changes.record(code, instructions, at, globals_)
        elif instruction.opname in _GLOBAL_STORES:
            found[f"global {instruction.argval} ({_where(code, instruction)})"] = None
        elif instruction.opname in _CELL_STORES and instruction.argval in shared_cells:
            found[f"nonlocal {instruction.argval} ({_where(code, instruction)})"] = None
        elif instruction.opname == "LOAD_ATTR" and instruction.argval == "__class__":
            # self.__class__.count += 1: the class's attribute, which every instance shares
            if all(_follow(instructions, at, attributes=True)):
                found[f"a class attribute through __class__ ({_where(code, instruction)})"] = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            # An inner function's cells are its maker's: shared only where they pass through.
            loaded |= _read_code(
                const, shared_cells & frozenset(const.co_freevars), found, changes, globals_
            )
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


__all__ = ["closure_contents", "shared_rebindings"]
