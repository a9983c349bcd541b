#include "reactor/strand.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace tmr::reactor {
namespace {

using namespace testing;

TEST(Strand, CallsOnOneStrandRunInOrderOneAtATime) {
  RunningReactor r(2);
  Strand a = r->make_strand(), b = r->make_strand();
  EXPECT_NE(a.id(), b.id());
  EXPECT_FALSE(a.running_in_this_thread());
  constexpr int kCalls = 2000;
  std::vector<int> seen_a, seen_b;  // strand-local: each touched by its strand only
  std::atomic<int> inside_a{0}, overlaps{0}, done{0};
  for (int i = 0; i < kCalls; ++i) {
    r->post(a, [&, i](stm::Transaction&) {
      if (inside_a.fetch_add(1) != 0) overlaps.fetch_add(1);
      if (!current_strand().running_in_this_thread()) overlaps.fetch_add(1);
      seen_a.push_back(i);
      inside_a.fetch_sub(1);
      done.fetch_add(1);
    });
    r->post(b, [&, i](stm::Transaction&) {
      seen_b.push_back(i);
      done.fetch_add(1);
    });
  }
  ASSERT_TRUE(wait_until([&] { return done.load() == 2 * kCalls; }));
  EXPECT_EQ(overlaps.load(), 0);
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(seen_a[i], i);
    ASSERT_EQ(seen_b[i], i);
  }
}

TEST(Strand, OneStrandReactorRunsEveryEventInPostOrder) {
  ReactorOptions options;
  options.one_strand = true;
  RunningReactor r(2, options);
  EXPECT_TRUE(r->one_strand());
  Strand a = r->make_strand(), b = r->make_strand();
  EXPECT_EQ(a.id(), b.id());
  constexpr int kCalls = 2000;
  std::vector<int> seen;  // strand-local: every post below runs on the one strand
  std::atomic<int> inside{0}, overlaps{0}, done{0};
  auto record = [&](int i) {
    return [&, i](stm::Transaction&) {
      if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
      seen.push_back(i);
      inside.fetch_sub(1);
      done.fetch_add(1);
    };
  };
  for (int i = 0; i < kCalls; ++i) {
    r->post(i % 2 ? a : b, record(i));
    r->post(record(-1 - i), StrandChoice::fresh);  // a "fresh" strand is the one strand too
  }
  ASSERT_TRUE(wait_until([&] { return done.load() == 2 * kCalls; }));
  EXPECT_EQ(overlaps.load(), 0);
  for (int i = 0; i < kCalls; ++i) {
    const auto at = 2 * static_cast<std::size_t>(i);
    ASSERT_EQ(seen[at], i);
    ASSERT_EQ(seen[at + 1], -1 - i);
  }
}

TEST(Strand, EmptyOutsideCallbacks) {
  EXPECT_FALSE(current_strand());
  EXPECT_EQ(current_strand().id(), 0u);
}

}  // namespace
}  // namespace tmr::reactor
