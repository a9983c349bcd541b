#include "reactor/unix_transport.hpp"

#include "reactor/detail/stream_listener.hpp"
#include "reactor/reactor.hpp"

namespace tmr::reactor {

namespace {

using local = boost::asio::local::stream_protocol;
using Connection = detail::StreamConnection<local>;
using Listener = detail::StreamListenerImpl<local>;

void throw_if(const std::error_code& ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
}

}  // namespace

std::shared_ptr<StreamListener> unix_listen(Reactor& reactor, const std::string& path,
                                            HandlerFactory factory, ListenOptions options,
                                            std::error_code& ec) {
  local::acceptor acceptor(reactor.context());
  boost::system::error_code bec;
  acceptor.open(local(), bec);
  if (!bec) acceptor.bind(local::endpoint(path), bec);
  if (!bec) acceptor.listen(options.backlog, bec);
  if (bec) {
    ec = bec;
    return nullptr;
  }
  auto listener = std::make_shared<Listener>(reactor.impl(), std::move(acceptor),
                                             std::move(factory), std::move(options));
  reactor.impl().track(listener);
  listener->start();
  return listener;
}

std::shared_ptr<StreamListener> unix_listen(Reactor& reactor, const std::string& path,
                                            HandlerFactory factory, ListenOptions options) {
  std::error_code ec;
  auto listener = unix_listen(reactor, path, std::move(factory), std::move(options), ec);
  throw_if(ec, "unix_listen");
  return listener;
}

std::shared_ptr<StreamTransport> unix_connect(Reactor& reactor, const std::string& path,
                                              std::shared_ptr<StreamHandler> handler,
                                              std::error_code& ec) {
  if (!handler) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  auto& impl = reactor.impl();
  auto connection =
      std::make_shared<Connection>(impl, local::socket(impl.context), impl.new_strand());
  impl.track(connection);
  detail::at_commit(
      [connection, endpoint = local::endpoint(path), handler = std::move(handler)]() mutable {
        boost::asio::post(connection->strand_exec(), [connection, endpoint, handler] {
          connection->start_connect(endpoint, handler);
        });
      });
  return connection;
}

std::shared_ptr<StreamTransport> unix_connect(Reactor& reactor, const std::string& path,
                                              std::shared_ptr<StreamHandler> handler) {
  std::error_code ec;
  auto transport = unix_connect(reactor, path, std::move(handler), ec);
  throw_if(ec, "unix_connect");
  return transport;
}

std::shared_ptr<StreamTransport> unix_adopt(Reactor& reactor, int fd,
                                            std::shared_ptr<StreamHandler> handler,
                                            const Strand& strand, std::error_code& ec) {
  if (!handler) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  return detail::adopt_connected(reactor.impl(), local(), fd, std::move(handler), strand, ec);
}

std::shared_ptr<StreamTransport> unix_adopt(Reactor& reactor, int fd,
                                            std::shared_ptr<StreamHandler> handler,
                                            std::error_code& ec) {
  return unix_adopt(reactor, fd, std::move(handler), Strand(), ec);
}

std::shared_ptr<StreamTransport> unix_adopt(Reactor& reactor, int fd,
                                            std::shared_ptr<StreamHandler> handler) {
  std::error_code ec;
  auto transport = unix_adopt(reactor, fd, std::move(handler), ec);
  throw_if(ec, "unix_adopt");
  return transport;
}

}  // namespace tmr::reactor
