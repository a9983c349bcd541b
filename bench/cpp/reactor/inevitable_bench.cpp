// What a transaction that blocks while inevitable costs the other events, with 2 workers. It
// decides whether waiting transactions need to be suspended on fibers (docs/REACTOR.md).
//
// One "blocker" transaction becomes inevitable and sleeps 20 ms (a blocking call). Meanwhile
// 1000 small, non-conflicting transactions on other strands are posted; we time how long until
// they have all committed. Variants:
//   0  no blocker                                     (baseline)
//   1  the blocker only                               (one worker is lost to it)
//   2  the blocker, and one more transaction that wants the token before the small ones
//      (it blocks the second worker until the token is free: nothing else can run)
//   3  every small transaction wants the token        (the token serializes them anyway)

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "reactor/inevitable.hpp"
#include "reactor/reactor.hpp"
#include "stm/stm.hpp"

namespace {

namespace rx = tmr::reactor;
using namespace std::chrono;

constexpr int kSmall = 1000;

void BM_EventsBesideABlockedInevitable(benchmark::State& state) {
  const int variant = static_cast<int>(state.range(0));
  std::vector<std::unique_ptr<tmr::stm::TVar<long>>> vars;
  vars.reserve(kSmall);
  for (int i = 0; i < kSmall; ++i) vars.push_back(std::make_unique<tmr::stm::TVar<long>>(0));
  for (auto _ : state) {
    rx::ReactorOptions options;
    options.workers = 2;
    rx::Reactor reactor(options);
    std::atomic<int> done{0};
    std::atomic<bool> blocking{false};
    std::thread loop([&] { reactor.run(); });
    if (variant >= 1) {
      reactor.post([&](tmr::stm::Transaction&) {
        rx::run_blocking([&] {
          blocking = true;
          std::this_thread::sleep_for(20ms);
        });
      });
      while (!blocking) std::this_thread::yield();
    }
    if (variant == 2) reactor.post([](tmr::stm::Transaction&) { rx::become_inevitable(); });
    const auto start = steady_clock::now();
    for (int i = 0; i < kSmall; ++i) {
      reactor.post([&, i](tmr::stm::Transaction& tx) {
        if (variant == 3) rx::become_inevitable();
        vars[i]->store(tx, vars[i]->load(tx) + 1);
        tx.on_commit([&] { done.fetch_add(1); });
      });
    }
    while (done.load() < kSmall) std::this_thread::yield();
    state.SetIterationTime(duration<double>(steady_clock::now() - start).count());
    reactor.stop();
    loop.join();
  }
}
BENCHMARK(BM_EventsBesideABlockedInevitable)
    ->DenseRange(0, 3)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
