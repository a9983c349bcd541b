"""Type stubs for tm._core, the C++ engine under the ``tm`` package.

Kept in step with the module by tests/python/test_tm_stubs.py: every public name of tm._core
appears here and every name here exists in tm._core.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, SupportsIndex, SupportsInt, TypedDict, final

_Int = SupportsInt | SupportsIndex
_Float = float | SupportsIndex

# -- build information ---------------------------------------------------------------------------

class BuildInfo(TypedDict):
    version: str
    compiler: str
    boost: str
    pybind11: str
    python: str
    free_threaded: bool
    gil_enabled: bool

def build_info() -> BuildInfo:
    """Compiler, Boost and pybind11 versions; whether the interpreter is free-threaded and the
    GIL enabled now."""

def _immortalize_types(types: Iterable[type]) -> int:
    """Makes the heap types among `types` that this thread owns immortal, on a free-threaded
    CPython 3.13 (elsewhere: nothing); returns how many it changed (tm._shared_types)."""

def _immortalize_values(objects: Iterable[object]) -> int:
    """Makes the immutable values (exact str, bytes, int, float, complex, tuple, frozenset) among
    `objects` that this thread owns immortal, and those inside their tuples and frozensets, on a
    free-threaded CPython 3.13 (elsewhere: nothing); returns how many it changed."""

# -- statistics and the conflict log -------------------------------------------------------------

class AbortCounts(TypedDict):
    read_write: int
    write_write: int
    inevitable: int
    explicit_abort: int
    injected: int
    retry: int

class Stats(TypedDict):
    commits: int
    read_only_commits: int
    inevitable_commits: int
    escalations: int
    aborts: AbortCounts
    total_aborts: int
    seconds_aborted: float
    seconds_inevitable: float

class ConflictRecord(TypedDict):
    cell: int
    cell_name: str
    site: str
    """file:line of the aborted side ('' when the conflict log was off)."""
    other_site: str
    """file:line of the side that won."""
    cause: str
    count: int
    seconds_lost: float

def stats(thread: bool = False) -> Stats:
    """Summed over every thread, or this thread's (thread=True)."""

def reset_stats() -> None: ...
def conflicts() -> list[ConflictRecord]:
    """Conflict sites, the costliest first."""

class WorkerSpan(TypedDict):
    name: str
    thread_id: int
    start: float
    """time.monotonic() seconds of the thread's first event while the conflict log was on."""
    end: float
    """and of the end of its last."""
    stats: Stats
    """What the thread added to its tm.stats(thread=True) in between."""

def reactor_worker_spans() -> list[WorkerSpan]:
    """One span per reactor worker thread that ran events while the conflict log was on."""

def set_conflict_log(on: bool) -> None:
    """Tags accesses with their Python file:line (a frame lookup each)."""

def conflict_log_enabled() -> bool: ...

class InevitabilitySite(TypedDict):
    site: str
    """file:line where transactions became inevitable (an escalation: where the function is
    defined)."""
    cause: Literal["first_access", "io", "explicit", "escalation"]
    detail: str
    """'read'/'write', the audit event, or 'after N aborts'."""
    count: int
    seconds_held: float
    """Total time from becoming inevitable to the end of the transaction (the token held)."""
    max_seconds_held: float

def inevitability_sites() -> list[InevitabilitySite]:
    """Where transactions became inevitable (conflict log on), the longest total hold first."""

def _set_internal_prefix(prefix: str) -> None:
    """Frames of files under prefix (the tm package) are skipped when a site is named."""

# -- transactions --------------------------------------------------------------------------------

class TransactionAbort(BaseException):
    """Internal: unwinds an aborted attempt to its boundary. Never catch it."""

def run(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    irrevocable: bool = False,
) -> Any:
    """Runs fn(*args, **kwargs) as one transaction (restartable unless irrevocable)."""

def _begin_block() -> None: ...
def _end_block(ok: bool) -> bool: ...
def _snapshot_enter() -> None: ...
def _snapshot_exit() -> None: ...
def _install_audit_hook() -> None: ...
def in_transaction() -> bool: ...
def is_inevitable() -> bool: ...
def mode() -> Literal["restartable", "irrevocable"] | None: ...
def inevitable() -> None:
    """Makes the running transaction inevitable: it will not abort and commits next."""

def retry() -> None:
    """Aborts the restartable transaction; reruns it once a value it read has changed."""

def on_commit(fn: Callable[[], object], /) -> None:
    """Calls fn() after the running transaction commits (now if none runs)."""

