"""The race reporter: unmanaged shared state that callbacks of two strands mutate.

The watching is in C++ (bindings/race_report.cpp, on CPython's dict watchers); this module holds
the API and the rule of which modules are the user's. docs/MANAGED_STATE.md "Race reports" says
what is and is not seen.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import site
import sys
import sysconfig

from tm import _core

# Packages whose globals and classes are the runtime's own, wherever they are installed: their
# state is shared by design and guarded by them, not the user's to fix.
_RUNTIME_PACKAGES = frozenset({"tm", "tm_twisted", "tm_asyncio", "twisted"})


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    if hasattr(site, "getsitepackages"):
        dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


_LIBRARY_DIRS = _library_dirs()


def _is_user_module(name: str, module: object) -> bool:
    """The program's own modules: __main__, and modules from files outside the standard library
    and the installed packages (site-packages), tm's own packages excepted."""
    if name == "__main__":
        return True
    top = name.partition(".")[0]
    if top in _RUNTIME_PACKAGES or top in sys.stdlib_module_names:
        return False
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False  # built in, frozen or a namespace package: no globals of the program's
    return not os.path.realpath(file).startswith(_LIBRARY_DIRS)


def _module_added(name: str, module: object) -> None:
    """Called by the C++ watcher of sys.modules as a module is imported (its body has not run
    yet: the classes it defines are watched as they are bound) and once per module at enable."""
    if not isinstance(name, str) or not _is_user_module(name, module):
        return
    _core._race_watch(module, f"module {name}", name)
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == name:
            _core._race_watch(value, f"class {name}.{value.__qualname__}")


@dataclasses.dataclass(frozen=True)
class RaceMutation:
    """One side of a race: the strand that mutated, whether its transaction was inevitable, and
    the innermost frames as "file:line function", outermost first."""

    strand: int
    inevitable: bool
    traceback: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RaceReport:
    """Two strands mutated `key` of `object` ("module app", "class app.Chat", "dict users")
    and not both in inevitable transactions. `event` is the later mutation's kind (added,
    modified, deleted, cleared, replaced)."""

    object: str
    key: str
    event: str
    earlier: RaceMutation
    later: RaceMutation

    def __str__(self) -> str:
        lines = [f"race on {self.object}, key {self.key!r} ({self.event}):"]
        for title, side in (("earlier", self.earlier), ("later", self.later)):
            inevitable = ", inevitable" if side.inevitable else ""
            lines.append(f"  {title} mutation (strand {side.strand}{inevitable}):")
            lines.extend(f"    {frame}" for frame in side.traceback)
        return "\n".join(lines)


def _mutation(d: _core._RaceMutation) -> RaceMutation:
    return RaceMutation(d["strand"], d["inevitable"], tuple(d["traceback"]))


def race_report_available() -> bool:
    """True where the reporter can run: CPython 3.12 or later (dict watchers)."""
    return _core._race_available()


def set_race_report(enabled: bool) -> None:
    """Turns the race reporter on or off. On, the user's module globals and classes (and dicts
    given to watch_races) are watched; turning it off unwatches them and forgets past mutations,
    keeping the reports. Raises RuntimeError when asked to turn it on where it is unavailable."""
    if not enabled:
        _core._race_disable()
        return
    if not race_report_available():
        raise RuntimeError(
            "tm.set_race_report(True): the race reporter needs dict watchers, which CPython has "
            f"from 3.12; this is {sys.version.split()[0]} (with the GIL a TMReactor runs every "
            "event on one strand, so its callbacks cannot race each other)"
        )
    if _core._race_enabled():
        return
    _core._race_enable(_module_added)
    for name, module in list(sys.modules.items()):
        _module_added(name, module)


def race_report_enabled() -> bool:
    """Whether the race reporter is on."""
    return bool(_core._race_enabled())


def race_reports() -> list[RaceReport]:
    """The races seen since the reporter was turned on or reset, one per pair of sites."""
    return [
        RaceReport(
            r["object"], r["key"], r["event"], _mutation(r["earlier"]), _mutation(r["later"])
        )
        for r in _core._race_reports()
    ]


def reset_race_reports() -> None:
    """Drops the reports and what was remembered of past mutations."""
    _core._race_reset()


def watch_races(obj: object, label: str | None = None) -> None:
    """Watches one more dict (a plain container the program shares), class or module. The
    reporter must be on."""
    if not race_report_enabled():
        raise RuntimeError("tm.watch_races: the race reporter is off (tm.set_race_report(True))")
    if isinstance(obj, type):
        label = label or f"class {obj.__module__}.{obj.__qualname__}"
    elif isinstance(obj, dict):
        label = label or f"dict at {id(obj):#x}"
    else:
        name = getattr(obj, "__name__", "?")
        _core._race_watch(obj, label or f"module {name}", name)
        return
    _core._race_watch(obj, label)


def _print_reports() -> None:
    reports = race_reports()
    if reports:
        print(f"tm: {len(reports)} race report(s):", file=sys.stderr)
        for report in reports:
            print(report, file=sys.stderr)


def install_from_env() -> None:
    """TM_RACE_REPORT=1 turns the reporter on at import and prints its reports at exit."""
    if os.environ.get("TM_RACE_REPORT", "") in ("", "0"):
        return
    if not race_report_available():
        print(
            "tm: TM_RACE_REPORT is set but this interpreter has no dict watchers (CPython 3.12+): "
            "no race reports",
            file=sys.stderr,
        )
        return
    set_race_report(True)
    atexit.register(_print_reports)
