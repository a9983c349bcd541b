#pragma once

// tm._core.StreamTransport: the reactor's connected byte stream as Python sees it.

#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "reactor/stream_transport.hpp"

namespace tmr::bindings {

namespace py = pybind11;

// Created before the C++ connection exists (so that connect and accept hand the handler the very
// object tcp_connect returns); the connection is set once, by whichever comes first: the function
// that created it or the connection's first callback.
class PyStreamTransport {
 public:
  explicit PyStreamTransport(bool is_unix) : is_unix_(is_unix) {}

  void set(const std::shared_ptr<reactor::StreamTransport>& transport) {
    std::lock_guard lock(mu_);
    if (!transport_) {
      transport_ = transport;
      raw_.store(transport_.get(), std::memory_order_release);
    }
  }

  std::shared_ptr<reactor::StreamTransport> get() const {
    std::lock_guard lock(mu_);
    if (!transport_) throw std::runtime_error("tm._core.StreamTransport: not started");
    return transport_;
  }

  // The connection, without the lock and the shared_ptr copy of get(): for calls made while
  // this object is alive (it keeps the connection, set once, until it is destroyed).
  reactor::StreamTransport& ref() const {
    reactor::StreamTransport* transport = raw_.load(std::memory_order_acquire);
    if (transport == nullptr) throw std::runtime_error("tm._core.StreamTransport: not started");
    return *transport;
  }

  bool is_unix() const noexcept { return is_unix_; }

 private:
  const bool is_unix_;
  mutable std::mutex mu_;
  std::shared_ptr<reactor::StreamTransport> transport_;  // guarded by mu_; set once
  std::atomic<reactor::StreamTransport*> raw_{nullptr};  // transport_.get(), once set
};

using TransportPtr = std::shared_ptr<PyStreamTransport>;

/// Registers the class tm._core.StreamTransport.
void init_stream_transport_class(py::module_& m);

}  // namespace tmr::bindings