def on_abort(fn: Callable[[], object]) -> None:
    """Calls fn() if the running attempt aborts or is abandoned."""

def set_abort_injection(probability: _Float, seed: _Int = 0) -> None: ...
def set_schedule_noise(probability: _Float, seed: _Int = 0) -> None: ...
def callbacks_run_in_parallel() -> bool:
    """Whether a reactor is running callbacks of different strands on several workers now."""

def set_escalation_threshold(aborts: _Int) -> None: ...
def escalation_threshold() -> int: ...
def reclaim() -> None: ...
def quiesce() -> None:
    """Waits until every running transaction has ended, then reclaims (not inside one)."""

# -- managed types (the cores of tm.Var, tm.Dict, ...) -------------------------------------------

class Var:
    """A transactional reference to a Python object."""

    def __init__(self, value: object = None) -> None: ...
    def get(self) -> Any: ...
    def set(self, value: object) -> None: ...
    def swap(self, value: object) -> Any: ...
    @property
    def value(self) -> Any: ...
    @value.setter
    def value(self, value: object) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

class Counter:
    """A commutative 64-bit counter: add() never conflicts."""

    def __init__(self, initial: _Int = 0) -> None: ...
    def add(self, delta: _Int = 1) -> None: ...
    def get(self) -> int: ...
    @property
    def value(self) -> int: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...
    def __iadd__(self, delta: _Int) -> Counter: ...
    def __isub__(self, delta: _Int) -> Counter: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

class Dict:
    """The core of tm.Dict (a transactional, insertion-ordered hash map)."""

    def __init__(self) -> None: ...
    def __getitem__(self, key: object) -> Any: ...
    def get(self, key: object, default: object = None) -> Any: ...
    def __contains__(self, key: object) -> bool: ...
    def __setitem__(self, key: object, value: object) -> None: ...
    def __delitem__(self, key: object) -> None: ...
    def _pop(self, key: object) -> tuple[bool, Any]: ...
    def __len__(self) -> int: ...
    def _items(self, what: _Int = 2) -> list[Any]: ...
    def clear(self) -> None: ...

