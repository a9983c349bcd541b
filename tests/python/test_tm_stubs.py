"""bindings/tm/_core.pyi must describe tm._core exactly: every name of the module appears in the
stub and every name in the stub exists in the module (classes: their methods and properties too;
functions and methods: their parameter names, read from pybind11's signatures)."""

import ast
import inspect
import pathlib
import re

import pytest

import tm._core as core

# The source tree's stub (what a commit changes), else the installed one.
STUB = pathlib.Path(__file__).resolve().parents[2] / "bindings" / "tm" / "_core.pyi"
if not STUB.exists():
    STUB = pathlib.Path(core.__file__).with_name("_core.pyi")

# Attributes every pybind11 class or exception carries, which the stub need not repeat.
IGNORED_MEMBERS = {"_pybind11_conduit_v1_", "add_note", "args", "with_traceback"}


def _stub():
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    functions, classes, helpers = {}, {}, set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            if any(isinstance(b, ast.Name) and b.id == "TypedDict" for b in node.bases):
                helpers.add(node.name)  # a typing-only shape (dicts the module returns)
            else:
                classes[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    assert t.id.startswith("_"), f"stub alias {t.id} should be private"
                    helpers.add(t.id)
    return functions, classes, helpers


def _module_names():
    return {n for n in dir(core) if not (n.startswith("__") and n.endswith("__"))}


def _members(node):
    names = {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            names.setdefault(item.name, item)
    return names


def _runtime_members(cls):
    names = set()
    for klass in cls.__mro__:
        if klass in (object, BaseException, Exception) or klass.__module__ == "pybind11_builtins":
            continue
        names.update(n for n in vars(klass) if not (n.startswith("__") and n.endswith("__")))
    return names - IGNORED_MEMBERS


def _pybind_params(obj, name):
    """Parameter names from a pybind11 docstring's first line, or None when it has none."""
    doc = (getattr(obj, "__doc__", None) or "").lstrip()
    m = re.match(re.escape(name) + r"\((.*)\) ->", doc.splitlines()[0] if doc else "")
    if not m:
        return None
    params, depth, current = [], 0, ""
    for ch in m.group(1):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            params.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        params.append(current)
    names = [p.split(":")[0].split("=")[0].strip() for p in params]
    return [n for n in names if n not in ("*", "/")]  # keyword-only / positional-only markers


def _stub_params(fn):
    args = fn.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]


def test_every_module_name_is_in_the_stub():
    functions, classes, _ = _stub()
    missing = _module_names() - set(functions) - set(classes)
    assert not missing, f"tm._core names missing from {STUB.name}: {sorted(missing)}"


def test_every_stub_name_is_in_the_module():
    functions, classes, _ = _stub()
    extra = (set(functions) | set(classes)) - _module_names()
    assert not extra, f"{STUB.name} names tm._core does not have: {sorted(extra)}"


def test_functions_are_functions_and_classes_classes():
    functions, classes, _ = _stub()
    for name in functions:
        assert callable(getattr(core, name)) and not inspect.isclass(getattr(core, name)), name
    for name in classes:
        assert inspect.isclass(getattr(core, name)), name


@pytest.mark.parametrize("name", sorted(_stub()[1]))
def test_class_members_match(name):
    stub_members = {
        n for n in _members(_stub()[1][name]) if not (n.startswith("__") and n.endswith("__"))
    }
    runtime = _runtime_members(getattr(core, name))
    assert stub_members == runtime, (
        f"{name}: missing from stub {sorted(runtime - stub_members)}, "
        f"not in module {sorted(stub_members - runtime)}"
    )


def test_function_parameters_match():
    functions, classes, _ = _stub()
    checked = 0
    for name, node in functions.items():
        params = _pybind_params(getattr(core, name), name)
        if params is not None:
            assert _stub_params(node) == params, name
            checked += 1
    for cname, cnode in classes.items():
        cls = getattr(core, cname)
        for mname, mnode in _members(cnode).items():
            attr = getattr(cls, mname, None)
            params = _pybind_params(attr, mname) if attr is not None else None
            if params is None or isinstance(inspect.getattr_static(cls, mname), property):
                continue
            stub = _stub_params(mnode)
            assert stub[1:] == [p for p in params[1:] if not p.startswith("arg")] or len(
                stub
            ) == len(params), f"{cname}.{mname}: stub {stub}, module {params}"
            checked += 1
    assert checked > 30
