"""Reference cycles through tm containers are collected by the cyclic GC (tp_traverse/tp_clear
on the cores of Var, List, Dict, Set, Log and Queue, and on tm.Object)."""

import gc
import sys
import weakref

import pytest

import tm


class Box:
    pass


class Node(tm.Object):
    pass


def _node(b):
    n = Node()
    n.item = b
    return n


def _core_log(b):
    log = tm._core.Log()
    log.append(b)
    return log


def _queue(b, take=False):
    q = tm.Queue()
    q.put(b)
    q.put(1)
    if take:
        assert q.get() is b  # taken: released by deferred reclamation
    return q


def _collect():
    for _ in range(3):
        tm.reclaim()
        gc.collect()


@pytest.mark.parametrize(
    "make",
    [
        lambda b: tm.Var(b),
        lambda b: tm._core.Var(b),
        lambda b: tm.List([1, b]),
        lambda b: tm.Dict(k=b),
        lambda b: tm.Dict({b: 1}),
        lambda b: tm.Set([b]),
        _node,
        lambda b: tm.Log([0, b]),
        lambda b: _core_log(b),
        _queue,
        lambda b: _queue(b, take=True),
    ],
    ids=[
        "Var",
        "core.Var",
        "List",
        "Dict-value",
        "Dict-key",
        "Set",
        "Object",
        "Log",
        "core.Log",
        "Queue",
        "Queue-taken",
    ],
)
def test_cycle_through_a_container_is_collected(make):
    b = Box()
    c = make(b)
    b.container = c
    ref = weakref.ref(b)
    del b, c
    _collect()
    assert ref() is None


def test_self_cycles_are_collected():
    class Marker:
        pass

    marker = Marker()
    ref = weakref.ref(marker)
    lst = tm.List([marker])
    lst.append(lst)
    d = tm.Dict(m=lst)
    d["self"] = d
    v = tm.Var(None)
    v.set((v, d))
    del marker, lst, d, v
    _collect()
    assert ref() is None


def test_object_self_cycle_and_live_attributes():
    a, b = Node(), Node()
    a.other, b.other = b, a
    a.me = a
    ref = weakref.ref(a)
    live = Node()
    live.box = Box()
    del a, b
    _collect()
    assert ref() is None
    assert isinstance(live.box, Box) and gc.is_tracked(live)


def test_cycle_written_in_a_transaction_is_collected():
    b = Box()
    ref = weakref.ref(b)
    v = tm.Var()

    @tm.atomic
    def link():
        v.set(b)
        b.v = v

    link()
    del b, v
    _collect()
    assert ref() is None


def test_live_containers_keep_their_contents():
    d = tm.Dict(a=Box())
    lst = tm.List([Box()])
    v = tm.Var(Box())
    _collect()
    assert isinstance(d["a"], Box) and isinstance(lst[0], Box) and isinstance(v.get(), Box)
    assert gc.is_tracked(d) and gc.is_tracked(lst) and gc.is_tracked(v)


def test_collection_while_other_threads_commit():
    # The collector traverses containers whose payloads other threads replace and reclaim.
    import threading

    lst, d = tm.List(), tm.Dict()
    lst.append(lst)
    d["self"] = d
    stop = threading.Event()

    def writer(i):
        n = 0
        while not stop.is_set():
            lst.append(n)
            d[(i, n % 50)] = [n]
            if len(lst) > 200:
                tm.run_atomic(lambda: lst._assign([lst]))
            n += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(200):
            gc.collect()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert lst[0] is lst and d["self"] is d


def test_log_and_queue_self_cycles_are_collected():
    class Marker:
        pass

    marker = Marker()
    ref = weakref.ref(marker)
    log = tm.Log([marker])
    log.append(log)
    q = tm.Queue()
    q.put(q)
    q.put(log)
    log_ref, q_ref = weakref.ref(log), weakref.ref(q)
    del marker, log, q
    _collect()
    assert ref() is None and log_ref() is None and q_ref() is None


def test_cycle_appended_in_transactions_is_collected():
    # Appends are merged at commit (restartable) or replayed at commit (irrevocable block).
    b = Box()
    ref = weakref.ref(b)
    log, q = tm.Log(), tm.Queue()

    @tm.atomic
    def link():
        log.append(b)
        b.log = log

    link()
    with tm.atomic():
        q.put(b)
        q.put(q)
    del b, log, q
    _collect()
    assert ref() is None


def test_log_and_queue_release_their_items():
    item = object()
    base = sys.getrefcount(item)
    log = tm.Log([item, item])
    q = tm.Queue()
    for _ in range(3):
        q.put(item)
    assert q.get() is item
    tm.quiesce()
    assert sys.getrefcount(item) == base + 4  # two in the log, two left in the queue
    log.append(log)  # a cycle: only the collector can free the log
    del log, q
    _collect()
    assert sys.getrefcount(item) == base


def test_live_log_and_queue_keep_their_items():
    log, q = tm.Log([Box()]), tm.Queue()
    q.put(Box())
    log.append(log)
    _collect()
    assert gc.is_tracked(log) and gc.is_tracked(q)
    assert isinstance(log[0], Box) and log[1] is log and isinstance(q.get_nowait(), Box)
