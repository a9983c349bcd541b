// The reactor's native byte streams for the Twisted and asyncio adapters, as tm._core registers
// them: the transport class (py_stream_transport.cpp), listeners (py_stream_listener.cpp) and here
// tcp_connect / tcp_adopt / unix_connect / unix_adopt. A Python handler object is driven by a C++
// StreamHandler (py_stream_handler.cpp) whose callbacks run through the PythonDispatcher (one
// irrevocable transaction each, on the connection's strand); transport requests made inside a
// transaction take effect at its commit, in commit order.
//
// Ownership: the C++ connection owns its handler until connection_lost / connect_failed, the
// handler owns the Python handler's methods and the Python transport object, and that object
// owns the connection. The cycle is intended (a live connection keeps its protocol alive, as in
// Twisted and asyncio) and the connection breaks it when it finishes. Python references dropped
// on a worker thread go through PyCallable, which attaches a thread state first.
#include "reactor/stream_transport.hpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "py_strand.hpp"
#include "py_stream_handler.hpp"
#include "py_stream_transport.hpp"
#include "reactor/reactor.hpp"
#include "reactor/tcp_transport.hpp"
#include "reactor/unix_transport.hpp"
#include "released_gil.hpp"
#include "stream_address.hpp"
#include "stream_errors.hpp"

namespace tmr::bindings {

namespace py = pybind11;

// Defined in reactor_core.cpp: the C++ reactor behind a tm._core.Reactor.
reactor::Reactor& native_reactor(py::handle reactor);
// Defined in py_stream_listener.cpp: tm._core.StreamListener and the functions that open one.
void init_stream_listener(py::module_& m);

namespace {

// Creates the handler and its transport object, starts the connection with Python detached, and
// returns the transport object (or raises OSError).
template <class Start>
py::object start_connection(py::handle handler, bool is_unix, Start&& start) {
  auto native = make_handler(handler, is_unix);
  py::object object = native->transport_object();
  std::error_code ec;
  std::shared_ptr<reactor::StreamTransport> transport;
  {
    ReleasedGil release;
    transport = start(native, ec);  // `native` keeps our reference: Python is released below
  }
  if (!transport) raise_os_error(ec);
  object.cast<PyStreamTransport&>().set(transport);
  return object;
}

}  // namespace

void init_stream_transport(py::module_& m) {
  init_stream_transport_class(m);
  init_stream_listener(m);

  m.def(
      "tcp_connect",
      [](const py::object& reactor, const std::string& host, int port, const py::object& handler) {
        auto& r = native_reactor(reactor);
        const auto p = port_number(port);
        return start_connection(handler, false, [&](auto native, std::error_code& ec) {
          return reactor::tcp_connect(r, host, p, native, ec);
        });
      },
      py::arg("reactor"), py::arg("host"), py::arg("port"), py::arg("handler"),
      "Connects (at commit inside a transaction); handler.connection_made(transport) or "
      "handler.connect_failed(OSError) follows. Raises OSError for an invalid address.");

  m.def(
      "tcp_adopt",
      [](const py::object& reactor, int fd, const py::object& handler,
         std::optional<reactor::Strand> strand) {
        auto& r = native_reactor(reactor);
        return start_connection(handler, false, [&](auto native, std::error_code& ec) {
          return reactor::tcp_adopt(r, fd, native, strand.value_or(reactor::Strand()), ec);
        });
      },
      py::arg("reactor"), py::arg("fd"), py::arg("handler"), py::arg("strand") = py::none(),
      "Adopts a connected TCP socket, which the reactor owns from then on (pass a dup()); its "
      "events run on `strand` (one of this reactor's) if given, else on a new strand.");

  m.def(
      "unix_connect",
      [](const py::object& reactor, const std::string& path, const py::object& handler) {
        auto& r = native_reactor(reactor);
        return start_connection(handler, true, [&](auto native, std::error_code& ec) {
          return reactor::unix_connect(r, path, native, ec);
        });
      },
      py::arg("reactor"), py::arg("path"), py::arg("handler"),
      "Connects to a Unix socket path; as tcp_connect.");

  m.def(
      "unix_adopt",
      [](const py::object& reactor, int fd, const py::object& handler,
         std::optional<reactor::Strand> strand) {
        auto& r = native_reactor(reactor);
        return start_connection(handler, true, [&](auto native, std::error_code& ec) {
          return reactor::unix_adopt(r, fd, native, strand.value_or(reactor::Strand()), ec);
        });
      },
      py::arg("reactor"), py::arg("fd"), py::arg("handler"), py::arg("strand") = py::none(),
      "Adopts a connected Unix stream socket (one end of socketpair()); owned from then on; "
      "on `strand` as tcp_adopt.");
}

}  // namespace tmr::bindings
