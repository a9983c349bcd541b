#include "reactor/tcp_transport.hpp"

#include <sys/socket.h>

#include <boost/asio/ip/v6_only.hpp>

#include "reactor/detail/stream_listener.hpp"
#include "reactor/reactor.hpp"

namespace tmr::reactor {

namespace {

using tcp = boost::asio::ip::tcp;
using Connection = detail::StreamConnection<tcp>;
using Listener = detail::StreamListenerImpl<tcp>;

void throw_if(const std::error_code& ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
}

std::shared_ptr<StreamListener> start_listener(Reactor& reactor, tcp::acceptor acceptor,
                                               HandlerFactory factory, ListenOptions options) {
  auto listener = std::make_shared<Listener>(reactor.impl(), std::move(acceptor),
                                             std::move(factory), std::move(options));
  reactor.impl().track(listener);
  listener->start();
  return listener;
}

// Socket family of a descriptor, to adopt it with the right protocol.
tcp protocol_of(int fd, std::error_code& ec) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ec = std::error_code(errno, std::system_category());
    return tcp::v4();
  }
  return address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
}

}  // namespace

std::shared_ptr<StreamListener> tcp_listen(Reactor& reactor, const std::string& host,
                                           unsigned short port, HandlerFactory factory,
                                           ListenOptions options, std::error_code& ec) {
  const auto address = detail::parse_address(host, ec);
  if (ec) return nullptr;
  const tcp::endpoint endpoint(address, port);
  tcp::acceptor acceptor(reactor.context());
  boost::system::error_code bec;
  acceptor.open(endpoint.protocol(), bec);
  if (!bec && options.reuse_address) acceptor.set_option(tcp::acceptor::reuse_address(true), bec);
  if (!bec && options.reuse_port) {
    const int one = 1;
    if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      ec = std::error_code(errno, std::system_category());
      return nullptr;
    }
  }
  if (!bec && address.is_v6()) acceptor.set_option(boost::asio::ip::v6_only(options.v6_only), bec);
  if (!bec) acceptor.bind(endpoint, bec);
  if (!bec) acceptor.listen(options.backlog, bec);
  if (bec) {
    ec = bec;
    return nullptr;
  }
  return start_listener(reactor, std::move(acceptor), std::move(factory), std::move(options));
}

std::shared_ptr<StreamListener> tcp_listen(Reactor& reactor, const std::string& host,
                                           unsigned short port, HandlerFactory factory,
                                           ListenOptions options) {
  std::error_code ec;
  auto listener = tcp_listen(reactor, host, port, std::move(factory), std::move(options), ec);
  throw_if(ec, "tcp_listen");
  return listener;
}

std::shared_ptr<StreamTransport> tcp_connect(Reactor& reactor, const std::string& host,
                                             unsigned short port,
                                             std::shared_ptr<StreamHandler> handler,
                                             std::error_code& ec) {
  const auto address = detail::parse_address(host, ec);
  if (ec) return nullptr;
  if (!handler) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  auto& impl = reactor.impl();
  auto connection =
      std::make_shared<Connection>(impl, tcp::socket(impl.context), impl.new_strand());
  impl.track(connection);
  detail::at_commit([connection, endpoint = tcp::endpoint(address, port),
                     handler = std::move(handler)]() mutable {
    boost::asio::post(connection->strand_exec(), [connection, endpoint, handler] {
      connection->start_connect(endpoint, handler);
    });
  });
  return connection;
}

std::shared_ptr<StreamTransport> tcp_connect(Reactor& reactor, const std::string& host,
                                             unsigned short port,
                                             std::shared_ptr<StreamHandler> handler) {
  std::error_code ec;
  auto transport = tcp_connect(reactor, host, port, std::move(handler), ec);
  throw_if(ec, "tcp_connect");
  return transport;
}

std::shared_ptr<StreamTransport> tcp_adopt(Reactor& reactor, int fd,
                                           std::shared_ptr<StreamHandler> handler,
                                           const Strand& strand, std::error_code& ec) {
  if (!handler) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  const tcp protocol = protocol_of(fd, ec);
  if (ec) return nullptr;
  return detail::adopt_connected(reactor.impl(), protocol, fd, std::move(handler), strand, ec);
}

std::shared_ptr<StreamTransport> tcp_adopt(Reactor& reactor, int fd,
                                           std::shared_ptr<StreamHandler> handler,
                                           std::error_code& ec) {
  return tcp_adopt(reactor, fd, std::move(handler), Strand(), ec);
}

std::shared_ptr<StreamTransport> tcp_adopt(Reactor& reactor, int fd,
                                           std::shared_ptr<StreamHandler> handler) {
  std::error_code ec;
  auto transport = tcp_adopt(reactor, fd, std::move(handler), ec);
  throw_if(ec, "tcp_adopt");
  return transport;
}

std::shared_ptr<StreamListener> tcp_adopt_listener(Reactor& reactor, int fd, HandlerFactory factory,
                                                   ListenOptions options, std::error_code& ec) {
  const tcp protocol = protocol_of(fd, ec);
  if (ec) return nullptr;
  tcp::acceptor acceptor(reactor.context());
  boost::system::error_code bec;
  acceptor.assign(protocol, fd, bec);
  if (bec) {
    ec = bec;
    return nullptr;
  }
  return start_listener(reactor, std::move(acceptor), std::move(factory), std::move(options));
}

std::shared_ptr<StreamListener> tcp_adopt_listener(Reactor& reactor, int fd, HandlerFactory factory,
                                                   ListenOptions options) {
  std::error_code ec;
  auto listener = tcp_adopt_listener(reactor, fd, std::move(factory), std::move(options), ec);
  throw_if(ec, "tcp_adopt_listener");
  return listener;
}

}  // namespace tmr::reactor
