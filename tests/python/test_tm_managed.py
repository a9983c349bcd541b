"""tm.manage: the attribute state of an ordinary object made transactional (factories)."""

import threading

import pytest

import tm


class Factory:
    protocol = int  # a plain class-level value: an instance attribute of the same name wins
    numPorts = 0

    def __init__(self):
        self.users = {}
        self.names = []
        self.seen = set()
        self.count = 0

    def greet(self, name):
        return f"hello {name}"

    @property
    def size(self):
        return len(self.users)


class Slotted:
    __slots__ = ("x",)


def test_attributes_move_into_a_transactional_table():
    f = tm.manage(Factory())
    assert tm.is_managed(f)
    assert isinstance(f, Factory) and type(f).__name__ == "Factory"
    assert isinstance(f.users, tm.Dict) and isinstance(f.names, tm.List)
    assert isinstance(f.seen, tm.Set)
    assert f.count == 0 and f.greet("x") == "hello x" and f.size == 0


def test_containers_stored_later_are_converted_and_dunders_stay_plain():
    f = tm.manage(Factory())
    f.extra = [1, 2]
    assert isinstance(f.extra, tm.List) and list(f.extra) == [1, 2]
    f.numPorts = f.numPorts + 1  # shadows the class-level value, as in Twisted's doStart
    assert f.numPorts == 1 and Factory.numPorts == 0
    del f.extra
    with pytest.raises(AttributeError):
        f.extra
    with pytest.raises(AttributeError):
        del f.missing


def test_an_instance_attribute_shadowing_a_method_wins_as_in_python():
    f = tm.manage(Factory())
    f.greet = lambda name: f"hi {name}"
    assert f.greet("x") == "hi x"
    del f.greet
    assert f.greet("x") == "hello x"
    with pytest.raises(AttributeError):
        f.size = 3  # a property without a setter, as on a plain object


def test_a_method_shadowed_before_management_stays_shadowed():
    f = Factory()
    f.greet = lambda name: f"hey {name}"
    tm.manage(f)
    assert f.greet("x") == "hey x"


def test_manage_is_idempotent_and_refuses_objects_without_dict():
    f = Factory()
    assert tm.manage(tm.manage(f)) is f
    with pytest.raises(TypeError):
        tm.manage(Slotted())


def test_containers_mode_converts_only_the_values_held_now():
    f = tm.manage(Factory(), mode="containers")
    assert not tm.is_managed(f) and type(f) is Factory
    assert isinstance(f.users, tm.Dict)
    f.later = []
    assert type(f.later) is list


def test_a_class_chooses_its_mode():
    class Opted(Factory):
        __tm_manage__ = "off"

    f = tm.manage(Opted())
    assert type(f) is Opted and type(f.users) is dict


def test_updates_from_many_threads_are_not_lost():
    f = tm.manage(Factory())
    threads, per_thread = 4, 300

    def work(i):
        for n in range(per_thread):

            def step():
                f.count += 1
                f.users[(i, n)] = n
                f.names.append(n)

            tm.atomic(step)()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert f.count == threads * per_thread
    assert len(f.users) == threads * per_thread and len(f.names) == threads * per_thread


def test_an_aborted_transaction_leaves_the_attributes_unchanged():
    f = tm.manage(Factory())

    def fails():
        f.count = 42
        f.users["a"] = 1
        raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        tm.atomic(fails)()
    assert f.count == 0 and "a" not in f.users


class Dynamic(Factory):
    """A class with __getattr__ (asked for what the instance and the class lack) and a property
    with a setter: the managed class's C attribute access keeps Python's order for both."""

    def __init__(self):
        super().__init__()
        self._limit = 1

    def __getattr__(self, name):
        if name.startswith("dyn_"):
            return name[4:]
        raise AttributeError(name)

    @property
    def limit(self):
        return self._limit

    @limit.setter
    def limit(self, value):
        self._limit = value

    @staticmethod
    def static(x):
        return x + 1

    @classmethod
    def made_by(cls):
        return cls.__name__


def test_getattr_and_descriptors_keep_pythons_lookup_order():
    f = tm.manage(Dynamic())
    plain = Dynamic()
    assert f.dyn_rooms == "rooms" and f.count == 0
    f.dyn_set = "stored"  # stored in the table: no longer asks __getattr__
    assert f.dyn_set == "stored"
    with pytest.raises(AttributeError):
        f.missing
    f.limit = 5  # the property's setter runs, and stores through the table
    assert f.limit == 5 and f._limit == 5
    assert f.static(1) == 2 and f.made_by() == "Dynamic"
    for obj in (f, plain):
        with pytest.raises(TypeError) as managed_error:
            setattr(obj, 1, 2)
        with pytest.raises(TypeError):
            getattr(obj, 1)
    assert "attribute name must be string" in str(managed_error.value)


def test_missing_attribute_error_reads_as_on_a_plain_object():
    f = tm.manage(Factory())
    with pytest.raises(AttributeError) as managed:
        f.nothing_here
    with pytest.raises(AttributeError) as plain:
        Factory().nothing_here
    assert str(managed.value) == str(plain.value)


def test_object_setattr_still_applies_to_a_managed_object():
    # object.__setattr__ refuses an object whose type has a C-level setattro it would skip; the
    # managed class keeps CPython's slot for __setattr__ (bindings/managed_object.cpp).
    f = tm.manage(Factory())
    object.__setattr__(f, "__doc__", "set through object.__setattr__")
    assert f.__doc__ == "set through object.__setattr__"
