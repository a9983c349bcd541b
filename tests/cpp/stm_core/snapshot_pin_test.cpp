#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "stm/stm.hpp"

namespace stm = tmr::stm;

// stm::SnapshotPin and stm::reclaim_pending(): what a reader of committed payloads outside any
// transaction (the bindings' garbage-collector traversal) relies on.

namespace {

std::atomic<long> live{0};

struct Payload {
  long value;
  explicit Payload(long v) : value(v) { live.fetch_add(1); }
  Payload(const Payload&) = delete;
  Payload& operator=(const Payload&) = delete;
  ~Payload() { live.fetch_sub(1); }
};

void release_payload(void* p) {
  delete static_cast<Payload*>(p);
}

void store(stm::Cell& cell, long value) {
  stm::atomically([&](stm::Transaction& tx) { cell.store(tx, new Payload(value)); });
}

}  // namespace

// A payload peeked under a pin outlives its replacement until the pin is destroyed.
TEST(SnapshotPin, KeepsPeekedPayloadsUntilDestroyed) {
  live = 0;
  stm::Cell cell(new Payload(0), &release_payload);
  std::promise<void> pinned, replaced, unpinned;
  std::thread reader([&] {
    {
      const stm::SnapshotPin pin;
      const auto* peeked = static_cast<const Payload*>(cell.unsafe_peek());
      pinned.set_value();
      replaced.get_future().wait();
      EXPECT_EQ(0, peeked->value);  // still alive: ASan would report a use-after-free
    }
    unpinned.set_value();
  });
  pinned.get_future().wait();
  store(cell, 1);
  EXPECT_TRUE(stm::reclaim_pending());
  stm::reclaim();
  EXPECT_EQ(2, live.load());  // the pinned payload is retired, not released
  EXPECT_TRUE(stm::reclaim_pending());
  replaced.set_value();
  unpinned.get_future().wait();
  stm::reclaim();
  EXPECT_EQ(1, live.load());
  EXPECT_FALSE(stm::reclaim_pending());
  reader.join();
  cell.unsafe_reset(nullptr);
  EXPECT_EQ(0, live.load());
}

// Inside a transaction a pin does nothing, and in particular its destruction does not end the
// transaction's own pin on the snapshot it reads.
TEST(SnapshotPin, InsideATransactionLeavesTheTransactionsPin) {
  live = 0;
  stm::Cell cell(new Payload(0), &release_payload);
  std::promise<void> loaded, replaced;
  std::shared_future<void> replaced_future = replaced.get_future().share();
  std::thread reader([&] {
    bool first = true;
    stm::atomically([&](stm::Transaction& tx) {
      const auto* read = static_cast<const Payload*>(cell.load(tx));
      if (!first) return;  // the rerun after the writer's commit: nothing more to check
      first = false;
      { const stm::SnapshotPin pin; }
      loaded.set_value();
      replaced_future.wait();
      EXPECT_EQ(0, read->value);  // still alive under the transaction's pin
    });
  });
  loaded.get_future().wait();
  store(cell, 1);
  stm::reclaim();
  EXPECT_EQ(2, live.load());
  replaced.set_value();
  reader.join();
  stm::reclaim();
  EXPECT_EQ(1, live.load());
  cell.unsafe_reset(nullptr);
  EXPECT_EQ(0, live.load());
}
