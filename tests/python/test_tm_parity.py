"""The protocols of each managed type against its builtin counterpart, property-based
(hypothesis): equality and ordering, repr, views, operators, copying and pickling of arbitrary
contents, and tm.Object against a plain object. (Mutation sequences are in test_tm_types.py.)"""

import copy
import math
import operator
import pickle
import queue

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tm

keys = st.one_of(st.integers(-20, 20), st.text(max_size=2))
values = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.tuples(st.integers(0, 3)))
SETTINGS = settings(max_examples=30, deadline=None)
lists = st.lists(values, max_size=12)
small_int_lists = st.lists(st.integers(-3, 3), max_size=6)
dicts = st.dictionaries(keys, values, max_size=10)
sets = st.sets(keys, max_size=10)


def _clones(obj):
    return [copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj)), obj.copy()]


@SETTINGS
@given(dicts, dicts)
def test_dict_protocols(ref, other):
    ours = tm.Dict(ref)
    assert ours == ref and (ours != ref) is False and (ours == other) == (ref == other)
    assert ours == tm.Dict(ref) and tm.Dict(ref) == ours
    assert len(ours) == len(ref) and bool(ours) == bool(ref)
    assert list(ours) == list(ref) and list(reversed(ours)) == list(reversed(ref))
    assert ours.keys() == ref.keys() and ours.items() == ref.items()
    assert list(ours.values()) == list(ref.values())
    assert ours.keys() & other.keys() == ref.keys() & other.keys()
    assert ours.items() | other.items() == ref.items() | other.items()
    for k in list(other) + list(ref):
        assert (k in ours) == (k in ref) and ours.get(k, "d") == ref.get(k, "d")
        assert ours.get(k) == ref.get(k)
    missing = ("missing", len(ref))
    with pytest.raises(KeyError) as ours_error:
        ours[missing]
    with pytest.raises(KeyError) as ref_error:
        ref[missing]
    assert ours_error.value.args == ref_error.value.args
    with pytest.raises(KeyError) as ours_error:
        del ours[missing]
    assert ours_error.value.args == ref_error.value.args
    for bad in ((), ("a", "b", "c")):
        with pytest.raises(TypeError):
            ours.get(*bad)
    assert ours | other == ref | other and other | ours == other | ref
    assert type(other | ours) is dict
    merged = tm.Dict(ref)
    merged |= other
    assert merged == {**ref, **other}
    assert tm.Dict.fromkeys(other, 0) == dict.fromkeys(other, 0)
    assert repr(ours) == f"tm.Dict({ref!r})"
    for clone in _clones(ours):
        assert type(clone) is tm.Dict and clone == ref and list(clone) == list(ref)
        clone["fresh-key"] = 1
        assert "fresh-key" not in ours  # a copy, not a view
    if ref:
        assert ours.popitem() == dict(ref).popitem()


@SETTINGS
@given(
    lists,
    lists,
    st.integers(-3, 3),
    st.integers(-14, 14),
    st.integers(-14, 14),
    st.sampled_from([None, 1, 2, -1, -2]),
)
def test_list_protocols(ref, other, n, i, j, step):
    ours = tm.List(ref)
    assert ours == ref and ours == tm.List(ref) and (ours != ref) is False
    assert len(ours) == len(ref) and bool(ours) == bool(ref)
    assert list(ours) == ref and list(reversed(ours)) == list(reversed(ref))
    assert ours[i:j:step] == ref[i:j:step] and type(ours[i:j]) is tm.List
    if -len(ref) <= i < len(ref):
        assert ours[i] == ref[i]
    else:
        with pytest.raises(IndexError):
            ours[i]
    assert ours + other == ref + other and other + ours == other + ref
    assert ours * n == ref * n and n * ours == n * ref
    for x in other:
        assert (x in ours) == (x in ref) and ours.count(x) == ref.count(x)
    assert repr(ours) == f"tm.List({ref!r})"
    for clone in _clones(ours):
        assert type(clone) is tm.List and clone == ref
        clone.append("fresh")
        assert len(ours) == len(ref)
    ours += other
    assert ours == ref + other
    assert copy.copy(ours) == ref + other


@SETTINGS
@given(small_int_lists, small_int_lists)
def test_list_ordering_and_sorting(a, b):
    ta, tb = tm.List(a), tm.List(b)
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        assert getattr(ta, op)(b) == getattr(a, op)(b)
        assert getattr(ta, op)(tb) == getattr(a, op)(b)
    assert (ta == tb) == (a == b)
    ta.sort(reverse=True)
    assert ta == sorted(a, reverse=True)
    ta.sort(key=lambda x: (x % 2, x))
    assert ta == sorted(a, key=lambda x: (x % 2, x))
    ta[1:3] = b
    ref = sorted(a, key=lambda x: (x % 2, x))
    ref[1:3] = b
    assert ta == ref


