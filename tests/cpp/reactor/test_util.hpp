#pragma once

// Helpers shared by the reactor tests: a reactor running on its own thread, and blocking client
// sockets with timeouts so that every test is bounded. Loopback addresses only.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "reactor/reactor.hpp"

namespace tmr::reactor::testing {

using namespace std::chrono_literals;

inline ReactorOptions with_workers(unsigned n) {
  ReactorOptions options;
  options.workers = n;
  return options;
}

/// Runs a reactor on a background thread for the lifetime of the object.
class RunningReactor {
 public:
  explicit RunningReactor(unsigned workers, ReactorOptions options = {})
      : reactor_(with(workers, std::move(options))) {
    thread_ = std::thread([this] { reactor_.run(); });
  }
  RunningReactor(const RunningReactor&) = delete;
  RunningReactor& operator=(const RunningReactor&) = delete;
  ~RunningReactor() { stop(); }
  void stop() {
    reactor_.stop();
    if (thread_.joinable()) thread_.join();
  }
  /// Waits for run() to return by itself (after close_all), up to `limit`.
  bool join_within(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!reactor_.stopped() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    if (!reactor_.stopped()) return false;
    thread_.join();
    return true;
  }
  Reactor& operator*() { return reactor_; }
  Reactor* operator->() { return &reactor_; }

 private:
  static ReactorOptions with(unsigned workers, ReactorOptions options) {
    options.workers = workers;
    return options;
  }
  Reactor reactor_;
  std::thread thread_;
};

/// A listening socket on 127.0.0.1 made by hand (not by the reactor); its port in `port`.
inline int loopback_listener(unsigned short& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::system_error(errno, std::generic_category(), "listen");
  }
  port = ntohs(a.sin_port);
  return fd;
}

/// Polls `pred` until it holds or `limit` passes.
inline bool wait_until(const std::function<bool()>& pred,
                       std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// A blocking client socket with receive/send timeouts.
class Client {
 public:
  explicit Client(int fd) : fd_(fd) {
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  Client(Client&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client& operator=(Client&&) = delete;
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }

  static Client tcp(const std::string& host, unsigned short port) {
    const bool v6 = host.find(':') != std::string::npos;
    int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket");
    Client c(fd);
    int rc = -1;
    if (v6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      ::inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
      rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
      rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0) throw std::system_error(errno, std::generic_category(), "connect");
    return c;
  }

  static Client unix_stream(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    Client c(fd);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::system_error(errno, std::generic_category(), "connect");
    return c;
  }

  void send(const std::string& data) const {
    std::size_t done = 0;
    while (done < data.size()) {
      const auto n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send");
      done += static_cast<std::size_t>(n);
    }
  }

  /// Reads until `n` bytes arrived, EOF, or the timeout.
  std::string recv_exactly(std::size_t n) const {
    std::string out;
    char buf[65536];
    while (out.size() < n) {
      const auto r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) break;
      out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
  }

  /// Reads until EOF (or error / timeout).
  std::string recv_all() const {
    std::string out;
    char buf[65536];
    for (;;) {
      const auto r = ::recv(fd_, buf, sizeof buf, 0);
      if (r <= 0) break;
      out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
  }

  void shutdown_write() const { ::shutdown(fd_, SHUT_WR); }
  /// Closes with RST instead of FIN.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

/// A temporary directory for Unix sockets, removed at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tmr-reactor-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tmr::reactor::testing
