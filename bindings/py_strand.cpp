#include "py_strand.hpp"

#include <Python.h>

#include <new>
#include <string>
#include <utility>

namespace tmr::bindings {

namespace {

// NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init): tp_alloc zeroes and fills the header
struct PyStrandObject {
  PyObject ob_base;  // PyObject_HEAD
  reactor::Strand strand;
};

PyTypeObject* g_strand_type = nullptr;  // set once by init_strand_type, kept by the module

PyStrandObject* as_strand_object(PyObject* object) {
  return reinterpret_cast<PyStrandObject*>(object);
}

void strand_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  as_strand_object(self)->strand.~Strand();
  type->tp_free(self);
  Py_DECREF(type);  // a heap type: each instance holds a reference to it
}

// Equal when they are the same strand; the hash of its id (as hash(strand.id)). Against another
// type == is NotImplemented, so `strand == None` is False.
Py_hash_t strand_hash(PyObject* self) {
  PyObject* id = PyLong_FromUnsignedLongLong(as_strand_object(self)->strand.id());
  if (id == nullptr) return -1;
  const Py_hash_t hash = PyObject_Hash(id);
  Py_DECREF(id);
  return hash;
}

PyObject* strand_richcompare(PyObject* self, PyObject* other, int op) {
  const reactor::Strand* b = py_strand_value(other);
  if ((op != Py_EQ && op != Py_NE) || b == nullptr) Py_RETURN_NOTIMPLEMENTED;
  return PyBool_FromLong((as_strand_object(self)->strand == *b) == (op == Py_EQ) ? 1 : 0);
}

PyObject* strand_repr(PyObject* self) {
  const std::string text =
      "<tm._core.Strand " + std::to_string(as_strand_object(self)->strand.id()) + ">";
  return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}

PyObject* strand_id(PyObject* self, void* /*closure*/) {
  return PyLong_FromUnsignedLongLong(as_strand_object(self)->strand.id());
}

PyGetSetDef g_strand_getset[] = {
    {"id", &strand_id, nullptr, "Unique within the process.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

// current_strand() == strand without making a strand object: asyncio's call_at() asks it per
// timer.
PyObject* strand_is_current(PyObject* self, PyObject* /*unused*/) {
  const reactor::Strand& strand = as_strand_object(self)->strand;
  return PyBool_FromLong(strand && reactor::current_strand_id() == strand.id() ? 1 : 0);
}

PyMethodDef g_strand_methods[] = {
    {"is_current", &strand_is_current, METH_NOARGS,
     "is_current($self, /)\n--\n\nWhether this thread runs a callback of this strand now "
     "(current_strand() == self)."},
    {nullptr, nullptr, 0, nullptr},
};

char g_strand_doc[] =
    "Callbacks of one strand run one at a time, in order; different strands run in parallel.";

PyType_Slot g_strand_slots[] = {
    {Py_tp_doc, static_cast<void*>(g_strand_doc)},
    {Py_tp_dealloc, reinterpret_cast<void*>(&strand_dealloc)},
    {Py_tp_hash, reinterpret_cast<void*>(&strand_hash)},
    {Py_tp_richcompare, reinterpret_cast<void*>(&strand_richcompare)},
    {Py_tp_repr, reinterpret_cast<void*>(&strand_repr)},
    {Py_tp_getset, static_cast<void*>(g_strand_getset)},
    {Py_tp_methods, static_cast<void*>(g_strand_methods)},
    {0, nullptr},
};

// No Py_TPFLAGS_BASETYPE: a subclass could not be told from a strand by its type alone. No
// tp_new: strands come from the reactor (Reactor.make_strand, current_strand()).
PyType_Spec g_strand_spec = {
    "tm._core.Strand",
    sizeof(PyStrandObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    g_strand_slots,
};

}  // namespace

PyObject* new_py_strand(reactor::Strand strand) {
  PyObject* object = g_strand_type->tp_alloc(g_strand_type, 0);
  if (object == nullptr) return nullptr;
  new (&as_strand_object(object)->strand) reactor::Strand(std::move(strand));
  return object;
}

const reactor::Strand* py_strand_value(PyObject* object) {
  if (g_strand_type == nullptr || Py_TYPE(object) != g_strand_type) return nullptr;
  return &as_strand_object(object)->strand;
}

void init_strand_type(py::module_& m) {
  PyObject* type = PyType_FromSpec(&g_strand_spec);
  if (type == nullptr) throw py::error_already_set();
  g_strand_type = reinterpret_cast<PyTypeObject*>(type);
  m.add_object("Strand", py::reinterpret_steal<py::object>(type));  // the module keeps it
}

}  // namespace tmr::bindings
