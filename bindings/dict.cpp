// tm.Dict's core over PyMap (insertion-ordered). The Python class tm.Dict adds the rest of the
// mapping protocol on these primitives.

#include <pybind11/pybind11.h>

#include "builtin_calls.hpp"
#include "gc.hpp"
#include "map.hpp"

namespace tmr::bindings {

namespace {

class Dict {
 public:
  Dict() : map_(true, "tm.Dict") {}

  /// The value, or nullptr-like None handle when absent (`found` says which).
  py::object lookup(const py::object& key, bool& found) {
    const Py_hash_t h = hash_of(key.ptr());
    py::object out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      PyRef v = map_.get(tx, key.ptr(), h);
      found = static_cast<bool>(v);
      out = found ? py::reinterpret_borrow<py::object>(v.get()) : py::object();
    });
    return out;
  }
  void set(const py::object& key, const py::object& value) {
    const Py_hash_t h = hash_of(key.ptr());
    PyRef v = PyRef::borrow(value.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) { map_.put(tx, key.ptr(), h, v); });
  }
  py::object pop(const py::object& key, bool& found) {
    const Py_hash_t h = hash_of(key.ptr());
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      PyRef v = map_.erase(tx, key.ptr(), h);
      found = static_cast<bool>(v);
      out = found ? py::reinterpret_borrow<py::object>(v.get()) : py::object();
    });
    return out;
  }
  std::int64_t size() {
    std::int64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = map_.size(tx); });
    return n;
  }
  /// 0: keys, 1: values, 2: (key, value) tuples; one consistent read, in insertion order.
  py::list items(int what) {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      py::list l;
      for (const PyMap::Entry* e : map_.entries(tx)) {
        if (what == 0) {
          l.append(py::handle(e->key.get()));
        } else if (what == 1) {
          l.append(py::handle(e->value.get()));
        } else {
          l.append(py::make_tuple(py::handle(e->key.get()), py::handle(e->value.get())));
        }
      }
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

// The accesses a server makes per request (`clients.get(name)`, `name in clients`,
// `clients[name] = p`, `len(clients)`) as builtin methods: without pybind11's dispatch, about
// 0.3 us a call on the free-threaded interpreter (builtin_calls.hpp).

PyObject* missing_key(PyObject* key) {
  // KeyError(key), as a dict raises it: a tuple given to PyErr_SetObject would become the args.
  PyObject* args = PyTuple_New(1);
  if (args != nullptr) {
    PyTuple_SET_ITEM(args, 0, Py_NewRef(key));
    PyErr_SetObject(PyExc_KeyError, args);
    Py_DECREF(args);
  }
  return nullptr;
}

PyObject* dict_getitem(PyObject* self, PyObject* key) {
  return method_call<Dict>(self, [key](Dict& d) {
    bool found = false;
    py::object v = d.lookup(py::reinterpret_borrow<py::object>(key), found);
    return found ? v.release().ptr() : missing_key(key);
  });
}

PyObject* dict_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1 || nargs > 2) {
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg): CPython's formatter
    PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
    return nullptr;
  }
  return method_call<Dict>(self, [args, nargs](Dict& d) {
    bool found = false;
    py::object v = d.lookup(py::reinterpret_borrow<py::object>(args[0]), found);
    if (found) return v.release().ptr();
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
  });
}

PyObject* dict_contains(PyObject* self, PyObject* key) {
  return method_call<Dict>(self, [key](Dict& d) {
    bool found = false;
    d.lookup(py::reinterpret_borrow<py::object>(key), found);
    return PyBool_FromLong(static_cast<long>(found));
  });
}

PyObject* dict_setitem(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "__setitem__ expected 2 arguments");
    return nullptr;
  }
  return method_call<Dict>(self, [args](Dict& d) {
    d.set(py::reinterpret_borrow<py::object>(args[0]), py::reinterpret_borrow<py::object>(args[1]));
    Py_RETURN_NONE;
  });
}

PyObject* dict_len(PyObject* self, PyObject* /*unused*/) {
  return method_call<Dict>(self, [](Dict& d) { return PyLong_FromLongLong(d.size()); });
}

PyMethodDef g_getitem_def = {"__getitem__", dict_getitem, METH_O, "Return self[key]."};
PyMethodDef g_get_def = {
    "get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&dict_get)), METH_FASTCALL,
    "get($self, key, default=None, /)\n--\n\nThe value for key if key is in the dict, else "
    "default."};
PyMethodDef g_contains_def = {"__contains__", dict_contains, METH_O, "Return key in self."};
PyMethodDef g_setitem_def = {
    "__setitem__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&dict_setitem)),
    METH_FASTCALL, "Set self[key] to value."};
PyMethodDef g_len_def = {"__len__", dict_len, METH_NOARGS, "Return len(self)."};

}  // namespace

void init_dict(py::module_& m) {
  auto cls = py::class_<Dict>(m, "Dict",
                              "The core of tm.Dict (a transactional, insertion-ordered hash map).",
                              gc_support<Dict>())
                 .def(py::init<>())
                 .def("__delitem__",
                      [](Dict& d, const py::object& k) {
                        bool found = false;
                        d.pop(k, found);
                        if (found) return;
                        missing_key(k.ptr());
                        throw py::error_already_set();
                      })
                 .def("_pop",
                      [](Dict& d, const py::object& k) {
                        bool found = false;
                        py::object v = d.pop(k, found);
                        return py::make_tuple(found, found ? v : py::none());
                      })
                 .def("_items", &Dict::items, py::arg("what") = 2)
                 .def("clear", &Dict::clear, "Removes every item.");
  for (PyMethodDef* def : {&g_getitem_def, &g_get_def, &g_contains_def, &g_setitem_def, &g_len_def})
    add_builtin_method(cls, def);
}

}  // namespace tmr::bindings
