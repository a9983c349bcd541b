#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

namespace {

// A random script of flip operations: each flips a few bits (xor) and adds its id to a counter
// cell chosen by the script. Flips commute, so every serial order, and so every serializable
// parallel run, ends in the same state as the sequential run.
struct Op {
  std::vector<int> bits;
  int counter = 0;
  long amount = 0;
};

std::vector<Op> make_script(int n, int bits, int counters, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<Op> ops(n);
  for (auto& op : ops) {
    const int k = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < k; ++i) op.bits.push_back(static_cast<int>(rng() % bits));
    op.counter = static_cast<int>(rng() % counters);
    op.amount = static_cast<long>(rng() % 1000);
  }
  return ops;
}

struct State {
  std::vector<std::unique_ptr<stm::TVar<int>>> bits;
  std::vector<std::unique_ptr<stm::TVar<long>>> counters;
  State(int nb, int nc) {
    for (int i = 0; i < nb; ++i) bits.push_back(std::make_unique<stm::TVar<int>>(0));
    for (int i = 0; i < nc; ++i) counters.push_back(std::make_unique<stm::TVar<long>>(0));
  }
  void apply(const Op& op) {
    stm::atomically([&](stm::Transaction& tx) {
      for (int b : op.bits) bits[b]->store(tx, bits[b]->load(tx) ^ 1);
      auto& c = *counters[op.counter];
      c.store(tx, c.load(tx) + op.amount);
    });
  }
  std::vector<long> observe() {
    std::vector<long> out;
    stm::atomically([&](stm::Transaction& tx) {
      out.clear();
      for (auto& b : bits) out.push_back(b->load(tx));
      for (auto& c : counters) out.push_back(c->load(tx));
    });
    return out;
  }
};

}  // namespace

TEST(Flipper, ParallelEqualsSequential) {
  constexpr int nbits = 64, ncounters = 4;
  const auto script = make_script(scaled(20000), nbits, ncounters, 1234);
  State seq(nbits, ncounters);
  for (const Op& op : script) seq.apply(op);

  State par(nbits, ncounters);
  stm::set_abort_injection(0.05, 99);
  constexpr int threads = 3;
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (std::size_t i = t; i < script.size(); i += threads) par.apply(script[i]);
    });
  }
  for (auto& th : pool) th.join();
  stm::set_abort_injection(0.0);
  EXPECT_EQ(seq.observe(), par.observe());
}