@SETTINGS
@given(sets, sets)
def test_set_protocols(ref, other):
    ours = tm.Set(ref)
    assert ours == ref and ours == frozenset(ref) and ours == tm.Set(ref)
    assert len(ours) == len(ref) and bool(ours) == bool(ref) and set(ours) == ref
    for x in other | ref:
        assert (x in ours) == (x in ref)
    for op in ("__or__", "__and__", "__sub__", "__xor__"):
        assert getattr(ours, op)(other) == getattr(ref, op)(other)
    for op in ("__le__", "__lt__", "__ge__", "__gt__", "issubset", "issuperset", "isdisjoint"):
        assert getattr(ours, op)(other) == getattr(ref, op)(other)
    # With a builtin set on the left the result is the left operand's type, as for a set subclass.
    for op in (operator.or_, operator.and_, operator.sub, operator.xor):
        for left in (set(other), frozenset(other)):
            got = op(left, ours)
            assert type(got) is type(left) and got == op(left, ref)
        assert op(ours, frozenset(other)) == op(ref, frozenset(other))
    # Methods take any iterables, several at once; operators only sets, as set's do.
    evens, odds = list(other)[::2], list(other)[1::2]
    for name in ("union", "intersection", "difference"):
        assert getattr(ours, name)(evens, iter(odds)) == getattr(ref, name)(evens, iter(odds))
    assert ours.symmetric_difference(list(other)) == ref.symmetric_difference(list(other))
    for op in (
        operator.or_,
        operator.and_,
        operator.sub,
        operator.xor,
        operator.le,
        operator.lt,
        operator.ior,
    ):
        with pytest.raises(TypeError):
            op(set(ref), list(other))
        with pytest.raises(TypeError):
            op(tm.Set(ref), list(other))
    for op in ("__ior__", "__iand__", "__isub__", "__ixor__"):
        mine, theirs = tm.Set(ref), set(ref)
        assert getattr(mine, op)(other) is mine
        getattr(theirs, op)(other)
        assert mine == theirs
    assert repr(ours) == f"tm.Set({set(ours)!r})" and eval(repr(ours)[7:-1]) == ref
    for clone in _clones(ours):
        assert type(clone) is tm.Set and clone == ref
        clone.add("fresh")
        assert "fresh" not in ours or "fresh" in ref
    if ref:
        popped = ours.pop()
        assert popped in ref and ours == ref - {popped}
    else:
        with pytest.raises(KeyError):
            ours.pop()


