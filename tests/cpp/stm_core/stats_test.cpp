#include <gtest/gtest.h>

#include <thread>

#include "stm/stm.hpp"

namespace stm = tmr::stm;

// A deterministic read-write conflict: the attempt reads x, another thread commits x, and the
// attempt's commit-time validation fails. Both site tags land in the conflict report.
TEST(Stats, ConflictIsCountedWithBothSites) {
  stm::reset_stats();
  stm::TVar<int> x(0, "x"), y(0, "y");
  const char* mine = stm::intern_site("reader.py:10");
  const char* theirs = stm::intern_site("writer.py:20");
  int attempts = 0;
  stm::atomically([&](stm::Transaction& tx) {
    tx.set_site(mine);
    const int v = x.load(tx);
    if (++attempts == 1) {
      std::thread([&] {
        stm::atomically([&](stm::Transaction& other) {
          other.set_site(theirs);
          x.store(other, 5);
        });
      }).join();
    }
    y.store(tx, v);
  });
  EXPECT_EQ(2, attempts);
  EXPECT_EQ(5, y.load());
  const stm::Stats s = stm::thread_stats();
  EXPECT_EQ(1u, s.aborts_of(stm::AbortCause::read_write));
  EXPECT_GE(s.commits, 2u);
  EXPECT_GT(s.ns_aborted, 0u);
  const stm::Stats total = stm::total_stats();
  EXPECT_GE(total.commits, s.commits + 1);  // includes the exited writer thread
  const auto report = stm::conflict_report();
  ASSERT_EQ(1u, report.size());
  EXPECT_EQ("x", report[0].cell_name);
  EXPECT_EQ("reader.py:10", report[0].site);
  EXPECT_EQ("writer.py:20", report[0].other_site);
  EXPECT_EQ(stm::AbortCause::read_write, report[0].cause);
  EXPECT_EQ(1u, report[0].count);
}

TEST(Stats, InevitableTimeAndEscalation) {
  stm::reset_stats();
  stm::TVar<int> x(0);
  stm::atomically([&](stm::Transaction& tx) {
    tx.become_inevitable();
    x.store(tx, 1);
  });
  stm::set_escalation_threshold(2);
  int attempts = 0;
  stm::atomically([&](stm::Transaction& tx) {
    ++attempts;
    if (!tx.is_inevitable()) tx.abort(stm::AbortCause::explicit_abort);
  });
  stm::set_escalation_threshold(8);
  EXPECT_EQ(3, attempts);
  const stm::Stats s = stm::thread_stats();
  EXPECT_EQ(2u, s.inevitable_commits);
  EXPECT_EQ(1u, s.escalations);
  EXPECT_EQ(2u, s.aborts_of(stm::AbortCause::explicit_abort));
  EXPECT_GT(s.ns_inevitable, 0u);
  EXPECT_STREQ("write_write", stm::to_string(stm::AbortCause::write_write));
}

// += sums every field and -= takes it away again: a span's counters are after -= before.
TEST(Stats, ArithmeticCoversEveryField) {
  stm::Stats a;
  a.commits = 7;
  a.read_only_commits = 3;
  a.aborts[static_cast<std::size_t>(stm::AbortCause::retry)] = 2;
  a.ns_aborted = 11;
  a.ns_inevitable = 13;
  a.inevitable_commits = 5;
  a.escalations = 1;
  stm::Stats sum = a;
  sum += a;
  EXPECT_EQ(14u, sum.commits);
  EXPECT_EQ(6u, sum.read_only_commits);
  EXPECT_EQ(4u, sum.aborts_of(stm::AbortCause::retry));
  EXPECT_EQ(22u, sum.ns_aborted);
  EXPECT_EQ(26u, sum.ns_inevitable);
  EXPECT_EQ(10u, sum.inevitable_commits);
  EXPECT_EQ(2u, sum.escalations);
  sum -= a;
  EXPECT_EQ(a.commits, sum.commits);
  EXPECT_EQ(a.read_only_commits, sum.read_only_commits);
  EXPECT_EQ(a.aborts, sum.aborts);
  EXPECT_EQ(a.ns_aborted, sum.ns_aborted);
  EXPECT_EQ(a.ns_inevitable, sum.ns_inevitable);
  EXPECT_EQ(a.inevitable_commits, sum.inevitable_commits);
  EXPECT_EQ(a.escalations, sum.escalations);
}
