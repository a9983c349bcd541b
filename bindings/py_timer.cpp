#include "py_timer.hpp"

#include <Python.h>

#include <new>
#include <utility>

#include "builtin_calls.hpp"
#include "reactor_seconds.hpp"
#include "released_gil.hpp"

namespace tmr::bindings {

namespace {

// NOLINTNEXTLINE(cppcoreguidelines-pro-type-member-init): tp_alloc zeroes and fills the header
struct PyTimerObject {
  PyObject ob_base;  // PyObject_HEAD
  reactor::Timer timer;
};

PyTypeObject* g_timer_type = nullptr;  // set once by init_timer_type, kept by the module

reactor::Timer& timer_of(PyObject* self) {
  return reinterpret_cast<PyTimerObject*>(self)->timer;
}

void timer_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  timer_of(self).~Timer();
  type->tp_free(self);
  Py_DECREF(type);  // a heap type: each instance holds a reference to it
}

// Outside a transaction a change takes the timer's and the reactor's locks and posts to the
// strand, with the GIL released; inside, it is a hook for the commit.
template <class Change>
PyObject* change_timer(Change&& change) {
  return builtin_call([&]() -> PyObject* {
    released_outside_transaction(change);
    Py_RETURN_NONE;
  });
}

PyObject* timer_cancel(PyObject* self, PyObject* /*unused*/) {
  return change_timer([self] { timer_of(self).cancel(); });
}

PyObject* timer_reschedule(PyObject* self, PyObject* when) {
  const double seconds = PyFloat_AsDouble(when);
  if (seconds == -1.0 && PyErr_Occurred() != nullptr) return nullptr;
  return change_timer([self, seconds] { timer_of(self).reschedule(from_seconds(seconds)); });
}

PyObject* timer_reschedule_earlier(PyObject* self, PyObject* when) {
  const double seconds = PyFloat_AsDouble(when);
  if (seconds == -1.0 && PyErr_Occurred() != nullptr) return nullptr;
  return change_timer(
      [self, seconds] { timer_of(self).reschedule_earlier(from_seconds(seconds)); });
}

PyObject* timer_deadline(PyObject* self, void* /*closure*/) {
  return PyFloat_FromDouble(to_seconds(timer_of(self).deadline()));
}

PyObject* timer_pending(PyObject* self, void* /*closure*/) {
  return PyBool_FromLong(timer_of(self).pending() ? 1 : 0);
}

PyMethodDef g_timer_methods[] = {
    {"cancel", &timer_cancel, METH_NOARGS,
     "cancel($self, /)\n--\n\nThe call will not run; idempotent."},
    {"reschedule", &timer_reschedule, METH_O,
     "reschedule($self, when, /)\n--\n\nMoves the call to `when` (reactor seconds); re-arms a "
     "spent timer."},
    {"reschedule_earlier", &timer_reschedule_earlier, METH_O,
     "reschedule_earlier($self, when, /)\n--\n\nArms the call for `when` unless it is armed for "
     "that or sooner; requests from several threads commute (the earliest wins until the call "
     "runs)."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef g_timer_getset[] = {
    {"deadline", &timer_deadline, nullptr,
     "The deadline (reactor seconds) the call is or was last armed for.", nullptr},
    {"pending", &timer_pending, nullptr,
     "True while the call is scheduled and has neither run nor been cancelled.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

char g_timer_doc[] = "A scheduled call (Reactor.call_at).";

PyType_Slot g_timer_slots[] = {
    {Py_tp_doc, static_cast<void*>(g_timer_doc)},
    {Py_tp_dealloc, reinterpret_cast<void*>(&timer_dealloc)},
    {Py_tp_methods, static_cast<void*>(g_timer_methods)},
    {Py_tp_getset, static_cast<void*>(g_timer_getset)},
    {0, nullptr},
};

// No tp_new: timers come from the reactor (Reactor.call_at).
PyType_Spec g_timer_spec = {
    "tm._core.Timer",
    sizeof(PyTimerObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    g_timer_slots,
};

}  // namespace

PyObject* new_py_timer(reactor::Timer timer) {
  PyObject* object = g_timer_type->tp_alloc(g_timer_type, 0);
  if (object == nullptr) return nullptr;
  new (&timer_of(object)) reactor::Timer(std::move(timer));
  return object;
}

void init_timer_type(py::module_& m) {
  PyObject* type = PyType_FromSpec(&g_timer_spec);
  if (type == nullptr) throw py::error_already_set();
  g_timer_type = reinterpret_cast<PyTypeObject*>(type);
  m.add_object("Timer", py::reinterpret_steal<py::object>(type));  // the module keeps it
}

}  // namespace tmr::bindings
