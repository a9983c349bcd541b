// TCP echo round trips per second and latency percentiles. Never pass/fail.
//
// Each benchmark starts an echo server in this process, then runs the load generator as a
// second process (this binary with --loadgen): C connections, each a closed loop of
// send(64 bytes) / receive(64 bytes) for D seconds. The load generator prints its totals on a
// pipe. Servers: the tm reactor with 1 and 2 workers (every read is one transaction that
// queues the echo at commit), and a plain single-threaded Asio server as the baseline.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reactor/reactor.hpp"
#include "reactor/tcp_transport.hpp"
#include "stm/stm.hpp"

namespace {

using namespace std::chrono;
namespace rx = tmr::reactor;
namespace asio = boost::asio;

constexpr int kConnections = 16;
constexpr double kSeconds = 2.0;
constexpr std::size_t kMessage = 64;

// ---------------------------------------------------------------- load generator (child)

int run_loadgen(unsigned short port, int connections, double seconds) {
  std::vector<std::thread> threads;
  threads.reserve(connections);
  std::vector<std::vector<double>> latencies(connections);
  std::atomic<bool> failed{false};
  const auto end = steady_clock::now() + duration<double>(seconds);
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        failed = true;
        return;
      }
      char out[kMessage], in[kMessage];
      std::memset(out, 'p', sizeof out);
      auto& lat = latencies[c];
      lat.reserve(1 << 16);
      while (steady_clock::now() < end) {
        const auto t0 = steady_clock::now();
        if (::send(fd, out, sizeof out, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof out)) break;
        std::size_t got = 0;
        while (got < sizeof in) {
          const auto n = ::recv(fd, in + got, sizeof in - got, 0);
          if (n <= 0) {
            failed = true;
            break;
          }
          got += static_cast<std::size_t>(n);
        }
        if (got < sizeof in) break;
        lat.push_back(duration<double, std::micro>(steady_clock::now() - t0).count());
      }
      ::close(fd);
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  const auto pct = [&](double p) {
    if (all.empty()) return 0.0;
    const auto at = static_cast<std::size_t>(p * static_cast<double>(all.size()));
    return all[std::min(all.size() - 1, at)];
  };
  std::cout << all.size() << ' ' << std::fixed << std::setprecision(1) << pct(0.50) << ' '
            << pct(0.99) << ' ' << (failed ? 1 : 0) << '\n';
  return 0;
}

struct LoadResult {
  double round_trips = 0, p50_us = 0, p99_us = 0;
  bool failed = true;
};

// Runs this binary as the load generator against `port`; parses its one-line report.
LoadResult spawn_loadgen(unsigned short port) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipefd[0]);
  std::string port_s = std::to_string(port), conns_s = std::to_string(kConnections),
              secs_s = std::to_string(kSeconds);
  char exe[] = "/proc/self/exe";
  char flag[] = "--loadgen";
  std::vector<char*> argv{exe, flag, port_s.data(), conns_s.data(), secs_s.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  LoadResult result;
  if (rc == 0) {
    std::string out;
    char buf[256];
    for (;;) {
      const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::size_t count = 0;
    int failed = 1;
    std::istringstream report(out);
    if (report >> count >> result.p50_us >> result.p99_us >> failed) {
      result.round_trips = static_cast<double>(count);
      result.failed = failed != 0;
    }
  }
  ::close(pipefd[0]);
  return result;
}

void report(benchmark::State& state, const LoadResult& r) {
  state.SetIterationTime(kSeconds);
  state.counters["round_trips_per_s"] = r.round_trips / kSeconds;
  state.counters["p50_us"] = r.p50_us;
  state.counters["p99_us"] = r.p99_us;
  if (r.failed) state.SkipWithError("load generator failed");
}

// ---------------------------------------------------------------- the tm reactor

class Echo : public rx::StreamHandler {
 public:
  void on_connected(tmr::stm::Transaction&,
                    const std::shared_ptr<rx::StreamTransport>& t) override {
    transport_ = t;
    ::setsockopt(t->native_handle(), IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
  }
  void on_data(tmr::stm::Transaction&, std::span<const char> d) override {
    transport_->write(std::string(d.data(), d.size()));
  }

 private:
  std::shared_ptr<rx::StreamTransport> transport_;
  int one_ = 1;
};

void BM_ReactorEcho(benchmark::State& state) {
  rx::ReactorOptions options;
  options.workers = static_cast<unsigned>(state.range(0));
  rx::Reactor reactor(options);
  auto listener = rx::tcp_listen(reactor, "127.0.0.1", 0,
                                 [](tmr::stm::Transaction&) { return std::make_shared<Echo>(); });
  std::thread loop([&] { reactor.run(); });
  for (auto _ : state) report(state, spawn_loadgen(listener->port()));
  reactor.stop();
  loop.join();
}
BENCHMARK(BM_ReactorEcho)->Arg(1)->Arg(2)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

// ---------------------------------------------------------------- plain Asio, one thread

class AsioSession : public std::enable_shared_from_this<AsioSession> {
 public:
  explicit AsioSession(asio::ip::tcp::socket s) : socket_(std::move(s)) {
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }
  void read() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](auto ec,
                                                                            std::size_t n) {
      if (ec) return;
      asio::async_write(self->socket_, asio::buffer(self->buf_, n), [self](auto e, std::size_t) {
        if (!e) self->read();
      });
    });
  }

 private:
  asio::ip::tcp::socket socket_;
  char buf_[65536]{};
};

void accept_loop(asio::ip::tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](auto ec, asio::ip::tcp::socket s) {
    if (ec) return;
    std::make_shared<AsioSession>(std::move(s))->read();
    accept_loop(acceptor);
  });
}

void BM_PlainAsioEcho(benchmark::State& state) {
  asio::io_context context(1);
  asio::ip::tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), 0});
  accept_loop(acceptor);
  std::thread loop([&] { context.run(); });
  for (auto _ : state) report(state, spawn_loadgen(acceptor.local_endpoint().port()));
  context.stop();
  loop.join();
}
BENCHMARK(BM_PlainAsioEcho)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "--loadgen") == 0) {
    return run_loadgen(static_cast<unsigned short>(std::atoi(argv[2])), std::atoi(argv[3]),
                       std::atof(argv[4]));
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
