#include "py_stream_transport.hpp"

#include <Python.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>

#include "builtin_calls.hpp"
#include "py_ref.hpp"
#include "py_strand.hpp"
#include "released_gil.hpp"
#include "stm/stm.hpp"
#include "stream_address.hpp"
#include "stream_errors.hpp"

namespace tmr::bindings {

namespace {

// Copies any contiguous bytes-like object (bytes, bytearray, memoryview, array, ...).
std::string copy_bytes(py::handle data) {
  if (PyBytes_Check(data.ptr())) {
    return {PyBytes_AS_STRING(data.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(data.ptr()))};
  }
  Py_buffer view;
  if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  std::string copy(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len));
  PyBuffer_Release(&view);
  return copy;
}

// From this size on a bytes object is sent from the object itself instead of a copy: for a large
// write (a static file's 64 KiB blocks) the copy was most of the write's cost, its fresh memory
// paged in and out; a reference costs a control block and a release that may wait for the next
// Python event (release_without_waiting). Smaller writes, and other bytes-like objects, which
// may change after write() returns, are copied.
constexpr Py_ssize_t kSentFromTheObjectAtLeast = 4096;

void release_written(const void* bytes) {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): the owner is held as const void*
  release_without_waiting(static_cast<PyObject*>(const_cast<void*>(bytes)));
}

reactor::WriteChunk chunk_of(py::handle data) {
  PyObject* o = data.ptr();
  if (PyBytes_CheckExact(o) && PyBytes_GET_SIZE(o) >= kSentFromTheObjectAtLeast) {
    const std::string_view bytes(PyBytes_AS_STRING(o),
                                 static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
    // The transport may drop the chunk on any thread, under its lock: the release never waits.
    return {std::shared_ptr<const void>(Py_NewRef(o), &release_written), bytes};
  }
  return reactor::WriteChunk(copy_bytes(data));
}

void write_bytes(const PyStreamTransport& self, py::handle data) {
  reactor::WriteChunk bytes = chunk_of(data);
  reactor::StreamTransport& transport = self.ref();
  if (stm::current_transaction() != nullptr) {
    transport.write(std::move(bytes));  // queued on the transaction: no lock taken now
    return;
  }
  ReleasedGil release;  // sends now: the connection's lock, never with Python held
  transport.write(std::move(bytes));
}

// write(), write_buffer_size(), resume_when_drained() and the strand run per write or per
// event of a connection (tm_twisted's NativeStream): builtin methods without pybind11's
// dispatch (builtin_calls.hpp). The descriptors check that self is a StreamTransport.
PyObject* transport_write(PyObject* self, PyObject* data) {
  return method_call<PyStreamTransport>(self, [data](const PyStreamTransport& t) {
    write_bytes(t, data);
    Py_RETURN_NONE;
  });
}

PyObject* transport_write_buffer_size(PyObject* self, PyObject* /*unused*/) {
  return method_call<PyStreamTransport>(self, [](const PyStreamTransport& t) {
    return PyLong_FromSize_t(t.ref().write_buffer_size());
  });
}

PyObject* transport_resume_when_drained(PyObject* self, PyObject* /*unused*/) {
  return method_call<PyStreamTransport>(self, [](const PyStreamTransport& t) {
    return PyBool_FromLong(t.ref().resume_when_drained() ? 1 : 0);
  });
}

PyObject* transport_strand(PyObject* self, void* /*closure*/) {
  return method_call<PyStreamTransport>(
      self, [](const PyStreamTransport& t) { return new_py_strand(t.ref().strand()); });
}

PyMethodDef g_write_def = {
    "write", &transport_write, METH_O,
    "write($self, data, /)\n--\n\nQueues the bytes of a bytes-like object (a large bytes "
    "object is held until sent, anything else copied). Ignored after close() or abort()."};
PyMethodDef g_write_buffer_size_def = {
    "write_buffer_size", &transport_write_buffer_size, METH_NOARGS,
    "write_buffer_size($self, /)\n--\n\nCommitted bytes not yet handed to the kernel."};
PyMethodDef g_resume_when_drained_def = {
    "resume_when_drained", &transport_resume_when_drained, METH_NOARGS,
    "resume_when_drained($self, /)\n--\n\nThe caller paused its protocol itself (for bytes not "
    "committed yet): True when resume_writing() will follow at the low water mark (or the "
    "transport is closing), False when the committed bytes are there already and the caller "
    "resumes it."};
PyGetSetDef g_strand_def = {"strand", &transport_strand, nullptr,
                            "The connection's strand: its handler's methods run on it.", nullptr};

int native_fd(const PyStreamTransport& self) {
  const int fd = self.get()->native_handle();
  if (fd < 0) raise_errno(EBADF);
  return fd;
}

void set_option(const PyStreamTransport& self, int level, int name, int value) {
  if (::setsockopt(native_fd(self), level, name, &value, sizeof value) != 0) raise_errno(errno);
}

int get_option(const PyStreamTransport& self, int level, int name) {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(native_fd(self), level, name, &value, &length) != 0) raise_errno(errno);
  return value;
}

}  // namespace

