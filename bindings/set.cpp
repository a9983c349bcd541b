// tm.Set's core over PyMap (unordered: blind adds of different keys never conflict). The Python
// class tm.Set adds the rest of the set protocol.

#include <pybind11/pybind11.h>

#include "builtin_calls.hpp"
#include "gc.hpp"
#include "map.hpp"

namespace tmr::bindings {

namespace {

class Set {
 public:
  Set() : map_(false, "tm.Set") {}

  /// Blind add: in a with-block that is not inevitable yet it is deferred and replayed (it never
  /// forces inevitability); elsewhere a bucket read-modify-write.
  void add(PyObject* self, const py::object& key) {
    const Py_hash_t h = hash_of(key.ptr());
    PyRef k = PyRef::borrow(key.ptr());
    transact(this, Access::conflict_free, [&](stm::Transaction& tx) {
      if (must_defer(tx)) {
        PyRef keep = PyRef::borrow(self);
        tx_state().deferred.emplace_back([keep, k, h, this](stm::Transaction& t) {
          map_.put(t, k.get(), h, PyRef::borrow(Py_None), false);
        });
      } else {
        map_.put(tx, key.ptr(), h, PyRef::borrow(Py_None), false);
      }
    });
  }
  bool contains(const py::object& key) {
    const Py_hash_t h = hash_of(key.ptr());
    bool found = false;
    transact(this, Access::read,
             [&](stm::Transaction& tx) { found = static_cast<bool>(map_.get(tx, key.ptr(), h)); });
    return found;
  }
  bool discard(const py::object& key) {
    const Py_hash_t h = hash_of(key.ptr());
    bool found = false;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      found = static_cast<bool>(map_.erase(tx, key.ptr(), h));
    });
    return found;
  }
  std::int64_t size() {
    std::int64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = map_.size(tx); });
    return n;
  }
  py::list items() {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      py::list l;
      for (const PyMap::Entry* e : map_.entries(tx)) l.append(py::handle(e->key.get()));
      out = std::move(l);
    });
    return out;
  }
  void clear() {
    transact(this, Access::write, [&](stm::Transaction& tx) { map_.clear(tx); });
  }

 private:
  PyMap map_;

 public:
  int gc_traverse(visitproc visit, void* arg) const { return map_.gc_traverse(visit, arg); }
  void gc_clear() { map_.gc_clear(); }
};

// What a server does with a set of its clients per event (add, discard, `in`, len, iterate) as
// builtin methods, without pybind11's dispatch (builtin_calls.hpp).

PyObject* set_add(PyObject* self, PyObject* item) {
  return method_call<Set>(self, [self, item](Set& s) {
    s.add(self, py::reinterpret_borrow<py::object>(item));
    Py_RETURN_NONE;
  });
}

PyObject* set_contains(PyObject* self, PyObject* item) {
  return method_call<Set>(self, [item](Set& s) {
    return PyBool_FromLong(static_cast<long>(s.contains(py::reinterpret_borrow<py::object>(item))));
  });
}

PyObject* set_discard(PyObject* self, PyObject* item) {
  return method_call<Set>(self, [item](Set& s) {
    return PyBool_FromLong(static_cast<long>(s.discard(py::reinterpret_borrow<py::object>(item))));
  });
}

PyObject* set_discard_quietly(PyObject* self, PyObject* item) {
  PyObject* found = set_discard(self, item);
  if (found == nullptr) return nullptr;
  Py_DECREF(found);
  Py_RETURN_NONE;
}

PyObject* set_len(PyObject* self, PyObject* /*unused*/) {
  return method_call<Set>(self, [](Set& s) { return PyLong_FromLongLong(s.size()); });
}

PyObject* set_items(PyObject* self, PyObject* /*unused*/) {
  return method_call<Set>(self, [](Set& s) { return s.items().release().ptr(); });
}

PyObject* set_iter(PyObject* self, PyObject* /*unused*/) {
  return method_call<Set>(self, [](Set& s) { return PyObject_GetIter(s.items().ptr()); });
}

PyMethodDef g_add_def = {
    "add", set_add, METH_O,
    "add($self, item, /)\n--\n\nAdds item (blind: never forces inevitability)."};
PyMethodDef g_contains_def = {"__contains__", set_contains, METH_O, "Return item in self."};
PyMethodDef g_discard_def = {"_discard", set_discard, METH_O,
                             "Removes item if present; whether it was."};
PyMethodDef g_discard_quietly_def = {
    "discard", set_discard_quietly, METH_O,
    "discard($self, item, /)\n--\n\nRemoves item if it is a member."};
PyMethodDef g_len_def = {"__len__", set_len, METH_NOARGS, "Return len(self)."};
PyMethodDef g_items_def = {"_items", set_items, METH_NOARGS,
                           "The items, as a list (one consistent read)."};
PyMethodDef g_iter_def = {"__iter__", set_iter, METH_NOARGS,
                          "Iterates over the items of one consistent read."};

}  // namespace

void init_set(py::module_& m) {
  auto cls =
      py::class_<Set>(m, "Set", "The core of tm.Set (a transactional hash set).", gc_support<Set>())
          .def(py::init<>())
          .def("clear", &Set::clear, "Removes every item.");
  for (PyMethodDef* def : {&g_add_def, &g_contains_def, &g_discard_def, &g_discard_quietly_def,
                           &g_len_def, &g_items_def, &g_iter_def})
    add_builtin_method(cls, def);
}

}  // namespace tmr::bindings
