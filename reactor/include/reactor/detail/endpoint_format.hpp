#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <string>

namespace tmr::reactor::detail {

/// "host:port", "[v6]:port", or the socket path: the form every transport reports addresses in.
template <class Endpoint>
std::string format_endpoint(const Endpoint& ep) {
  if constexpr (std::is_same_v<Endpoint, boost::asio::local::stream_protocol::endpoint>) {
    return ep.path();
  } else {
    const auto address = ep.address();
    const auto host = address.to_string();
    return (address.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(ep.port());
  }
}

/// The address and the error a host string gives; numeric only, by design (no resolver).
inline boost::asio::ip::address parse_address(const std::string& host, std::error_code& ec) {
  boost::system::error_code bec;
  auto address = boost::asio::ip::make_address(host, bec);
  ec = bec;
  return address;
}

}  // namespace tmr::reactor::detail
