#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

namespace {

// Random transfers, read-all audits that assert the total *inside* the transaction (opacity: even
// an attempt that later aborts must never see a broken total), and random inevitable transfers.
void run_bank(int threads, double injection) {
  constexpr int accounts = 32;
  constexpr long initial = 1000;
  std::vector<std::unique_ptr<stm::TVar<long>>> acct;
  acct.reserve(accounts);
  for (int i = 0; i < accounts; ++i) acct.push_back(std::make_unique<stm::TVar<long>>(initial));
  std::atomic<long> bad_audits{0}, audits{0}, inevitable_transfers{0};
  stm::set_abort_injection(injection, 7);
  const int ops = scaled(20000);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      for (int i = 0; i < ops; ++i) {
        const auto op = static_cast<int>(rng() % 100);
        if (op < 10) {
          stm::atomically([&](stm::Transaction& tx) {
            long sum = 0;
            for (auto& a : acct) sum += a->load(tx);
            if (sum != accounts * initial) bad_audits.fetch_add(1);
          });
          audits.fetch_add(1);
        } else {
          const auto from = static_cast<int>(rng() % accounts),
                     to = static_cast<int>(rng() % accounts);
          const auto amount = static_cast<long>(rng() % 50);
          const bool inevitable = op < 12;
          stm::atomically([&](stm::Transaction& tx) {
            if (inevitable) tx.become_inevitable();
            acct[from]->store(tx, acct[from]->load(tx) - amount);
            acct[to]->store(tx, acct[to]->load(tx) + amount);
          });
          if (inevitable) inevitable_transfers.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  stm::set_abort_injection(0.0);
  long total = 0;
  for (auto& a : acct) total += a->load();
  EXPECT_EQ(accounts * initial, total);
  EXPECT_EQ(0, bad_audits.load());
  EXPECT_GT(audits.load(), 0);
  EXPECT_GT(inevitable_transfers.load(), 0);
}

}  // namespace

TEST(Bank, TotalConservedWithAuditsOneThread) {
  run_bank(1, 0.0);
}
TEST(Bank, TotalConservedWithAuditsFourThreads) {
  run_bank(4, 0.0);
}
TEST(Bank, TotalConservedUnderAbortInjection) {
  run_bank(3, 0.2);
}