class List:
    """The core of tm.List (one consistent vector, copy-on-write)."""

    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def _get(self, index: SupportsIndex) -> Any: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any: ...
    def _set(self, index: _Int, value: object) -> None: ...
    def _del(self, index: _Int) -> None: ...
    def pop(self, index: _Int = -1) -> Any: ...
    def append(self, item: object) -> None: ...
    def insert(self, index: _Int, item: object) -> None: ...
    def _extend(self, items: list[Any]) -> None: ...
    def _items(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def _assign(self, items: list[Any]) -> None: ...

class Set:
    """The core of tm.Set (a transactional hash set); a blind add() never conflicts."""

    def __init__(self) -> None: ...
    def add(self, item: object) -> None: ...
    def __contains__(self, item: object) -> bool: ...
    def _discard(self, item: object) -> bool: ...
    def discard(self, item: object) -> None: ...
    def __len__(self) -> int: ...
    def _items(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def clear(self) -> None: ...

class Log:
    """An append-only log: append() never conflicts."""

    def __init__(self) -> None: ...
    def append(self, item: object) -> None: ...
    def __len__(self) -> int: ...
    def _at(self, index: _Int) -> Any: ...
    def _items(self) -> list[Any]: ...

class Queue:
    """A FIFO queue (queue.Queue's interface): put() never conflicts when the queue is unbounded;
    get() conflicts only with getters."""

    def __init__(self, maxsize: int = 0) -> None: ...
    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...
    def get_nowait(self) -> Any: ...
    def task_done(self) -> None: ...
    def join(self) -> None: ...
    def qsize(self) -> int: ...
    def __len__(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    @property
    def maxsize(self) -> int: ...

class Object:
    """A base class whose instance attributes are transactional."""

    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def __getattribute__(self, name: str) -> Any: ...
    def __setattr__(self, name: str, value: Any) -> None: ...
    def __delattr__(self, name: str) -> None: ...
    def __dir__(self) -> list[str]: ...
    def __getstate__(self) -> dict[str, Any]: ...
    def __setstate__(self, state: dict[str, Any]) -> None: ...

def install_managed_access(cls: type, setattr_fallback: Callable[[Any, str, Any], None], /) -> None:
    """Gives a managed class (tm.manage) its attribute access in C."""

# -- the reactor ---------------------------------------------------------------------------------

def monotonic() -> float:
    """The reactor's clock in seconds (the clock of time.monotonic())."""

@final
@final
class Strand:
    """Callbacks of one strand run one at a time, in order; different strands run in parallel."""

    @property
    def id(self) -> int: ...
    def is_current(self) -> bool: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

def ready_queue_idle(post: Callable[[Any], None], /) -> bool:
    """Whether no batch of the ready queue behind post (made by Reactor.ready_queue) waits."""

def current_strand() -> Strand | None:
    """The strand of the reactor callback this thread runs, or None."""

@final
class Timer:
    """A scheduled call (Reactor.call_at)."""

    def cancel(self) -> None: ...
    def reschedule(self, when: _Float) -> None: ...
    def reschedule_earlier(self, when: _Float) -> None: ...
    @property
    def deadline(self) -> float: ...
    @property
    def pending(self) -> bool: ...

@final
class FdWatcher:
    """Level-triggered readiness callbacks for a descriptor the reactor does not own."""

    def add_reader(self, fn: Callable[[], object], /) -> None: ...
    def remove_reader(self) -> None: ...
    def add_writer(self, fn: Callable[[], object], /) -> None: ...
    def remove_writer(self) -> None: ...
    @property
    def has_reader(self) -> bool: ...
    @property
    def has_writer(self) -> bool: ...
    def release(self) -> None: ...
    def fileno(self) -> int: ...

class Reactor:
    """The transactional event reactor: workers, each ready event one transaction on its strand."""

    def __init__(self, workers: _Int = 0, one_strand: bool = False) -> None: ...
    @property
    def workers(self) -> int: ...
    @property
    def one_strand(self) -> bool:
        """True when every strand is the same one (events run one at a time, in order)."""
    def run(self, tick: Callable[[], object] | None = None) -> None:
        """With more than one worker the calling thread runs tick() every 50 ms and after each
        wake_caller()."""
    def wake_caller(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def stopped(self) -> bool: ...
    def restart(self) -> None: ...
    def close_all(self) -> None: ...
    def make_strand(self) -> Strand: ...
    def post(
        self, fn: Callable[[], object], strand: Strand | None = None, fresh: bool = False
    ) -> None: ...
    def poster(self, strand: Strand) -> Callable[[Callable[[], object]], None]:
        """A function of one argument, fn, that does post(fn, strand), without a bound method's
        keyword handling."""
    def ready_queue(
        self, strand: Strand, runner: Callable[[Any], object] | None = None
    ) -> Callable[[Any], None]:
        """A function of one argument, fn, that queues fn on the strand's ready queue: fn() (or
        runner(fn)) runs as a transaction of its own, in FIFO order, in batches (those queued
        while a batch runs form the next one, behind what the strand got meanwhile). Inside a
        transaction it queues at commit."""
    def call_at(
        self,
        when: _Float,
        fn: Callable[[], object],
        strand: Strand | None = None,
        fresh: bool = False,
    ) -> Timer: ...
    def watch_fd(self, fd: _Int, strand: Strand | None = None) -> FdWatcher:
        """A watcher whose callbacks run on `strand` (a new strand when None)."""
    def in_worker(self) -> bool: ...
    def notify_fork(self, event: Literal["prepare", "parent", "child"]) -> None: ...
    def begin_exclusive(self) -> None: ...
    def wait_exclusive(self, timeout: float) -> bool: ...
    def in_exclusive(self) -> bool: ...
    def end_exclusive(self) -> None: ...

# -- stream transports (TCP and Unix) --------------------------------------------------------------

_Bytes = bytes | bytearray | memoryview
_TcpAddress = tuple[str, int] | tuple[str, int, int, int]

@final
class StreamTransport:
    """A connected TCP or Unix byte stream. Thread-safe. Requests made inside a transaction take
    effect at its commit, in commit order; outside one, at once.

    The handler given to tcp_connect / unix_connect / tcp_adopt / unix_adopt (or returned by a
    listener's factory) is any object with connection_made(transport), data_received(bytes),
    connection_lost(OSError | None), and optionally eof_received() -> bool (true keeps the
    connection half-open), connect_failed(OSError), pause_writing(), resume_writing(). Each is
    called as one transaction on the connection's strand; an exception is reported through
    sys.unraisablehook."""

    def write(self, data: _Bytes, /) -> None:
        """Queues the bytes of a bytes-like object (a large bytes object is held until sent,
        anything else copied). Ignored after close() or abort()."""
    def shutdown_write(self) -> None: ...
    def close(self) -> None:
        """Sends pending writes, then closes; connection_lost(None) follows."""
    def abort(self, reset: bool = True) -> None:
        """Drops pending writes and resets (Twisted's abortConnection); with reset=False hands the
        kernel what it takes now of the pending writes, drops the rest and closes without a reset
        (asyncio's transport.abort()). connection_lost(ConnectionAbortedError) follows."""
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, high: _Int, low: _Int) -> None: ...
    def write_buffer_size(self) -> int: ...
    def resume_when_drained(self) -> bool: ...
    def local_address(self) -> _TcpAddress | str | None:
        """(host, port), (host, port, flowinfo, scope_id) or a socket path; None before the
        connection is made."""
    def peer_address(self) -> _TcpAddress | str | None: ...
    def fileno(self) -> int:
        """The descriptor; -1 before connecting and once closed."""
    def is_closing(self) -> bool: ...
    def set_option(self, level: _Int, name: _Int, value: _Int) -> None: ...
    def get_option(self, level: _Int, name: _Int) -> int: ...
    @property
    def strand(self) -> Strand:
        """The connection's strand: its handler's methods run on it."""

@final
class StreamListener:
    """A listening TCP or Unix stream socket."""

    def local_address(self) -> _TcpAddress | str: ...
    @property
    def port(self) -> int:
        """The bound port (0 for a Unix socket)."""
    def fileno(self) -> int:
        """The listening descriptor; -1 once closed."""
    def close(self) -> None:
        """Stops accepting (at commit inside a transaction); idempotent."""

def tcp_listen(
    reactor: Reactor,
    host: str,
    port: _Int,
    factory: Callable[[], object | None],
    *,
    backlog: _Int = 1024,
    reuse_address: bool = True,
    reuse_port: bool = False,
    v6_only: bool = False,
    on_error: Callable[[OSError], object] | None = None,
) -> StreamListener:
    """Listens on a numeric host; factory() makes each connection's handler (None refuses)."""

def tcp_adopt_listener(
    reactor: Reactor,
    fd: _Int,
    factory: Callable[[], object | None],
    *,
    backlog: _Int = 1024,
    reuse_address: bool = True,
    reuse_port: bool = False,
    v6_only: bool = False,
    on_error: Callable[[OSError], object] | None = None,
) -> StreamListener:
    """Accepts on a listening TCP socket the reactor owns from then on (pass a dup())."""

def unix_listen(
    reactor: Reactor,
    path: str,
    factory: Callable[[], object | None],
    *,
    backlog: _Int = 1024,
    on_error: Callable[[OSError], object] | None = None,
) -> StreamListener:
    """Binds `path` (which must not exist) and listens."""

def tcp_connect(reactor: Reactor, host: str, port: _Int, handler: object) -> StreamTransport:
    """Connects (at commit inside a transaction); connection_made or connect_failed follows."""

def tcp_adopt(
    reactor: Reactor, fd: _Int, handler: object, strand: Strand | None = None
) -> StreamTransport:
    """Adopts a connected TCP socket, owned by the reactor from then on; its events run on
    `strand` if given, else on a new strand."""

def unix_connect(reactor: Reactor, path: str, handler: object) -> StreamTransport: ...
def unix_adopt(
    reactor: Reactor, fd: _Int, handler: object, strand: Strand | None = None
) -> StreamTransport:
    """Adopts a connected Unix stream socket (one end of socketpair()); on `strand` as
    tcp_adopt."""

# -- race reporter (tm._race; CPython 3.12+ dict watchers) ---------------------------------------

class _RaceMutation(TypedDict):
    strand: int
    inevitable: bool
    traceback: list[str]
    """The innermost frames as "file:line function", outermost first."""

class _RaceRecord(TypedDict):
    object: str
    key: str
    event: str
    earlier: _RaceMutation
    later: _RaceMutation

def _race_available() -> bool:
    """True where dict watchers exist (CPython 3.12 or later)."""

def _race_enable(module_hook: Callable[[str, object], object]) -> None:
    """Turns the reporter on; module_hook(name, module) is called for every module imported
    from then on. Raises RuntimeError where _race_available() is false."""

def _race_disable() -> None:
    """Unwatches everything and forgets past mutations; the reports stay."""

def _race_enabled() -> bool: ...
def _race_watch(obj: object, label: str, module: str = "") -> None:
    """Watches a dict, a class's attributes or a module's globals (module: its name, so that the
    classes it defines later are watched too)."""

def _race_reports() -> list[_RaceRecord]: ...
def _race_reset() -> None:
    """Drops the reports and the remembered mutations."""
