// tm.Object: a base class whose instance attributes are transactional.
//
// A C type (not a pybind11 class: subclasses need not call the base __init__) with its own
// tp_getattro/tp_setattro: the generic attribute protocol with the instance __dict__ replaced by
// a transactional table. A table cell holds an immutable vector of (interned name, slot cell);
// each attribute has its own cell, so attributes conflict independently; adding an attribute
// replaces the table (conflicts with readers of that object once); deleting stores null in the
// slot. Data descriptors of the class (properties, __class__, __dict__) keep precedence, as in
// object.__getattribute__.

#include <pybind11/pybind11.h>

#include <memory>
#include <vector>

#include "gc.hpp"
#include "tx_state.hpp"
#include "type_lookup.hpp"

namespace tmr::bindings {

namespace {

struct Slot {
  PyRef name;                       // an interned str
  std::shared_ptr<stm::Cell> cell;  // payload: one PyObject reference, or null when deleted
};
using AttrTable = std::vector<Slot>;
void release_table(void* p) {
  delete static_cast<AttrTable*>(p);
}

struct TObject {
  PyObject_HEAD stm::Cell* table;  // payload: AttrTable*
};

stm::Cell* find_slot(const AttrTable* t, PyObject* name) {
  if (t == nullptr) return nullptr;
  for (const Slot& s : *t)
    if (s.name.get() == name) return s.cell.get();
  for (const Slot& s : *t)
    if (PyUnicode_Compare(s.name.get(), name) == 0) return s.cell.get();
  return nullptr;
}

// The attribute's value (new reference) or nullptr without an error when absent.
PyObject* load_attr(TObject* self, PyObject* name) {
  PyObject* out = nullptr;
  if (stm::current_transaction() != nullptr) keep_alive_handle(reinterpret_cast<PyObject*>(self));
  transact(Access::read, [&](stm::Transaction& tx) {
    Py_CLEAR(out);
    const auto* t = static_cast<const AttrTable*>(load_cell(tx, *self->table));
    if (stm::Cell* c = find_slot(t, name)) {
      out = static_cast<PyObject*>(load_cell(tx, *c));
      Py_XINCREF(out);
    }
  });
  return out;
}

// Stores value (nullptr deletes); returns false when deleting an absent attribute.
bool store_attr(TObject* self, PyObject* name, PyObject* value) {
  bool ok = true;
  if (stm::current_transaction() != nullptr) keep_alive_handle(reinterpret_cast<PyObject*>(self));
  transact(Access::write, [&](stm::Transaction& tx) {
    ok = true;
    const auto* t = static_cast<const AttrTable*>(tx.load(*self->table));
    stm::Cell* c = find_slot(t, name);
    if (c == nullptr) {
      if (value == nullptr) {
        ok = false;
        return;
      }
      auto* next = t ? new AttrTable(*t) : new AttrTable;
      Py_INCREF(name);
      PyObject* interned = name;
      PyUnicode_InternInPlace(&interned);
      next->push_back(
          Slot{PyRef::steal(interned), std::make_shared<stm::Cell>(nullptr, &release_pyobject)});
      c = next->back().cell.get();
      store_cell(tx, *self->table, next);
    } else if (value == nullptr && tx.load(*c) == nullptr) {
      ok = false;
      return;
    }
    Py_XINCREF(value);
    store_cell(tx, *c, value);
  });
  return ok;
}

PyObject* tobject_getattro(PyObject* self, PyObject* name) {
  if (!PyUnicode_Check(name)) return PyObject_GenericGetAttr(self, name);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject* descr = class_lookup(tp, name).release().ptr();
  descrgetfunc get = descr ? Py_TYPE(descr)->tp_descr_get : nullptr;
  if (get != nullptr && Py_TYPE(descr)->tp_descr_set != nullptr) {
    PyObject* r = get(descr, self, reinterpret_cast<PyObject*>(tp));
    Py_DECREF(descr);
    return r;
  }
  PyObject* v = nullptr;
  try {
    v = load_attr(reinterpret_cast<TObject*>(self), name);
  } catch (const stm::AbortSignal& s) {
    Py_XDECREF(descr);
    raise_abort(s.cause);
    return nullptr;
  } catch (py::error_already_set& e) {
    Py_XDECREF(descr);
    e.restore();
    return nullptr;
  } catch (const std::exception& e) {
    Py_XDECREF(descr);
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  if (v != nullptr) {
    Py_XDECREF(descr);
    return v;
  }
  if (get != nullptr) {
    PyObject* r = get(descr, self, reinterpret_cast<PyObject*>(tp));
    Py_DECREF(descr);
    return r;
  }
  if (descr != nullptr) return descr;
  // CPython's own message, from its formatter (variadic, as the C API's are).
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg)
  PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%U'", tp->tp_name, name);
  return nullptr;
}

int tobject_setattro(PyObject* self, PyObject* name, PyObject* value) {
  if (!PyUnicode_Check(name)) return PyObject_GenericSetAttr(self, name, value);
  const py::object descr = class_lookup(Py_TYPE(self), name);
  if (descr && Py_TYPE(descr.ptr())->tp_descr_set != nullptr) {
    return Py_TYPE(descr.ptr())->tp_descr_set(descr.ptr(), self, value);
  }
  try {
    if (!store_attr(reinterpret_cast<TObject*>(self), name, value)) {
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg): as in tobject_getattro
      PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%U'",
                   Py_TYPE(self)->tp_name, name);
      return -1;
    }
  } catch (const stm::AbortSignal& s) {
    raise_abort(s.cause);
    return -1;
  } catch (py::error_already_set& e) {
    e.restore();
    return -1;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return -1;
  }
  return 0;
}

