#pragma once

#include <boost/asio/io_context.hpp>

namespace tmr::reactor {

/// Runs an io_context on N threads: the calling thread plus N - 1 threads it starts. With N = 1
/// everything runs on the caller, so a one-worker reactor is exactly serial.
class WorkerPool {
 public:
  WorkerPool(boost::asio::io_context& context, unsigned workers);

  unsigned size() const noexcept { return workers_; }

  /// Blocks until the io_context runs out of work or is stopped, and joins every thread it
  /// started. An exception escaping a handler is rethrown here after the others have stopped.
  void run();

 private:
  boost::asio::io_context& context_;
  unsigned workers_;
};

}  // namespace tmr::reactor
