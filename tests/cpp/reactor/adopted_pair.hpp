#pragma once

// The set-up the stream tests share: a connected AF_UNIX socket pair, one end adopted by a
// running reactor with the test's handler, the other a blocking client in the test's hands.

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <memory>
#include <system_error>
#include <utility>

#include "reactor/reactor.hpp"
#include "reactor/stream_transport.hpp"
#include "reactor/unix_transport.hpp"
#include "test_util.hpp"

namespace tmr::reactor::testing {

/// A connected AF_UNIX stream socket pair; throws if the kernel refuses one.
inline std::array<int, 2> socket_pair() {
  std::array<int, 2> fds{-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds.data()) != 0)
    throw std::system_error(errno, std::generic_category(), "socketpair");
  return fds;
}

/// A reactor of `workers` workers, running on its own thread, that adopted one end of a socket
/// pair (`fd()`) with `handler`; `peer` is the other end. The members end in reverse order: the
/// peer closes first, the reactor stops last.
template <class Handler>
class AdoptedPair {
  std::array<int, 2> fds_;  // first: the members below are made from it

 public:
  AdoptedPair(unsigned workers, std::shared_ptr<Handler> h, ReactorOptions options = {})
      : fds_(socket_pair()),
        reactor(workers, std::move(options)),
        handler(std::move(h)),
        transport(unix_adopt(*reactor, fds_[0], handler)),
        peer(fds_[1]) {}

  /// The adopted end's descriptor.
  int fd() const { return fds_[0]; }

  RunningReactor reactor;
  std::shared_ptr<Handler> handler;
  std::shared_ptr<StreamTransport> transport;
  Client peer;
};

}  // namespace tmr::reactor::testing
