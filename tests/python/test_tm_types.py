"""Each managed type against its builtin counterpart, property-based (hypothesis)."""

import copy
import pickle
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tm

keys = st.one_of(st.integers(-50, 50), st.text(max_size=3))
values = st.one_of(st.integers(), st.text(max_size=5), st.none())
SETTINGS = settings(max_examples=60, deadline=None)


dict_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("del"), keys, st.none()),
        st.tuples(st.just("pop"), keys, values),
        st.tuples(st.just("setdefault"), keys, values),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=40,
)


def apply_dict(d, op):
    kind, k, v = op
    try:
        if kind == "set":
            d[k] = v
        elif kind == "del":
            del d[k]
        elif kind == "pop":
            return d.pop(k, v)
        elif kind == "setdefault":
            return d.setdefault(k, v)
        elif kind == "clear":
            d.clear()
    except KeyError:
        return "KeyError"
    return None


@SETTINGS
@given(dict_ops)
def test_dict_matches_dict(ops):
    ours, ref = tm.Dict(), {}
    for op in ops:
        assert apply_dict(ours, op) == apply_dict(ref, op)
        assert len(ours) == len(ref)
    assert list(ours.items()) == list(ref.items())  # insertion order too
    assert ours == ref and list(ours) == list(ref)
    for k in list(ref)[:5]:
        assert k in ours and ours[k] == ref[k] and ours.get(k) == ref.get(k)
    assert ours.get("missing-key", 7) == 7


@SETTINGS
@given(dict_ops)
def test_dict_ops_in_one_transaction_match_dict(ops):
    ours, ref = tm.Dict(), {}
    results = tm.run_atomic(lambda: [apply_dict(ours, op) for op in ops])
    assert results == [apply_dict(ref, op) for op in ops]
    assert list(ours.items()) == list(ref.items())


list_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), values),
        st.tuples(st.just("insert"), st.tuples(st.integers(-5, 5), values)),
        st.tuples(st.just("pop"), st.integers(-5, 5)),
        st.tuples(st.just("setitem"), st.tuples(st.integers(-5, 5), values)),
        st.tuples(st.just("delslice"), st.tuples(st.integers(-3, 3), st.integers(-3, 3))),
        st.tuples(st.just("extend"), st.lists(values, max_size=3)),
        st.tuples(st.just("reverse"), st.none()),
        st.tuples(st.just("remove"), values),
    ),
    max_size=40,
)


def apply_list(lst, op):
    kind, arg = op
    try:
        if kind == "append":
            lst.append(arg)
        elif kind == "insert":
            lst.insert(*arg)
        elif kind == "pop":
            return lst.pop(arg)
        elif kind == "setitem":
            lst[arg[0]] = arg[1]
        elif kind == "delslice":
            del lst[arg[0] : arg[1]]
        elif kind == "extend":
            lst.extend(arg)
        elif kind == "reverse":
            lst.reverse()
        elif kind == "remove":
            lst.remove(arg)
    except (IndexError, ValueError) as e:
        return type(e).__name__
    return None


@SETTINGS
@given(list_ops)
def test_list_matches_list(ops):
    ours, ref = tm.List(), []
    for op in ops:
        assert apply_list(ours, op) == apply_list(ref, op)
        assert len(ours) == len(ref)
    assert ours == ref and list(ours) == ref
    assert ours[1:3] == ref[1:3]
    for x in ref[:3]:
        assert x in ours and ours.index(x) == ref.index(x) and ours.count(x) == ref.count(x)


set_ops = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "remove", "update"]), keys), max_size=40
)


@SETTINGS
@given(set_ops)
def test_set_matches_set(ops):
    ours, ref = tm.Set(), set()
    for kind, k in ops:
        try:
            if kind == "update":
                ref.update([k, k + "x" if isinstance(k, str) else k + 1])
                ours.update([k, k + "x" if isinstance(k, str) else k + 1])
            else:
                getattr(ref, kind)(k)
                getattr(ours, kind)(k)
        except KeyError:
            with pytest.raises(KeyError):
                getattr(ours, kind)(k)
        assert len(ours) == len(ref)
    assert ours == ref and set(ours) == ref
    other = {1, 2, "a"}
    assert ours | other == ref | other and ours & other == ref & other
    assert ours - other == ref - other and ours ^ other == ref ^ other


@SETTINGS
@given(st.lists(st.integers(-(2**40), 2**40), max_size=30))
def test_counter_matches_int(deltas):
    c, ref = tm.Counter(), 0
    for d in deltas:
        c.add(d)
        ref += d
    assert c == ref and int(c) == ref and c.get() == ref


@SETTINGS
@given(st.lists(values, max_size=30))
def test_log_and_queue_match_list(items):
    log, q = tm.Log(), tm.Queue()
    for x in items:
        log.append(x)
        q.put(x)
    assert list(log) == items and len(log) == len(items) and log == items
    if items:
        assert log[-1] == items[-1] and log[0] == items[0]
    assert [q.get_nowait() for _ in items] == items


def test_queue_get_on_empty_raises_empty():
    import queue

    with pytest.raises(queue.Empty):
        tm.Queue().get_nowait()


