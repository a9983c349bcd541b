#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "stm/stm.hpp"
#include "test_util.hpp"

namespace stm = tmr::stm;

namespace {

std::atomic<long> live{0};

struct Payload {
  static constexpr long kMagic = 0x5eed5eed;
  long magic = kMagic;
  long value;
  explicit Payload(long v) : value(v) { live.fetch_add(1); }
  Payload(const Payload&) = delete;
  Payload& operator=(const Payload&) = delete;
  ~Payload() {
    magic = 0;
    live.fetch_sub(1);
  }
};

void release_payload(void* p) {
  delete static_cast<Payload*>(p);
}

}  // namespace

// Payloads are replaced and released while other attempts may still hold them: readers
// dereference what they loaded, so an early release is a use-after-free that ASan reports (and a
// wrong magic here). At the end every replaced payload has been released exactly once.
TEST(Reclamation, ReplacedPayloadsReleasedOnlyWhenUnreachable) {
  live = 0;
  {
    stm::Cell cell(new Payload(0), &release_payload, "payload");
    std::atomic<bool> stop{false};
    std::atomic<long> bad{0};
    const int writes = scaled(20000);
    std::thread writer([&] {
      for (int i = 1; i <= writes; ++i)
        stm::atomically([&](stm::Transaction& tx) { cell.store(tx, new Payload(i)); });
      stop = true;
    });
    std::vector<std::thread> readers;
    readers.reserve(2);
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&] {
        while (!stop) {
          stm::atomically([&](stm::Transaction& tx) {
            auto* p = static_cast<Payload*>(cell.load(tx));
            for (int k = 0; k < 50; ++k)
              if (p->magic != Payload::kMagic) bad.fetch_add(1);
          });
        }
      });
    }
    writer.join();
    for (auto& r : readers) r.join();
    stm::reclaim();  // also collects what exited threads retired
    EXPECT_EQ(0, bad.load());
    EXPECT_EQ(1, live.load());
    EXPECT_EQ(writes, static_cast<Payload*>(cell.unsafe_peek())->value);
  }
  EXPECT_EQ(0, live.load());
}

// Payloads stored by aborted attempts, or overwritten within one attempt, are released too.
TEST(Reclamation, DraftsOfAbortedAttemptsAreReleased) {
  live = 0;
  {
    stm::Cell cell(new Payload(0), &release_payload);
    int attempts = 0;
    stm::atomically([&](stm::Transaction& tx) {
      cell.store(tx, new Payload(1));
      cell.store(tx, new Payload(2));
      if (++attempts < 3) tx.abort();
    });
    stm::reclaim();
    EXPECT_EQ(1, live.load());
    EXPECT_EQ(2, static_cast<Payload*>(cell.unsafe_peek())->value);
  }
  EXPECT_EQ(0, live.load());
}

// Privatization: a transaction unlinks a node; after quiesce() the unlinking thread may use and
// free it non-transactionally while concurrent (possibly doomed) readers had loaded the pointer.
TEST(Reclamation, PrivatizationAfterQuiesce) {
  struct Node {
    stm::TVar<long> a{0}, b{0};
  };
  stm::TVar<Node*> head(new Node);
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::vector<std::thread> readers;
  readers.reserve(2);
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      while (!stop) {
        stm::atomically([&](stm::Transaction& tx) {
          Node* n = head.load(tx);
          if (n != nullptr && n->a.load(tx) != n->b.load(tx)) bad.fetch_add(1);
        });
      }
    });
  }
  const int rounds = scaled(3000);
  for (int i = 0; i < rounds; ++i) {
    Node* mine = stm::atomically([&](stm::Transaction& tx) {
      Node* n = head.load(tx);
      head.store(tx, nullptr);
      return n;
    });
    stm::quiesce();
    // Private now: non-transactional writes break a == b, which no reader may observe.
    mine->a.cell().unsafe_reset(reinterpret_cast<void*>(1));
    delete mine;
    auto* fresh = new Node;
    head.store(fresh);
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(0, bad.load());
  delete head.unsafe_peek();
}

// A store hands the cell one reference, also when the payload is the one the cell already holds
// (Python code stores the object a variable holds all the time): each such store must give one
// reference back, or every one of them leaks.
TEST(Reclamation, StoringTheHeldPayloadReleasesTheExtraReference) {
  struct Counted {
    int references = 1;
  };
  static Counted counted;
  counted.references = 1;  // the cell's
  auto release = [](void* p) { --static_cast<Counted*>(p)->references; };
  {
    stm::Cell cell(&counted, release);
    for (int i = 0; i < 5; ++i) {
      ++counted.references;  // the reference store() takes over
      stm::atomically([&](stm::Transaction& tx) { cell.store(tx, &counted); });
    }
    stm::quiesce();
    stm::reclaim();
    EXPECT_EQ(1, counted.references);
  }
  EXPECT_EQ(0, counted.references);  // the cell released its own at destruction
}
