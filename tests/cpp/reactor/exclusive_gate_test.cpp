#include "reactor/exclusive_gate.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tmr::reactor {
namespace {

using namespace std::chrono_literals;

// Callbacks on four threads pass the gate while one thread closes it again and again: while it is
// closed and emptied, no callback is inside, and callbacks that arrived meanwhile waited.
TEST(ExclusiveGate, NoCallbackIsInsideWhileTheGateIsClosed) {
  ExclusiveGate gate;
  std::atomic<int> inside{0};
  std::atomic<bool> alone{false};
  std::atomic<int> overlaps{0};
  std::atomic<int> waited{0};
  std::atomic<int> passes{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> callbacks;
  callbacks.reserve(4);
  for (int t = 0; t < 4; ++t) {
    callbacks.emplace_back([&] {
      while (!stop.load()) {
        ExclusiveGate::Pass pass(gate);
        if (!pass.entered()) {
          waited.fetch_add(1);
          pass.wait_open();
        }
        inside.fetch_add(1);
        if (alone.load()) overlaps.fetch_add(1);
        std::this_thread::yield();  // the callback's work
        inside.fetch_sub(1);
        passes.fetch_add(1);
      }
    });
  }
  // A count of closed sections, not a time: a loaded machine (or a sanitizer build) makes fewer
  // of them in a given time. The deadline only ends a hang.
  constexpr int kSections = 200;
  int sections = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (sections < kSections && std::chrono::steady_clock::now() < deadline) {
    gate.close();
    while (!gate.wait_empty(10ms)) {
    }
    alone.store(true);
    if (inside.load() != 0) overlaps.fetch_add(1);
    std::this_thread::sleep_for(50us);
    if (inside.load() != 0) overlaps.fetch_add(1);
    alone.store(false);
    gate.open();
    ++sections;
    std::this_thread::sleep_for(50us);  // callbacks run with the gate open
  }
  stop.store(true);
  for (auto& t : callbacks) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(sections, kSections);
  EXPECT_GT(passes.load(), sections);
  EXPECT_GT(waited.load(), 0);  // the slow path ran
}

TEST(ExclusiveGate, TheClosersOwnCallbacksAndNestedOnesPassWithoutWaiting) {
  ExclusiveGate gate;
  gate.close();
  {
    const ExclusiveGate::Pass own(gate);  // a callback the closing thread runs inline
    EXPECT_TRUE(own.entered());
  }
  EXPECT_TRUE(gate.wait_empty(0ms));
  gate.open();

  std::atomic<int> step{0};
  std::thread callback([&] {
    const ExclusiveGate::Pass outer(gate);
    EXPECT_TRUE(outer.entered());
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    const ExclusiveGate::Pass nested(gate);  // inside the callback: counts nothing, never waits
    EXPECT_TRUE(nested.entered());
  });
  while (step.load() != 1) std::this_thread::yield();
  gate.close();
  EXPECT_FALSE(gate.wait_empty(20ms));  // the callback is inside
  step.store(2);
  EXPECT_TRUE(gate.wait_empty(10s));
  callback.join();
  gate.open();
}

TEST(ExclusiveGate, MisuseIsRefused) {
  ExclusiveGate gate;
  {
    const ExclusiveGate::Pass pass(gate);
    EXPECT_THROW(gate.close(), std::logic_error);  // it would wait for itself
  }
  gate.close();
  std::thread other([&] {
    EXPECT_THROW(gate.close(), std::logic_error);  // one closer at a time
    EXPECT_THROW(gate.open(), std::logic_error);   // not the closer
  });
  other.join();
  gate.open();
  EXPECT_THROW(gate.open(), std::logic_error);  // not closed
  const ExclusiveGate::Pass after(gate);
  EXPECT_TRUE(after.entered());
}

}  // namespace
}  // namespace tmr::reactor