def test_queue_timeouts_and_bounds_like_queue_queue():
    import queue

    for q in (tm.Queue(), queue.Queue()):
        started = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.05)
        assert 0.05 <= time.monotonic() - started < 5
        with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
            q.get(timeout=-1)
        assert q.maxsize == 0 and not q.full()

    for q in (tm.Queue(2), queue.Queue(2)):
        q.put("a")
        q.put_nowait("b")
        assert q.full() and q.qsize() == 2 and q.maxsize == 2
        with pytest.raises(queue.Full):
            q.put_nowait("c")
        started = time.monotonic()
        with pytest.raises(queue.Full):
            q.put("c", timeout=0.05)
        assert time.monotonic() - started >= 0.05
        assert q.get(block=False) == "a" and not q.full()
        q.put("c", block=False)
        assert [q.get(), q.get()] == ["b", "c"]


def test_a_timeout_inside_a_transaction_counts_from_its_first_attempt():
    # The wait reruns the whole transaction; the rerun must not start the timeout afresh, on the
    # main thread (which wakes every 100 ms for signals) or any other.
    import queue

    q = tm.Queue()
    outcome = []

    def take():
        started = time.monotonic()
        try:
            tm.run_atomic(lambda: q.get(timeout=0.3))
        except queue.Empty:
            outcome.append(time.monotonic() - started)

    take()
    other = threading.Thread(target=take)
    other.start()
    other.join(30)
    assert len(outcome) == 2 and all(0.3 <= t < 10 for t in outcome), outcome


def test_queue_task_done_and_join_like_queue_queue():
    import queue

    for q in (tm.Queue(), queue.Queue()):
        q.join()  # nothing put: returns at once
        q.put(1)
        q.put(2)
        q.get()
        q.task_done()
        finished = []

        def consume():
            time.sleep(0.05)
            q.get()
            finished.append(True)
            q.task_done()

        consumer = threading.Thread(target=consume)
        consumer.start()
        q.join()  # waits for the consumer's task_done
        assert finished and q.empty()
        consumer.join()
        with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
            q.task_done()


def test_a_blocked_queue_get_wakes_on_put_and_stays_in_its_transaction():
    q = tm.Queue(1)
    got = []
    taker = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
    taker.start()
    time.sleep(0.05)
    q.put("x")
    taker.join(10)
    assert got == ["x"]
    # Inside a restartable transaction a full put waits, a get makes room: both in order.
    q.put("y")
    filler = threading.Thread(target=lambda: tm.run_atomic(lambda: q.put("z", timeout=30)))
    filler.start()
    time.sleep(0.05)
    assert q.get() == "y"
    filler.join(10)
    assert q.get_nowait() == "z"
    # An irrevocable block cannot wait: a full or empty queue raises, join() is a RuntimeError.
    import queue

    with pytest.raises(queue.Empty), tm.atomic():
        q.get()
    q.put(1)
    with pytest.raises(RuntimeError, match="join"), tm.atomic():
        q.join()


def test_var_get_set_swap():
    v = tm.Var()
    assert v.get() is None
    v.set([1])
    assert v.swap(2) == [1] and v.value == 2
    assert repr(v) == "tm.Var(2)"


@pytest.mark.parametrize(
    "make",
    [
        lambda: tm.Dict({"a": 1, 2: [3]}),
        lambda: tm.List([1, "x", None]),
        lambda: tm.Set({1, 2, 3}),
        lambda: tm.Counter(41),
        lambda: tm.Log([1, 2]),
        lambda: tm.Var({"k": 1}),
    ],
)
def test_copy_pickle_repr(make):
    obj = make()
    for clone in (copy.copy(obj), pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
        assert type(clone) is type(obj) and clone is not obj
        if isinstance(obj, tm.Var):
            assert clone.get() == obj.get()
        else:
            assert clone == obj
    assert repr(obj).startswith("tm.")


class Account(tm.Object):
    kind = "account"

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    @property
    def rich(self):
        return self.balance > 100

    def deposit(self, n):
        self.balance += n


def test_object_attributes_behave_like_plain_attributes():
    a = Account("ann", 10)
    assert a.owner == "ann" and a.balance == 10 and a.kind == "account" and not a.rich
    a.deposit(200)
    assert a.balance == 210 and a.rich
    a.note = "x"
    assert getattr(a, "note") == "x" and hasattr(a, "note")
    del a.note
    assert not hasattr(a, "note")
    with pytest.raises(AttributeError):
        del a.note
    with pytest.raises(AttributeError):
        a.missing
    a.kind = "mine"  # an instance attribute shadows the class attribute, as usual
    assert a.kind == "mine" and Account.kind == "account"
    b = pickle.loads(pickle.dumps(a))
    assert (b.owner, b.balance, b.kind) == ("ann", 210, "mine")
    c = copy.copy(a)
    assert c.__getstate__() == a.__getstate__()
    assert tm.Object(x=1, y=2).__getstate__() == {"x": 1, "y": 2}


def test_object_getattr_fallback_and_subclass_without_super_init():
    class Lazy(tm.Object):
        def __init__(self):  # no super().__init__(): allowed
            self.a = 1

        def __getattr__(self, name):
            return "fallback:" + name

    x = Lazy()
    assert x.a == 1 and x.zzz == "fallback:zzz"


def test_object_dir_lists_the_transactional_attributes():
    a = Account("bob", 5)
    names = dir(a)
    assert {"owner", "balance", "kind", "rich"} <= set(names) and "__class__" in names
    assert names == sorted(names)
    del a.balance
    assert "balance" not in dir(a)


def test_object_attribute_writes_are_transactional():
    a = Account("bob", 5)

    def body():
        a.balance = 99
        raise ValueError

    with pytest.raises(ValueError):
        tm.atomic(body)()
    assert a.balance == 5  # the failed transaction left nothing behind
