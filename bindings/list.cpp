// tm.List's core: one cell holding an immutable vector of references (copy-on-write; an
// attempt's own copy is mutated in place). The Python class tm.List adds the rest of the
// sequence protocol on these primitives.

#include <pybind11/pybind11.h>

#include <vector>

#include "builtin_calls.hpp"
#include "gc.hpp"
#include "tx_state.hpp"

namespace tmr::bindings {

namespace {

using Items = std::vector<PyRef>;

void release_items(void* p) {
  delete static_cast<Items*>(p);
}

class List {
 public:
  List() : cell_(new Items, &release_items, "tm.List") {}

  std::int64_t size() {
    std::int64_t n = 0;
    transact(this, Access::read,
             [&](stm::Transaction& tx) { n = static_cast<std::int64_t>(read(tx).size()); });
    return n;
  }
  py::object get(std::int64_t i) {
    py::object out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      const Items& v = read(tx);
      out = py::reinterpret_borrow<py::object>(v[index(i, v.size())].get());
    });
    return out;
  }
  void set(std::int64_t i, const py::object& x) {
    PyRef ref = PyRef::borrow(x.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) {
      Items& v = writable(tx);
      PyRef old = std::move(v[index(i, v.size())]);
      v[index(i, v.size())] = ref;
    });  // `old` dies after the vector is consistent: its __del__ may touch this list
  }
  py::object pop(std::int64_t i) {
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      if (read(tx).empty()) throw py::index_error("pop from empty tm.List");
      Items& v = writable(tx);
      const std::size_t j = index(i, v.size(), "pop index out of range");
      PyRef item = std::move(v[j]);
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(j));
      out = py::reinterpret_borrow<py::object>(item.get());
    });
    return out;
  }
  void del(std::int64_t i) { pop(i); }
  void append(const py::object& x) {
    PyRef ref = PyRef::borrow(x.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) { writable(tx).push_back(ref); });
  }
  void insert(std::int64_t i, const py::object& x) {
    PyRef ref = PyRef::borrow(x.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) {
      Items& v = writable(tx);
      const auto n = static_cast<std::int64_t>(v.size());
      std::int64_t j = i < 0 ? i + n : i;
      j = j < 0 ? 0 : (j > n ? n : j);
      v.insert(v.begin() + j, ref);
    });
  }
  /// Appends every item of a list (materialized by the caller, so extend(self) is safe).
  void extend(const py::list& xs) {
    std::vector<PyRef> refs;
    refs.reserve(xs.size());
    for (py::handle x : xs) refs.push_back(PyRef::borrow(x.ptr()));
    transact(this, Access::write, [&](stm::Transaction& tx) {
      Items& v = writable(tx);
      v.insert(v.end(), refs.begin(), refs.end());
    });
  }
  py::list items() {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      const Items& v = read(tx);
      py::list l(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) {
        PyObject* o = v[i].new_ref();
        PyList_SET_ITEM(l.ptr(), static_cast<Py_ssize_t>(i), o);
      }
      out = std::move(l);
    });
    return out;
  }
  /// Replaces the whole content (a blind write).
  void assign(const py::list& xs) {
    transact(this, Access::write, [&](stm::Transaction& tx) {
      auto* v = new Items;
      v->reserve(xs.size());
      for (py::handle x : xs) v->push_back(PyRef::borrow(x.ptr()));
      store_cell(tx, cell_, v);
    });
  }

 private:
  const Items& read(stm::Transaction& tx) {
    return *static_cast<const Items*>(load_cell(tx, cell_));
  }
  // This attempt's private copy, made on first write (later writes mutate it in place).
  Items& writable(stm::Transaction& tx) {
    if (void* own = own_draft(cell_)) return *static_cast<Items*>(own);
    auto* copy = new Items(*static_cast<const Items*>(tx.load(cell_)));
    store_cell(tx, cell_, copy);
    return *copy;
  }
  static std::size_t index(std::int64_t i, std::size_t n,
                           const char* msg = "tm.List index out of range") {
    const std::int64_t j = i < 0 ? i + static_cast<std::int64_t>(n) : i;
    if (j < 0 || j >= static_cast<std::int64_t>(n)) throw py::index_error(msg);
    return static_cast<std::size_t>(j);
  }

  stm::Cell cell_;  // payload: Items*, immutable once committed

 public:
  /// Cyclic GC (gc.hpp): the committed items; gc_clear() empties an unreachable list.
  int gc_traverse(visitproc visit, void* arg) const {
    if (const auto* v = static_cast<const Items*>(cell_.unsafe_peek()))
      for (const PyRef& r : *v) Py_VISIT(r.get());
    return 0;
  }
  void gc_clear() { cell_.unsafe_reset(new Items); }
};

