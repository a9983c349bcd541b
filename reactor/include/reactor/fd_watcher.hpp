#pragma once

#include <memory>
#include <system_error>

#include "reactor/reactor.hpp"

namespace tmr::reactor {

/// Readiness notifications for a descriptor the reactor does not own (Twisted's IReactorFDSet,
/// asyncio's add_reader/add_writer). Level-triggered, as those APIs expect: while a reader is
/// registered and the descriptor stays readable, the reader is called again, each call one
/// transaction on the watcher's strand. Changes made inside a transaction take effect at commit.
/// The descriptor is never closed by the watcher. Thread-safe.
class FdWatcher {
 public:
  virtual ~FdWatcher() = default;
  virtual void add_reader(Callback on_readable) = 0;
  virtual void remove_reader() = 0;
  virtual void add_writer(Callback on_writable) = 0;
  virtual void remove_writer() = 0;
  virtual bool has_reader() const = 0;
  virtual bool has_writer() const = 0;
  /// Removes both and forgets the descriptor; call before closing it. Idempotent.
  virtual void release() = 0;
  virtual int native_handle() const = 0;
};

std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd);
std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd, std::error_code& ec);
/// Runs the watcher's callbacks on `strand` (a new strand when it is empty): the owner of the
/// descriptor (a Twisted transport, say) can then run its other events on the same strand.
std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd, const Strand& strand);
std::shared_ptr<FdWatcher> watch_fd(Reactor& reactor, int fd, const Strand& strand,
                                    std::error_code& ec);

}  // namespace tmr::reactor
