// tm._core.StreamListener and tcp_listen / tcp_adopt_listener / unix_listen: a listening socket
// whose accepted connections get their handler from a Python factory, called inside the accept
// transaction.
#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>

#include "py_stream_handler.hpp"
#include "reactor/reactor.hpp"
#include "reactor/stream_transport.hpp"
#include "reactor/tcp_transport.hpp"
#include "reactor/unix_transport.hpp"
#include "reactor_dispatcher.hpp"
#include "released_gil.hpp"
#include "stm/stm.hpp"
#include "stream_address.hpp"
#include "stream_errors.hpp"

namespace tmr::bindings {

// Defined in reactor_core.cpp: the C++ reactor behind a tm._core.Reactor.
reactor::Reactor& native_reactor(py::handle reactor);

namespace {

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
    ReleasedGil release;
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
    ReleasedGil release;
    listener = start(std::move(make), std::move(options), ec);
  }
  if (!listener) raise_os_error(ec);
  return PyStreamListener{std::move(listener), is_unix, std::move(factory_slot),
                          std::move(error_slot)};
}

}  // namespace

void init_stream_listener(py::module_& m) {
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
      [](const py::object& reactor, const std::string& host, int port, py::object factory,
         int backlog, bool reuse_address, bool reuse_port, bool v6_only, py::object on_error) {
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
      [](const py::object& reactor, int fd, py::object factory, int backlog, bool reuse_address,
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
      [](const py::object& reactor, const std::string& path, py::object factory, int backlog,
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
}

}  // namespace tmr::bindings
