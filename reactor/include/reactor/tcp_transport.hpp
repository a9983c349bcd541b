#pragma once

#include <memory>
#include <string>
#include <system_error>

#include "reactor/stream_transport.hpp"

namespace tmr::reactor {

class Reactor;

/// TCP over IPv4 and IPv6. Hosts are numeric addresses ("127.0.0.1", "::1", "0.0.0.0", "::");
/// name resolution belongs to the caller. Each function has a throwing overload
/// (std::system_error) and an `std::error_code&` overload that returns null on failure.

/// Binds and listens at once (so the port is known on return); accepts on the listener's own
/// strand, each connection on a new strand, each accept dispatched as one transaction.
std::shared_ptr<StreamListener> tcp_listen(Reactor& reactor, const std::string& host,
                                           unsigned short port, HandlerFactory factory,
                                           ListenOptions options = {});
std::shared_ptr<StreamListener> tcp_listen(Reactor& reactor, const std::string& host,
                                           unsigned short port, HandlerFactory factory,
                                           ListenOptions options, std::error_code& ec);

/// Starts connecting (at commit inside a transaction). The outcome reaches `handler` as
/// on_connected or on_connect_failed, in a transaction on the connection's new strand.
/// Fails synchronously only for an invalid address.
std::shared_ptr<StreamTransport> tcp_connect(Reactor& reactor, const std::string& host,
                                             unsigned short port,
                                             std::shared_ptr<StreamHandler> handler);
std::shared_ptr<StreamTransport> tcp_connect(Reactor& reactor, const std::string& host,
                                             unsigned short port,
                                             std::shared_ptr<StreamHandler> handler,
                                             std::error_code& ec);

/// Adopts a connected TCP socket (IReactorSocket.adoptStreamConnection,
/// asyncio's connect_accepted_socket). The reactor owns `fd` from then on. Its events run on a
/// new strand, or on the other end's when that end is a connection of this reactor (accepted or
/// adopted): the two ends of an in-process connection run one at a time, in one order, as on a
/// single-threaded loop.
std::shared_ptr<StreamTransport> tcp_adopt(Reactor& reactor, int fd,
                                           std::shared_ptr<StreamHandler> handler);
std::shared_ptr<StreamTransport> tcp_adopt(Reactor& reactor, int fd,
                                           std::shared_ptr<StreamHandler> handler,
                                           std::error_code& ec);
/// As above, with the connection's events on `strand` (another connection's, a task's) instead
/// of a new strand: what runs there, this connection's handler included, runs one at a time.
std::shared_ptr<StreamTransport> tcp_adopt(Reactor& reactor, int fd,
                                           std::shared_ptr<StreamHandler> handler,
                                           const Strand& strand, std::error_code& ec);

/// Adopts a listening TCP socket (IReactorSocket.adoptStreamPort). Owns `fd` from then on.
std::shared_ptr<StreamListener> tcp_adopt_listener(Reactor& reactor, int fd, HandlerFactory factory,
                                                   ListenOptions options = {});
std::shared_ptr<StreamListener> tcp_adopt_listener(Reactor& reactor, int fd, HandlerFactory factory,
                                                   ListenOptions options, std::error_code& ec);

}  // namespace tmr::reactor