@SETTINGS
@given(st.integers(-(2**40), 2**40), st.integers(-(2**40), 2**40))
def test_counter_protocols(a, b):
    c = tm.Counter(a)
    assert c == a and int(c) == a and (c < b) == (a < b) and (c >= b) == (a >= b)
    # Everything but add() reads the value and behaves as that int: arithmetic gives plain
    # numbers, with ints, floats and other counters on either side.
    for op in (
        operator.add,
        operator.sub,
        operator.mul,
        operator.floordiv,
        operator.mod,
        operator.truediv,
        divmod,
        operator.eq,
        operator.ne,
        operator.lt,
        operator.le,
        operator.and_,
        operator.or_,
        operator.xor,
        _small_pow,
        _small_shift,
    ):
        for other in (b, b + 0.5, tm.Counter(b)):
            expected = _result(op, a, getattr(other, "value", other))
            assert _result(op, c, other) == expected
            assert _result(op, other, c) == _result(op, getattr(other, "value", other), a)
    assert (-c, +c, abs(c), float(c), bool(c)) == (-a, a, abs(a), float(a), bool(a))
    assert (~c, round(c), round(c, -2), math.trunc(c), math.floor(c), math.ceil(c)) == (
        ~a,
        round(a),
        round(a, -2),
        a,
        a,
        a,
    )
    assert operator.index(c) == a and f"{c:+,}" == f"{a:+,}"
    with pytest.raises(TypeError):
        c + "1"
    same = c
    same += 0  # in place: still the counter, not an int
    assert same is c
    c += b
    assert c == a + b and c.value == a + b
    c -= b
    assert c == a
    assert repr(c) == f"tm.Counter({a})"
    for clone in (copy.copy(c), copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
        assert type(clone) is tm.Counter and clone == a
        clone.add(1)
        assert c == a


def _result(op, x, y):
    """op(x, y), or the type of the exception it raised."""
    try:
        return op(x, y)
    except (ArithmeticError, TypeError, ValueError) as e:  # int & float is a TypeError, too
        return type(e)


def _small_pow(x, y):
    return operator.pow(x, operator.mod(y, 5))  # keeps big integers out of the test


def _small_shift(x, y):
    return operator.lshift(x, operator.mod(y, 7))


@SETTINGS
@given(lists, values)
def test_log_protocols(ref, x):
    log = tm.Log(ref)
    assert log == ref and len(log) == len(ref) and list(log) == ref and log[:] == ref
    assert (x in log) == (x in ref)
    assert repr(log) == f"tm.Log({ref!r})"
    for clone in (copy.copy(log), copy.deepcopy(log), pickle.loads(pickle.dumps(log)), log.copy()):
        assert type(clone) is tm.Log and clone == ref
        clone.append("fresh")
        assert len(log) == len(ref)
    log.extend([x, x])
    assert log == ref + [x, x] and log[-1] == x
    # What collections.abc.Sequence promises (tm.Log is registered as one).
    assert list(reversed(log)) == list(reversed(ref + [x, x]))
    assert log.count(x) == (ref + [x, x]).count(x) and log.index(x) == (ref + [x, x]).index(x)
    assert log.index(x, len(ref)) == len(ref)


@SETTINGS
@given(lists)
def test_queue_protocols_like_queue_queue(items):
    q, ref = tm.Queue(), queue.Queue()
    for x in items:
        q.put(x)
        ref.put(x)
    assert q.qsize() == ref.qsize() == len(q) and q.empty() == ref.empty()
    assert [q.get_nowait() for _ in items] == [ref.get_nowait() for _ in items]
    assert q.empty() and ref.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(TypeError):  # like queue.Queue, a queue is not pickled
        pickle.dumps(q)


@SETTINGS
@given(tm_var=st.one_of(values, lists))
def test_var_protocols(tm_var):
    v = tm.Var(tm_var)
    assert v.get() == tm_var and v.value == tm_var
    assert repr(v) == f"tm.Var({tm_var!r})"
    for clone in (copy.copy(v), copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert type(clone) is tm.Var and clone.get() == tm_var
        clone.set("fresh")
        assert v.get() == tm_var


class _Index:
    def __index__(self):
        return 1


@pytest.mark.parametrize("index", [True, _Index(), -1, 3, -4, 10**30, "1", 1.0, None])
def test_list_index_arguments_raise_what_list_raises(index):
    ref = [10, 20, 30]
    ours = tm.List(ref)
    try:
        expected = ref[index]
    except Exception as exc:  # the builtin's exception type is the contract
        with pytest.raises(type(exc)):
            ours[index]
    else:
        assert ours[index] == expected


def test_builtin_methods_take_the_arguments_the_builtins_take():
    lst, s, v = tm.List(), tm.Set(), tm.Var()
    for call in (
        lambda: lst.append(),
        lambda: lst.append(1, 2),
        lambda: lst.append(item=1),
        lambda: s.add(),
        lambda: s.add(item=1),
        lambda: s.discard(),
        lambda: v.set(),
        lambda: v.set(1, 2),
        lambda: v.get(1),
        lambda: len(tm.Set(), 1),
    ):
        with pytest.raises(TypeError):
            call()
    assert s.discard("absent") is None and lst.append(1) is None and v.set(2) is None
    assert lst == [1] and v.value == 2
    v.value = 3
    assert v.get() == 3
    with pytest.raises(AttributeError):
        del v.value
    assert v.get() == 3


def test_iteration_sees_one_consistent_read():
    lst, s = tm.List([1, 2]), tm.Set({1, 2})
    it_list, it_set = iter(lst), iter(s)
    lst.append(3)
    s.add(3)
    assert list(it_list) == [1, 2] and sorted(it_set) == [1, 2]
    assert list(lst) == [1, 2, 3] and sorted(s) == [1, 2, 3]


class Plain:
    pass


class Managed(tm.Object):
    pass


attr_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "del", "get"]), st.sampled_from(["a", "b", "c", "_d"]), values
    ),
    max_size=30,
)


@SETTINGS
@given(attr_ops)
def test_object_attributes_match_a_plain_object(ops):
    ours, ref = Managed(), Plain()
    for kind, name, value in ops:
        if kind == "set":
            setattr(ours, name, value)
            setattr(ref, name, value)
        elif kind == "del":
            if hasattr(ref, name):
                delattr(ref, name)
                delattr(ours, name)
            else:
                with pytest.raises(AttributeError):
                    delattr(ours, name)
        else:
            assert hasattr(ours, name) == hasattr(ref, name)
            assert getattr(ours, name, "missing") == getattr(ref, name, "missing")
    assert ours.__getstate__() == vars(ref)
    for clone in (copy.copy(ours), copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert type(clone) is Managed and clone.__getstate__() == vars(ref)
        clone.fresh = 1
        assert not hasattr(ours, "fresh")


def test_reprs_of_containers_that_hold_themselves():
    lst, d, log = tm.List([1]), tm.Dict(), tm.Log()
    lst.append(lst)
    d["me"] = d
    log.append(log)
    ref_list, ref_dict = [1], {}
    ref_list.append(ref_list)
    ref_dict["me"] = ref_dict
    assert repr(lst) == f"tm.List({ref_list!r})" == "tm.List([1, [...]])"
    assert repr(d) == f"tm.Dict({ref_dict!r})" == "tm.Dict({'me': {...}})"
    assert repr(log) == "tm.Log([[...]])"
