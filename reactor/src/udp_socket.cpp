#include "reactor/udp_socket.hpp"

#include <boost/asio/bind_executor.hpp>
#include <deque>

#include "reactor/detail/endpoint_format.hpp"
#include "reactor/detail/reactor_impl.hpp"

namespace tmr::reactor {

namespace {

using udp = boost::asio::ip::udp;
namespace asio = boost::asio;

/// A bound UDP socket. Receives and sends run on its strand; committed sends meet the strand
/// through `mu_`, as in a stream connection, so datagrams leave in commit order.
class UdpSocketImpl final : public UdpSocket,
                            public detail::Closable,
                            public std::enable_shared_from_this<UdpSocketImpl> {
 public:
  static constexpr std::size_t kMaxDatagram = 65536;

  UdpSocketImpl(detail::ReactorImpl& reactor, udp::socket socket,
                std::shared_ptr<DatagramHandler> handler)
      : reactor_(reactor),
        strand_(reactor.new_strand()),
        socket_(std::move(socket)),
        handler_(std::move(handler)),
        buffer_(std::make_unique<char[]>(kMaxDatagram)),
        native_(socket_->native_handle()) {
    boost::system::error_code ignored;
    const auto local = socket_->local_endpoint(ignored);
    local_ = UdpEndpoint{local.address().to_string(), local.port()};
  }

  void start() {
    detail::at_commit([self = shared_from_this()] {
      asio::post(self->strand_->exec, [self] { self->receive(); });
    });
  }

  using UdpSocket::send_to;
  void send_to(std::string data, const UdpEndpoint& to, std::error_code& ec) override {
    const auto address = detail::parse_address(to.host, ec);
    if (ec) return;
    detail::at_commit([self = shared_from_this(), data = std::move(data),
                       peer = udp::endpoint(address, to.port)]() mutable {
      std::unique_lock lock(self->mu_);
      if (self->closing_ || self->reactor_.shutting_down()) return;
      self->queue_.emplace_back(std::move(data), peer);
      if (self->sending_) return;
      self->sending_ = true;
      lock.unlock();
      asio::post(self->strand_->exec, [self] { self->send_next(); });
    });
  }

  UdpEndpoint local_endpoint() const override { return local_; }
  int native_handle() const override { return native_.load(std::memory_order_relaxed); }

  void close() override {
    detail::at_commit([self = shared_from_this()] { self->close_gracefully(); });
  }

  void close_gracefully() override {
    std::unique_lock lock(mu_);
    if (closing_ || reactor_.shutting_down()) return;
    closing_ = true;
    if (sending_) return;  // send_next closes once the queue is drained
    sending_ = true;
    lock.unlock();
    asio::post(strand_->exec, [self = shared_from_this()] { self->send_next(); });
  }

  void destroy_now() noexcept override {
    closed_ = true;
    socket_.reset();
    handler_.reset();
  }

 private:
  void receive() {
    if (closed_) return;
    socket_->async_receive_from(
        asio::buffer(buffer_.get(), kMaxDatagram), from_,
        asio::bind_executor(strand_->exec, [self = shared_from_this()](
                                               const boost::system::error_code& ec, std::size_t n) {
          self->on_receive(ec, n);
        }));
  }

  void on_receive(const boost::system::error_code& ec, std::size_t n) {
    if (closed_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      report(ec);
    } else {
      const std::span<const char> data(buffer_.get(), n);
      const UdpEndpoint from{from_.address().to_string(), from_.port()};
      reactor_.run_event(strand_, EventKind::read,
                         [&](stm::Transaction& tx) { handler_->on_datagram(tx, data, from); });
    }
    receive();
  }

  // On the strand; sending_ is true while this chain runs.
  void send_next() {
    std::unique_lock lock(mu_);
    if (queue_.empty() || closed_) {
      sending_ = false;
      const bool close_now = closing_;
      lock.unlock();
      if (close_now) finish_close();
      return;
    }
    lock.unlock();
    auto& [data, peer] = queue_.front();  // only send_next pops, and it runs on the strand
    socket_->async_send_to(
        asio::buffer(data), peer,
        asio::bind_executor(strand_->exec, [self = shared_from_this()](
                                               const boost::system::error_code& ec, std::size_t) {
          {
            std::lock_guard lock(self->mu_);
            self->queue_.pop_front();
          }
          if (ec && ec != asio::error::operation_aborted && !self->closed_) self->report(ec);
          self->send_next();
        }));
  }

  void finish_close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_->close(ignored);
    native_ = -1;
    reactor_.untrack(this);
  }

  void report(const boost::system::error_code& ec) {
    const std::error_code error = ec;
    reactor_.run_event(strand_, EventKind::error,
                       [&](stm::Transaction& tx) { handler_->on_error(tx, error); });
  }

  detail::ReactorImpl& reactor_;
  const std::shared_ptr<detail::StrandImpl> strand_;
  // Strand-only (and destroy_now): the socket, the handler, the receive state, closed_.
  std::optional<udp::socket> socket_;
  std::shared_ptr<DatagramHandler> handler_;
  std::unique_ptr<char[]> buffer_;
  udp::endpoint from_;
  bool closed_ = false;
  UdpEndpoint local_;  // immutable after construction
  std::atomic<int> native_{-1};

  std::mutex mu_;
  // Guarded by mu_: datagrams committed and not yet sent, in commit order. sending_ is true
  // while a send_next chain runs (it alone pops); once closing_, nothing more is queued.
  std::deque<std::pair<std::string, udp::endpoint>> queue_;
  bool sending_ = false;
  bool closing_ = false;
};

}  // namespace

std::shared_ptr<UdpSocket> udp_bind(Reactor& reactor, const std::string& host, unsigned short port,
                                    std::shared_ptr<DatagramHandler> handler, std::error_code& ec) {
  const auto address = detail::parse_address(host, ec);
  if (ec) return nullptr;
  if (!handler) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return nullptr;
  }
  const udp::endpoint endpoint(address, port);
  udp::socket socket(reactor.context());
  boost::system::error_code bec;
  socket.open(endpoint.protocol(), bec);
  if (!bec) socket.bind(endpoint, bec);
  if (bec) {
    ec = bec;
    return nullptr;
  }
  auto impl =
      std::make_shared<UdpSocketImpl>(reactor.impl(), std::move(socket), std::move(handler));
  reactor.impl().track(impl);
  impl->start();
  return impl;
}

std::shared_ptr<UdpSocket> udp_bind(Reactor& reactor, const std::string& host, unsigned short port,
                                    std::shared_ptr<DatagramHandler> handler) {
  std::error_code ec;
  auto socket = udp_bind(reactor, host, port, std::move(handler), ec);
  if (ec) throw std::system_error(ec, "udp_bind");
  return socket;
}

}  // namespace tmr::reactor
