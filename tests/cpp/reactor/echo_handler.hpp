#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>

#include "reactor/stream_transport.hpp"

namespace tmr::reactor::testing {

/// Echoes every byte back; records how the connection ended.
class EchoHandler : public StreamHandler {
 public:
  void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>& t) override {
    transport_ = t;
  }
  void on_data(stm::Transaction&, std::span<const char> data) override {
    transport_->write(std::string(data.data(), data.size()));
  }
  void on_closed(stm::Transaction&, std::error_code ec) override {
    std::lock_guard lock(mu_);
    closed_ = true;
    close_error_ = ec;
  }
  bool closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }
  std::error_code close_error() {
    std::lock_guard lock(mu_);
    return close_error_;
  }

 private:
  std::shared_ptr<StreamTransport> transport_;  // strand-local
  std::mutex mu_;
  bool closed_ = false;
  std::error_code close_error_;
};

}  // namespace tmr::reactor::testing
