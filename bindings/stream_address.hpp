#pragma once

// Socket addresses between the reactor's text form and Python's socket module form.

#include <pybind11/pybind11.h>

#include <string>

namespace tmr::bindings {

namespace py = pybind11;

/// The reactor's "host:port" / "[v6%scope]:port" as socket.getsockname() gives it: (host, port) or
/// (host, port, flowinfo, scope_id); a Unix socket's path as a str; None before it is known.
py::object address_object(const std::string& text, bool is_unix);

/// A Python int as a port number; raises ValueError outside 0-65535.
unsigned short port_number(int port);

}  // namespace tmr::bindings
