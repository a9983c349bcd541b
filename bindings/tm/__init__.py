"""tm: transactional memory for Python programs, and the engine under tm-reactor.

The extension ``tm._core`` holds the C++ engine; this package is its Python face. See
docs/PYTHON_API.md.
"""

from tm import _conflict_log, _imports, _io, _race, _thread_identity  # noqa: F401 (workers import it)
from tm._atomic import atomic, run_atomic, snapshot, transactional
from tm._conflict_log import worker_span, write_report_log
from tm._managed import as_managed_value, is_managed, manage  # noqa: F401 (as_managed_value)
from tm._race import (
    RaceMutation,
    RaceReport,
    race_report_available,
    race_report_enabled,
    race_reports,
    reset_race_reports,
    set_race_report,
    watch_races,
)

# The adapters' settings (tm._reactor), not exported: still importable as tm.<name>, which tests
# and docs/TWISTED.md, docs/ASYNCIO.md use.
from tm._environment import (
    abort_injection_from_environment,  # noqa: F401
    one_strand_from_environment,  # noqa: F401
    workers_from_environment,  # noqa: F401
)
from tm._core import (
    build_info,
    conflict_log_enabled,
    conflicts,
    escalation_threshold,
    in_transaction,
    inevitability_sites,
    inevitable,
    is_inevitable,
    on_abort,
    on_commit,
    quiesce,
    reclaim,
    reset_stats,
    retry,
    set_abort_injection,
    set_schedule_noise,
    set_conflict_log,
    set_escalation_threshold,
    stats,
)
from tm._types import Counter, Dict, List, Log, Object, Queue, Set, Var
from tm.transaction_queue import TransactionQueue, hint_commit_soon, time

# What programs use (docs/PYTHON_API.md). The adapters' plumbing is not exported: they use
# tm._reactor, their internal API.
__all__ = [
    "RaceMutation",
    "RaceReport",
    "race_report_available",
    "race_report_enabled",
    "race_reports",
    "reset_race_reports",
    "set_race_report",
    "watch_races",
    "is_managed",
    "manage",
    "Counter",
    "Dict",
    "List",
    "Log",
    "Object",
    "Queue",
    "Set",
    "TransactionQueue",
    "Var",
    "atomic",
    "build_info",
    "conflict_log_enabled",
    "conflicts",
    "escalation_threshold",
    "hint_commit_soon",
    "in_transaction",
    "inevitability_sites",
    "inevitable",
    "is_inevitable",
    "on_abort",
    "on_commit",
    "quiesce",
    "reclaim",
    "reset_stats",
    "retry",
    "run_atomic",
    "set_abort_injection",
    "set_schedule_noise",
    "set_conflict_log",
    "set_escalation_threshold",
    "snapshot",
    "stats",
    "time",
    "transactional",
    "worker_span",
    "write_report_log",
]

_io.install()
_imports.install()
_conflict_log.install_from_env()
_race.install_from_env()
