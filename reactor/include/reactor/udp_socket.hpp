#pragma once

#include <memory>
#include <span>
#include <string>
#include <system_error>

namespace tmr::stm {
class Transaction;
}

namespace tmr::reactor {

class Reactor;

/// A datagram peer address.
struct UdpEndpoint {
  std::string host;  ///< numeric address
  unsigned short port = 0;
  friend bool operator==(const UdpEndpoint&, const UdpEndpoint&) = default;
};

/// The owner of a UDP socket; called in transactions on the socket's strand.
class DatagramHandler {
 public:
  virtual ~DatagramHandler() = default;
  virtual void on_datagram(stm::Transaction&, std::span<const char> data,
                           const UdpEndpoint& from) = 0;
  /// A receive or send error (for instance connection_refused from an ICMP error); the
  /// socket keeps receiving.
  virtual void on_error(stm::Transaction&, std::error_code) {}
};

/// A bound UDP socket. Sends made inside a transaction go out at commit, in commit order.
class UdpSocket {
 public:
  virtual ~UdpSocket() = default;
  /// Queues one datagram. Fails (std::system_error / `ec`) only for an invalid address.
  void send_to(std::string data, const UdpEndpoint& to) {
    std::error_code ec;
    send_to(std::move(data), to, ec);
    if (ec) throw std::system_error(ec, "UdpSocket::send_to");
  }
  virtual void send_to(std::string data, const UdpEndpoint& to, std::error_code& ec) = 0;
  virtual UdpEndpoint local_endpoint() const = 0;
  virtual int native_handle() const = 0;
  /// Stops receiving and closes, after queued datagrams are sent. Idempotent.
  virtual void close() = 0;
};

/// Binds a UDP socket to `host`:`port` (port 0 picks one) and starts receiving.
std::shared_ptr<UdpSocket> udp_bind(Reactor& reactor, const std::string& host, unsigned short port,
                                    std::shared_ptr<DatagramHandler> handler);
std::shared_ptr<UdpSocket> udp_bind(Reactor& reactor, const std::string& host, unsigned short port,
                                    std::shared_ptr<DatagramHandler> handler, std::error_code& ec);

}  // namespace tmr::reactor
