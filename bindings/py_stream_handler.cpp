#include "py_stream_handler.hpp"

#include <Python.h>

#include <string>
#include <utility>

#include "stream_errors.hpp"

namespace tmr::bindings {

namespace {

constexpr const char* kNames[PyStreamHandler::count] = {
    "connection_made", "data_received", "eof_received",  "connection_lost",
    "connect_failed",  "pause_writing", "resume_writing"};

}  // namespace

PyStreamHandler::PyStreamHandler(py::handle handler, TransportPtr transport)
    : methods_(lookup(handler)), transport_(std::move(transport)), object_(py::cast(transport_)) {}

PyCallable PyStreamHandler::lookup(py::handle handler) {
  py::tuple methods(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    py::object fn = py::getattr(handler, kNames[i], py::none());
    const bool required = i == made || i == data || i == lost;
    if (required && fn.is_none()) {
      throw py::type_error(std::string("stream handler has no ") + kNames[i] + "()");
    }
    methods[i] = std::move(fn);
  }
  return PyCallable(std::move(methods));
}

PyObject* PyStreamHandler::method(Method m) const {
  return PyTuple_GET_ITEM(methods_.get().ptr(), m);
}

py::object PyStreamHandler::call(Method m, PyObject* arg) {
  PyObject* fn = method(m);
  if (fn == Py_None) return {};
  // The slot before args[0] is free for a bound method's self (PY_VECTORCALL_ARGUMENTS_OFFSET).
  PyObject* args[2] = {nullptr, arg};
  const std::size_t nargs = arg == nullptr ? 0 : 1;
  PyObject* result =
      PyObject_Vectorcall(fn, args + 1, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  if (result == nullptr) {
    py::error_already_set error;
    report_unraisable(error, fn);
    return {};
  }
  return py::reinterpret_steal<py::object>(result);
}

void PyStreamHandler::on_connected(stm::Transaction& /*tx*/,
                                   const std::shared_ptr<reactor::StreamTransport>& transport) {
  transport_->set(transport);
  call(made, object_.get().ptr());
}

void PyStreamHandler::on_data(stm::Transaction& /*tx*/, std::span<const char> bytes) {
  if (method(data) == Py_None) return;
  const py::bytes data_bytes(bytes.data(), bytes.size());
  call(data, data_bytes.ptr());
}

bool PyStreamHandler::on_eof(stm::Transaction& /*tx*/) {
  py::object keep_open = call(eof);
  if (!keep_open || keep_open.is_none()) return false;
  const int truth = PyObject_IsTrue(keep_open.ptr());
  if (truth < 0) {
    py::error_already_set error;
    report_unraisable(error, method(eof));
    return false;
  }
  return truth == 1;
}

void PyStreamHandler::on_closed(stm::Transaction& /*tx*/, std::error_code ec) {
  const py::object reason = ec ? os_error(ec) : py::none();
  call(lost, reason.ptr());
}

void PyStreamHandler::on_connect_failed(stm::Transaction& /*tx*/, std::error_code ec) {
  const py::object reason = os_error(ec);
  call(failed, reason.ptr());
}

void PyStreamHandler::on_pause_writing(stm::Transaction& /*tx*/) {
  call(pause);
}

void PyStreamHandler::on_resume_writing(stm::Transaction& /*tx*/) {
  call(resume);
}

std::shared_ptr<PyStreamHandler> make_handler(py::handle handler, bool is_unix) {
  return std::make_shared<PyStreamHandler>(handler, std::make_shared<PyStreamTransport>(is_unix));
}

}  // namespace tmr::bindings