// What a server does with a list of its clients per event (append, len, index, iterate) as
// builtin methods, without pybind11's dispatch (builtin_calls.hpp).

PyObject* list_len(PyObject* self, PyObject* /*unused*/) {
  return method_call<List>(self, [](List& l) { return PyLong_FromLongLong(l.size()); });
}

PyObject* list_get(PyObject* self, PyObject* index) {
  // An index as a list takes one: an int or an object with __index__; one too large for
  // a C index is out of range.
  const Py_ssize_t i = PyNumber_AsSsize_t(index, PyExc_IndexError);
  if (i == -1 && PyErr_Occurred() != nullptr) return nullptr;
  return method_call<List>(self, [i](List& l) { return l.get(i).release().ptr(); });
}

PyObject* list_append(PyObject* self, PyObject* item) {
  return method_call<List>(self, [item](List& l) {
    l.append(py::reinterpret_borrow<py::object>(item));
    Py_RETURN_NONE;
  });
}

PyObject* list_items(PyObject* self, PyObject* /*unused*/) {
  return method_call<List>(self, [](List& l) { return l.items().release().ptr(); });
}

PyObject* list_getitem(PyObject* self, PyObject* index) {
  if (!PySlice_Check(index)) return list_get(self, index);
  // A slice is a new list of the same class, as list's slices are lists.
  PyObject* items = list_items(self, nullptr);
  if (items == nullptr) return nullptr;
  PyObject* part = PyObject_GetItem(items, index);
  Py_DECREF(items);
  if (part == nullptr) return nullptr;
  PyObject* out = PyObject_CallOneArg(reinterpret_cast<PyObject*>(Py_TYPE(self)), part);
  Py_DECREF(part);
  return out;
}

PyObject* list_iter(PyObject* self, PyObject* /*unused*/) {
  return method_call<List>(self, [](List& l) { return PyObject_GetIter(l.items().ptr()); });
}

PyMethodDef g_len_def = {"__len__", list_len, METH_NOARGS, "Return len(self)."};
PyMethodDef g_get_def = {"_get", list_get, METH_O, "The item at index."};
PyMethodDef g_getitem_def = {"__getitem__", list_getitem, METH_O, "Return self[index]."};
PyMethodDef g_append_def = {"append", list_append, METH_O,
                            "append($self, item, /)\n--\n\nAppends item."};
PyMethodDef g_items_def = {"_items", list_items, METH_NOARGS,
                           "The items, as a list (one consistent read)."};
PyMethodDef g_iter_def = {"__iter__", list_iter, METH_NOARGS,
                          "Iterates over the items of one consistent read."};

}  // namespace

void init_list(py::module_& m) {
  auto cls = py::class_<List>(
      m, "List", "The core of tm.List (one consistent vector, copy-on-write).", gc_support<List>());
  cls.def(py::init<>())
      .def("_set", &List::set, py::arg("index"), py::arg("value"))
      .def("_del", &List::del, py::arg("index"))
      .def("pop", &List::pop, py::arg("index") = -1, "Removes and returns the item at index.")
      .def("insert", &List::insert, py::arg("index"), py::arg("item"), "Inserts item before index.")
      .def("_extend", &List::extend, py::arg("items"))
      .def("_assign", &List::assign, py::arg("items"), "Replaces every item.");
  for (PyMethodDef* def :
       {&g_len_def, &g_get_def, &g_getitem_def, &g_append_def, &g_items_def, &g_iter_def})
    add_builtin_method(cls, def);
}

}  // namespace tmr::bindings