void init_stream_transport_class(py::module_& m) {
  py::class_<PyStreamTransport, TransportPtr>(
      m, "StreamTransport",
      "A connected TCP or Unix byte stream. Thread-safe. Requests made inside a transaction take "
      "effect at its commit, in commit order; outside one, at once.")
      .def(
          "shutdown_write",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            ReleasedGil release;
            transport->shutdown_write();
          },
          "Half-close: shuts down the sending side once pending writes are sent.")
      .def(
          "close",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            ReleasedGil release;
            transport->close();
          },
          "Sends pending writes, then closes; connection_lost(None) follows.")
      .def(
          "abort",
          [](const PyStreamTransport& t, bool reset) {
            auto transport = t.get();
            ReleasedGil release;
            if (reset) {
              transport->abort();
            } else {
              transport->abort_keeping_sent();
            }
          },
          py::arg("reset") = true,
          "Drops pending writes and resets (Twisted's abortConnection); with reset=False hands the "
          "kernel what it takes now of the pending writes, drops the rest and closes without a "
          "reset (asyncio's transport.abort()). connection_lost(ConnectionAbortedError) follows.")
      .def(
          "pause_reading",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            ReleasedGil release;
            transport->pause_reading();
          },
          "Stops data_received calls until resume_reading().")
      .def("resume_reading",
           [](const PyStreamTransport& t) {
             auto transport = t.get();
             ReleasedGil release;
             transport->resume_reading();
           })
      .def(
          "set_write_buffer_limits",
          [](const PyStreamTransport& t, long long high, long long low) {
            if (low < 0 || high < low) {
              throw py::value_error("write buffer limits need 0 <= low <= high");
            }
            t.get()->set_write_buffer_limits(static_cast<std::size_t>(high),
                                             static_cast<std::size_t>(low));
          },
          py::arg("high"), py::arg("low"),
          "pause_writing() once the unsent bytes exceed `high`, resume_writing() at `low`.")
      .def(
          "local_address",
          [](const PyStreamTransport& t) {
            return address_object(t.get()->local_address(), t.is_unix());
          },
          "(host, port), (host, port, flowinfo, scope_id) or a socket path; None before the "
          "connection is made.")
      .def(
          "peer_address",
          [](const PyStreamTransport& t) {
            return address_object(t.get()->peer_address(), t.is_unix());
          },
          "As local_address(), for the peer.")
      .def(
          "fileno", [](const PyStreamTransport& t) { return t.get()->native_handle(); },
          "The descriptor; -1 before connecting and once closed.")
      .def(
          "is_closing", [](const PyStreamTransport& t) { return t.get()->is_closing(); },
          "True once close(), abort() or the peer ended the connection.")
      .def("set_option", &set_option, py::arg("level"), py::arg("name"), py::arg("value"),
           "setsockopt() with an int value; raises OSError.")
      .def("get_option", &get_option, py::arg("level"), py::arg("name"),
           "getsockopt() of an int value; raises OSError.")
      .def("__repr__", [](const PyStreamTransport& t) {
        auto transport = t.get();
        return std::string("<tm._core.StreamTransport ") + (t.is_unix() ? "unix " : "tcp ") +
               "fd=" + std::to_string(transport->native_handle()) + ">";
      });
  const py::object cls = m.attr("StreamTransport");
  add_builtin_method(cls, &g_write_def);
  add_builtin_method(cls, &g_write_buffer_size_def);
  add_builtin_method(cls, &g_resume_when_drained_def);
  add_builtin_property(cls, &g_strand_def);
}

}  // namespace tmr::bindings
