#pragma once

// The reactor's stream events delivered to a Python handler object: connection_made(transport),
// data_received(bytes), eof_received(), connection_lost(exc), connect_failed(exc), pause_writing()
// and resume_writing(), each called inside the dispatched transaction (one irrevocable
// transaction per event, on the connection's strand) with the worker's thread state attached.

#include <pybind11/pybind11.h>

#include <memory>
#include <span>
#include <system_error>

#include "py_stream_transport.hpp"
#include "reactor/stream_transport.hpp"
#include "reactor_dispatcher.hpp"
#include "stm/stm.hpp"

namespace tmr::bindings {

namespace py = pybind11;

// A Python handler's methods, looked up once per connection.
class PyStreamHandler final : public reactor::StreamHandler {
 public:
  enum Method { made, data, eof, lost, failed, pause, resume, count };

  PyStreamHandler(py::handle handler, TransportPtr transport);

  void on_connected(stm::Transaction& tx,
                    const std::shared_ptr<reactor::StreamTransport>& transport) override;
  void on_data(stm::Transaction& tx, std::span<const char> bytes) override;
  bool on_eof(stm::Transaction& tx) override;
  void on_closed(stm::Transaction& tx, std::error_code ec) override;
  void on_connect_failed(stm::Transaction& tx, std::error_code ec) override;
  void on_pause_writing(stm::Transaction& tx) override;
  void on_resume_writing(stm::Transaction& tx) override;

  // The Python transport object this handler's callbacks receive.
  py::object transport_object() const { return py::reinterpret_borrow<py::object>(object_.get()); }

 private:
  static PyCallable lookup(py::handle handler);
  PyObject* method(Method m) const;
  // Calls method m with no argument or with arg (a vectorcall: no argument tuple, none of
  // pybind11's call machinery); an exception is reported as unraisable and gives a null object.
  py::object call(Method m, PyObject* arg = nullptr);

  const PyCallable methods_;      // a tuple, None for a missing optional method
  const TransportPtr transport_;  // the C++ side of object_
  const PyCallable object_;       // the tm._core.StreamTransport handed to the handler
};

/// A handler for the Python object `handler`, with a new transport object.
std::shared_ptr<PyStreamHandler> make_handler(py::handle handler, bool is_unix);

}  // namespace tmr::bindings
