// tm._core.StreamTransport / StreamListener and tcp_* / unix_*: the reactor's native byte streams
// for the Twisted and asyncio adapters. A Python handler object is driven by a C++
// StreamHandler whose callbacks run through the PythonDispatcher (one irrevocable transaction
// each, on the connection's strand); transport requests made inside a transaction take effect
// at its commit, in commit order.
//
// Ownership: the C++ connection owns its handler until connection_lost / connect_failed, the
// handler owns the Python handler's methods and the Python transport object, and that object
// owns the connection. The cycle is intended (a live connection keeps its protocol alive, as in
// Twisted and asyncio) and the connection breaks it when it finishes. Python references dropped
// on a worker thread go through PyCallable, which attaches a thread state first.
#include "reactor/stream_transport.hpp"

#include <Python.h>
#include <net/if.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>

#include "reactor/reactor.hpp"
#include "reactor/tcp_transport.hpp"
#include "reactor/unix_transport.hpp"
#include "reactor_dispatcher.hpp"
#include "stm/stm.hpp"
#include "tx_state.hpp"

namespace tmr::bindings {

namespace py = pybind11;

// Defined in reactor_core.cpp: the C++ reactor behind a tm._core.Reactor.
reactor::Reactor& native_reactor(py::handle reactor);

namespace {

// ---- errors ------------------------------------------------------------------------------------

// The errno an error code stands for, or 0. Boost's codes reach us wrapped in categories of their
// own, named like the standard ones, so the name is what tells an errno apart.
int errno_of(const std::error_code& ec) {
  const std::string_view category = ec.category().name();
  return category == "system" || category == "generic" ? ec.value() : 0;
}

// OSError(errno, strerror): CPython picks the subclass (ConnectionRefusedError, ...) itself.
py::object os_error(const std::error_code& ec) {
  const int err = errno_of(ec);
  PyObject* exc = err != 0 ? PyObject_CallFunction(PyExc_OSError, "is", err,
                                                   std::system_category().message(err).c_str())
                           : PyObject_CallFunction(PyExc_OSError, "s", ec.message().c_str());
  if (exc == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(exc);
}

[[noreturn]] void raise_os_error(const std::error_code& ec) {
  py::object exc = os_error(ec);
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_errno(int err) {
  raise_os_error(std::error_code(err, std::system_category()));
}

// Reports an exception from Python code the reactor called and goes on, as python_callback does;
// the runtime's abort signal is never swallowed.
void report_unraisable(py::error_already_set& error, py::handle where) {
  if (error.matches(abort_exception())) throw error;  // also outside a catch block (on_eof)
  error.discard_as_unraisable(py::reinterpret_borrow<py::object>(where));
}

// ---- addresses ---------------------------------------------------------------------------------

// The reactor's "host:port" / "[v6%scope]:port" as socket.getsockname() gives it: (host, port) or
// (host, port, flowinfo, scope_id); a Unix socket's path as a str; None before it is known.
py::object address_object(const std::string& text, bool is_unix) {
  if (is_unix) return py::str(text);
  if (text.empty()) return py::none();
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return py::str(text);
  const int port = std::stoi(text.substr(colon + 1));
  if (text.front() != '[') return py::make_tuple(text.substr(0, colon), port);
  const std::string host = text.substr(1, colon - 2);  // without the brackets
  unsigned long scope = 0;
  if (const auto percent = host.find('%'); percent != std::string::npos) {
    const std::string name = host.substr(percent + 1);
    scope = ::if_nametoindex(name.c_str());
    if (scope == 0) scope = std::strtoul(name.c_str(), nullptr, 10);
  }
  return py::make_tuple(host, port, 0, scope);
}

// ---- the transport as Python sees it -----------------------------------------------------------

// tm._core.StreamTransport. Created before the C++ connection exists (so that connect and accept
// hand the handler the very object tcp_connect returns); the connection is set once, by whichever
// comes first: the function that created it or the connection's first callback.
class PyStreamTransport {
 public:
  explicit PyStreamTransport(bool is_unix) : is_unix_(is_unix) {}

  void set(const std::shared_ptr<reactor::StreamTransport>& transport) {
    std::lock_guard lock(mu_);
    if (!transport_) transport_ = transport;
  }

  std::shared_ptr<reactor::StreamTransport> get() const {
    std::lock_guard lock(mu_);
    if (!transport_) throw std::runtime_error("tm._core.StreamTransport: not started");
    return transport_;
  }

  bool is_unix() const noexcept { return is_unix_; }

 private:
  const bool is_unix_;
  mutable std::mutex mu_;
  std::shared_ptr<reactor::StreamTransport> transport_;  // guarded by mu_; set once
};

using TransportPtr = std::shared_ptr<PyStreamTransport>;

// Copies any contiguous bytes-like object (bytes, bytearray, memoryview, array, ...).
std::string copy_bytes(py::handle data) {
  if (PyBytes_Check(data.ptr())) {
    return std::string(PyBytes_AS_STRING(data.ptr()),
                       static_cast<std::size_t>(PyBytes_GET_SIZE(data.ptr())));
  }
  Py_buffer view;
  if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  std::string copy(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len));
  PyBuffer_Release(&view);
  return copy;
}

void write_bytes(const PyStreamTransport& self, py::handle data) {
  std::string bytes = copy_bytes(data);
  auto transport = self.get();
  if (stm::current_transaction() != nullptr) {
    transport->write(std::move(bytes));  // queued on the transaction: no lock taken now
    return;
  }
  py::gil_scoped_release release;  // sends now: the connection's lock, never with Python held
  transport->write(std::move(bytes));
}

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

// ---- the handler: Python methods called from the reactor ---------------------------------------

// A Python handler's methods, looked up once per connection. Every method runs inside the
// dispatched transaction with the worker's thread state attached.
class PyStreamHandler final : public reactor::StreamHandler {
 public:
  enum Method { made, data, eof, lost, failed, pause, resume, count };

  PyStreamHandler(py::handle handler, TransportPtr transport)
      : methods_(lookup(handler)),
        transport_(std::move(transport)),
        object_(py::cast(transport_)) {}

  void on_connected(stm::Transaction& /*tx*/,
                    const std::shared_ptr<reactor::StreamTransport>& transport) override {
    transport_->set(transport);
    call(made, py::handle(object_.get()));
  }

  void on_data(stm::Transaction& /*tx*/, std::span<const char> bytes) override {
    if (method(data) == Py_None) return;
    call(data, py::bytes(bytes.data(), bytes.size()));
  }

  bool on_eof(stm::Transaction& /*tx*/) override {
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

  void on_closed(stm::Transaction& /*tx*/, std::error_code ec) override {
    call(lost, ec ? os_error(ec) : py::none());
  }

  void on_connect_failed(stm::Transaction& /*tx*/, std::error_code ec) override {
    call(failed, os_error(ec));
  }

  void on_pause_writing(stm::Transaction& /*tx*/) override { call(pause); }
  void on_resume_writing(stm::Transaction& /*tx*/) override { call(resume); }

  // The Python transport object this handler's callbacks receive.
  py::object transport_object() const { return py::reinterpret_borrow<py::object>(object_.get()); }

 private:
  static constexpr const char* kNames[count] = {
      "connection_made", "data_received", "eof_received",  "connection_lost",
      "connect_failed",  "pause_writing", "resume_writing"};

  static PyCallable lookup(py::handle handler) {
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

  PyObject* method(Method m) const { return PyTuple_GET_ITEM(methods_.get().ptr(), m); }

  template <class... Args>
  py::object call(Method m, Args&&... args) {
    PyObject* fn = method(m);
    if (fn == Py_None) return py::object();
    try {
      return py::reinterpret_borrow<py::object>(fn)(std::forward<Args>(args)...);
    } catch (py::error_already_set& error) {
      report_unraisable(error, fn);
      return py::object();
    }
  }

  const PyCallable methods_;      // a tuple, None for a missing optional method
  const TransportPtr transport_;  // the C++ side of object_
  const PyCallable object_;       // the tm._core.StreamTransport handed to the handler
};

std::shared_ptr<PyStreamHandler> make_handler(py::handle handler, bool is_unix) {
  return std::make_shared<PyStreamHandler>(handler, std::make_shared<PyStreamTransport>(is_unix));
}

// ---- listeners
// -----------------------------------------------------------------------------------

// A Python callable a listener calls from its connections' strands; emptied when the listener is
// closed, so that a factory referring back to its listener does not keep the pair alive.
class CallableSlot {
 public:
  explicit CallableSlot(py::object fn) {
    if (!fn.is_none()) fn_.emplace(std::move(fn));
  }
  std::optional<PyCallable> get() const {
    std::lock_guard lock(mu_);
    return fn_;
  }
  void clear() {
    std::optional<PyCallable> dropped;  // released outside the lock: that may need the GIL
    std::lock_guard lock(mu_);
    dropped.swap(fn_);
  }

 private:
  mutable std::mutex mu_;
  std::optional<PyCallable> fn_;
};

struct PyStreamListener {
  std::shared_ptr<reactor::StreamListener> listener;
  bool is_unix;
  std::shared_ptr<CallableSlot> factory;
  std::shared_ptr<CallableSlot> on_error;

  void close() {
    auto drop = [factory = factory, on_error = on_error] {
      factory->clear();
      on_error->clear();
    };
    if (auto* tx = stm::current_transaction()) {
      tx->on_commit(drop);
    } else {
      drop();
    }
    py::gil_scoped_release release;
    listener->close();
  }
};

reactor::HandlerFactory handler_factory(std::shared_ptr<CallableSlot> slot, bool is_unix) {
  return [slot = std::move(slot),
          is_unix](stm::Transaction& /*tx*/) -> std::shared_ptr<reactor::StreamHandler> {
    auto factory = slot->get();
    if (!factory) return nullptr;  // closed meanwhile: refuse
    try {
      py::object handler = py::reinterpret_borrow<py::object>(factory->get())();
      if (handler.is_none()) return nullptr;
      return make_handler(handler, is_unix);
    } catch (py::error_already_set& error) {
      report_unraisable(error, factory->get());
      return nullptr;
    }
  };
}

reactor::ListenOptions listen_options(int backlog, bool reuse_address, bool reuse_port,
                                      bool v6_only, const std::shared_ptr<CallableSlot>& on_error) {
  reactor::ListenOptions options;
  options.backlog = backlog;
  options.reuse_address = reuse_address;
  options.reuse_port = reuse_port;
  options.v6_only = v6_only;
  if (on_error->get()) {
    options.on_error = [on_error](stm::Transaction& /*tx*/, std::error_code ec) {
      auto fn = on_error->get();
      if (!fn) return;
      try {
        py::reinterpret_borrow<py::object>(fn->get())(os_error(ec));
      } catch (py::error_already_set& error) {
        report_unraisable(error, fn->get());
      }
    };
  }
  return options;
}

// Runs `start(options, factory, ec)` with Python detached (the reactor's locks are never taken
// with Python held) and wraps the listener, or raises OSError.
template <class Start>
PyStreamListener listen(py::object factory, py::object on_error, bool is_unix, int backlog,
                        bool reuse_address, bool reuse_port, bool v6_only, Start&& start) {
  auto factory_slot = std::make_shared<CallableSlot>(std::move(factory));
  auto error_slot = std::make_shared<CallableSlot>(std::move(on_error));
  auto options = listen_options(backlog, reuse_address, reuse_port, v6_only, error_slot);
  auto make = handler_factory(factory_slot, is_unix);
  std::error_code ec;
  std::shared_ptr<reactor::StreamListener> listener;
  {
    py::gil_scoped_release release;
    listener = start(std::move(make), std::move(options), ec);
  }
  if (!listener) raise_os_error(ec);
  return PyStreamListener{std::move(listener), is_unix, std::move(factory_slot),
                          std::move(error_slot)};
}

// Creates the handler and its transport object, starts the connection with Python detached, and
// returns the transport object (or raises OSError).
template <class Start>
py::object start_connection(py::handle handler, bool is_unix, Start&& start) {
  auto native = make_handler(handler, is_unix);
  py::object object = native->transport_object();
  std::error_code ec;
  std::shared_ptr<reactor::StreamTransport> transport;
  {
    py::gil_scoped_release release;
    transport = start(native, ec);  // `native` keeps our reference: Python is released below
  }
  if (!transport) raise_os_error(ec);
  object.cast<PyStreamTransport&>().set(transport);
  return object;
}

unsigned short port_number(int port) {
  if (port < 0 || port > 65535) throw py::value_error("port must be 0-65535");
  return static_cast<unsigned short>(port);
}

}  // namespace

void init_stream_transport(py::module_& m) {
  py::class_<PyStreamTransport, TransportPtr>(
      m, "StreamTransport",
      "A connected TCP or Unix byte stream. Thread-safe. Requests made inside a transaction take "
      "effect at its commit, in commit order; outside one, at once.")
      .def("write", &write_bytes, py::arg("data"),
           "Queues a copy of a bytes-like object. Ignored after close() or abort().")
      .def(
          "shutdown_write",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            py::gil_scoped_release release;
            transport->shutdown_write();
          },
          "Half-close: shuts down the sending side once pending writes are sent.")
      .def(
          "close",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            py::gil_scoped_release release;
            transport->close();
          },
          "Sends pending writes, then closes; connection_lost(None) follows.")
      .def(
          "abort",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            py::gil_scoped_release release;
            transport->abort();
          },
          "Drops pending writes and resets; connection_lost(ConnectionAbortedError) follows.")
      .def(
          "pause_reading",
          [](const PyStreamTransport& t) {
            auto transport = t.get();
            py::gil_scoped_release release;
            transport->pause_reading();
          },
          "Stops data_received calls until resume_reading().")
      .def("resume_reading",
           [](const PyStreamTransport& t) {
             auto transport = t.get();
             py::gil_scoped_release release;
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
          "write_buffer_size",
          [](const PyStreamTransport& t) { return t.get()->write_buffer_size(); },
          "Committed bytes not yet handed to the kernel.")
      .def(
          "resume_when_drained",
          [](const PyStreamTransport& t) { return t.get()->resume_when_drained(); },
          "The caller paused its protocol itself (for bytes not committed yet): True when "
          "resume_writing() will follow at the low water mark (or the transport is closing), "
          "False when the committed bytes are there already and the caller resumes it.")
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
      .def_property_readonly(
          "strand", [](const PyStreamTransport& t) { return t.get()->strand(); },
          "The connection's strand: its handler's methods run on it.")
      .def("__repr__", [](const PyStreamTransport& t) {
        auto transport = t.get();
        return std::string("<tm._core.StreamTransport ") + (t.is_unix() ? "unix " : "tcp ") +
               "fd=" + std::to_string(transport->native_handle()) + ">";
      });

  py::class_<PyStreamListener>(m, "StreamListener", "A listening TCP or Unix stream socket.")
      .def(
          "local_address",
          [](const PyStreamListener& l) {
            return address_object(l.listener->local_address(), l.is_unix);
          },
          "(host, port), (host, port, flowinfo, scope_id) or the socket path.")
      .def_property_readonly(
          "port", [](const PyStreamListener& l) { return l.listener->port(); },
          "The bound port (0 for a Unix socket).")
      .def(
          "fileno", [](const PyStreamListener& l) { return l.listener->native_handle(); },
          "The listening descriptor; -1 once closed.")
      .def("close", &PyStreamListener::close,
           "Stops accepting (at commit inside a transaction); idempotent. The factory and "
           "on_error are released.");

  m.def(
      "tcp_listen",
      [](py::object reactor, const std::string& host, int port, py::object factory, int backlog,
         bool reuse_address, bool reuse_port, bool v6_only, py::object on_error) {
        auto& r = native_reactor(reactor);
        const auto p = port_number(port);
        return listen(std::move(factory), std::move(on_error), false, backlog, reuse_address,
                      reuse_port, v6_only, [&](auto make, auto options, std::error_code& ec) {
                        return reactor::tcp_listen(r, host, p, std::move(make), std::move(options),
                                                   ec);
                      });
      },
      py::arg("reactor"), py::arg("host"), py::arg("port"), py::arg("factory"), py::kw_only(),
      py::arg("backlog") = 1024, py::arg("reuse_address") = true, py::arg("reuse_port") = false,
      py::arg("v6_only") = false, py::arg("on_error") = py::none(),
      "Listens on a numeric host; factory() makes each connection's handler (None refuses) "
      "inside the accept transaction; on_error(OSError) hears of accept errors (EMFILE, ...).");

  m.def(
      "tcp_adopt_listener",
      [](py::object reactor, int fd, py::object factory, int backlog, bool reuse_address,
         bool reuse_port, bool v6_only, py::object on_error) {
        auto& r = native_reactor(reactor);
        return listen(std::move(factory), std::move(on_error), false, backlog, reuse_address,
                      reuse_port, v6_only, [&](auto make, auto options, std::error_code& ec) {
                        return reactor::tcp_adopt_listener(r, fd, std::move(make),
                                                           std::move(options), ec);
                      });
      },
      py::arg("reactor"), py::arg("fd"), py::arg("factory"), py::kw_only(),
      py::arg("backlog") = 1024, py::arg("reuse_address") = true, py::arg("reuse_port") = false,
      py::arg("v6_only") = false, py::arg("on_error") = py::none(),
      "Accepts on a listening TCP socket, which the reactor owns from then on (pass a dup()). "
      "The socket options are the socket's own; only on_error is used.");

  m.def(
      "unix_listen",
      [](py::object reactor, const std::string& path, py::object factory, int backlog,
         py::object on_error) {
        auto& r = native_reactor(reactor);
        return listen(std::move(factory), std::move(on_error), true, backlog, false, false, false,
                      [&](auto make, auto options, std::error_code& ec) {
                        return reactor::unix_listen(r, path, std::move(make), std::move(options),
                                                    ec);
                      });
      },
      py::arg("reactor"), py::arg("path"), py::arg("factory"), py::kw_only(),
      py::arg("backlog") = 1024, py::arg("on_error") = py::none(),
      "Binds `path` (which must not exist) and listens.");

  m.def(
      "tcp_connect",
      [](py::object reactor, const std::string& host, int port, py::object handler) {
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
      [](py::object reactor, int fd, py::object handler, std::optional<reactor::Strand> strand) {
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
      [](py::object reactor, const std::string& path, py::object handler) {
        auto& r = native_reactor(reactor);
        return start_connection(handler, true, [&](auto native, std::error_code& ec) {
          return reactor::unix_connect(r, path, native, ec);
        });
      },
      py::arg("reactor"), py::arg("path"), py::arg("handler"),
      "Connects to a Unix socket path; as tcp_connect.");

  m.def(
      "unix_adopt",
      [](py::object reactor, int fd, py::object handler, std::optional<reactor::Strand> strand) {
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