PyObject* tobject_new(PyTypeObject* type, PyObject*, PyObject*) {
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  reinterpret_cast<TObject*>(self)->table =
      new stm::Cell(new AttrTable, &release_table, "tm.Object");
  return self;
}

int tobject_init(PyObject* self, PyObject* args, PyObject* kwargs) {
  if (PyTuple_GET_SIZE(args) != 0) {
    PyErr_SetString(PyExc_TypeError, "tm.Object() takes keyword arguments only");
    return -1;
  }
  if (kwargs == nullptr) return 0;
  PyObject *k = nullptr, *v = nullptr;
  Py_ssize_t pos = 0;
  while (PyDict_Next(kwargs, &pos, &k, &v))
    if (tobject_setattro(self, k, v) < 0) return -1;
  return 0;
}

// Cyclic GC (see gc.hpp): the committed attribute values; tp_clear drops them.
int tobject_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  stm::Cell* table = reinterpret_cast<TObject*>(self)->table;
  if (table == nullptr) return 0;
  const stm::SnapshotPin pin;
  if (const auto* t = static_cast<const AttrTable*>(table->unsafe_peek()))
    for (const Slot& s : *t) Py_VISIT(static_cast<PyObject*>(s.cell->unsafe_peek()));
  return 0;
}

int tobject_clear(PyObject* self) {
  stm::Cell* table = reinterpret_cast<TObject*>(self)->table;
  if (table == nullptr) return 0;
  // Unreachable: no transaction can reach the cells. The table stays (names only).
  if (const auto* t = static_cast<const AttrTable*>(table->unsafe_peek()))
    for (const Slot& s : *t) s.cell->unsafe_reset(nullptr);
  return 0;
}

void tobject_dealloc(PyObject* self) {
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  delete reinterpret_cast<TObject*>(self)->table;  // releases the table and every slot's value
  tp->tp_free(self);
  Py_DECREF(tp);
}

// {name: value} of the attributes, one consistent read (pickling, copying, vars()).
PyObject* tobject_getstate(PyObject* self, PyObject*) {
  auto* o = reinterpret_cast<TObject*>(self);
  try {
    py::dict out;
    if (stm::current_transaction() != nullptr) keep_alive_handle(self);
    transact(Access::read, [&](stm::Transaction& tx) {
      out = py::dict();
      const auto* t = static_cast<const AttrTable*>(load_cell(tx, *o->table));
      for (const Slot& s : *t) {
        if (auto* v = static_cast<PyObject*>(load_cell(tx, *s.cell)))
          out[py::handle(s.name.get())] = py::handle(v);
      }
    });
    return out.release().ptr();
  } catch (const stm::AbortSignal& s) {
    raise_abort(s.cause);
  } catch (py::error_already_set& e) {
    e.restore();
  }
  return nullptr;
}

PyObject* tobject_setstate(PyObject* self, PyObject* state) {
  if (!PyDict_Check(state)) {
    PyErr_SetString(PyExc_TypeError, "tm.Object.__setstate__ expects a dict");
    return nullptr;
  }
  PyObject *k = nullptr, *v = nullptr;
  Py_ssize_t pos = 0;
  while (PyDict_Next(state, &pos, &k, &v))
    if (tobject_setattro(self, k, v) < 0) return nullptr;
  Py_RETURN_NONE;
}

// object.__dir__ plus the transactional attributes, which live outside the instance __dict__.
PyObject* tobject_dir(PyObject* self, PyObject*) {
  PyObject* object_dir =
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyBaseObject_Type), "__dir__");
  if (object_dir == nullptr) return nullptr;
  PyObject* names = PyObject_CallOneArg(object_dir, self);
  Py_DECREF(object_dir);
  if (names == nullptr) return nullptr;
  PyObject* state = tobject_getstate(self, nullptr);
  if (state == nullptr) {
    Py_DECREF(names);
    return nullptr;
  }
  PyObject *k = nullptr, *v = nullptr;
  Py_ssize_t pos = 0;
  int failed = 0;
  while (failed == 0 && PyDict_Next(state, &pos, &k, &v)) failed = PyList_Append(names, k);
  Py_DECREF(state);
  if (failed != 0) Py_CLEAR(names);
  return names;
}

PyMethodDef tobject_methods[] = {
    {"__dir__", tobject_dir, METH_NOARGS, "The default names and the transactional attributes."},
    {"__getstate__", tobject_getstate, METH_NOARGS, "The transactional attributes, as a dict."},
    {"__setstate__", tobject_setstate, METH_O, "Sets attributes from a dict."},
    {nullptr, nullptr, 0, nullptr}};

char tobject_doc[] = "A base class whose instance attributes are transactional.";

PyType_Slot tobject_slots[] = {{Py_tp_doc, tobject_doc},
                               {Py_tp_new, reinterpret_cast<void*>(tobject_new)},
                               {Py_tp_init, reinterpret_cast<void*>(tobject_init)},
                               {Py_tp_dealloc, reinterpret_cast<void*>(tobject_dealloc)},
                               {Py_tp_traverse, reinterpret_cast<void*>(tobject_traverse)},
                               {Py_tp_clear, reinterpret_cast<void*>(tobject_clear)},
                               {Py_tp_getattro, reinterpret_cast<void*>(tobject_getattro)},
                               {Py_tp_setattro, reinterpret_cast<void*>(tobject_setattro)},
                               {Py_tp_methods, tobject_methods},
                               {0, nullptr}};

PyType_Spec tobject_spec = {"tm._core.Object", sizeof(TObject), 0,
                            Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
                            tobject_slots};

}  // namespace

void init_object(py::module_& m) {
  PyObject* type = PyType_FromSpec(&tobject_spec);
  if (type == nullptr) throw py::error_already_set();
  m.attr("Object") = py::reinterpret_steal<py::object>(type);
}

}  // namespace tmr::bindings
