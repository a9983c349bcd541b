#include "reactor/ready_queue.hpp"

#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "reactor/detail/reactor_impl.hpp"
#include "stm/stm.hpp"

namespace tmr::reactor {

namespace detail {

class ReadyQueueState : public std::enable_shared_from_this<ReadyQueueState> {
 public:
  ReadyQueueState(std::shared_ptr<StrandImpl> strand, ReadyQueue::RunFn run,
                  ReadyQueue::DropFn drop, void* context)
      : strand_(std::move(strand)), run_(run), drop_(drop), context_(context) {}
  ~ReadyQueueState() {
    if (context_ != nullptr) drop_(context_);
  }
  ReadyQueueState(const ReadyQueueState&) = delete;
  ReadyQueueState& operator=(const ReadyQueueState&) = delete;
  ReadyQueueState(ReadyQueueState&&) = delete;
  ReadyQueueState& operator=(ReadyQueueState&&) = delete;

  void push(void* item) {
    stm::Transaction* tx = stm::current_transaction();
    if (tx == nullptr) {
      push_now(item);
      return;
    }
    // What one transaction pushes is queued together at its commit: one commit and one abort
    // hook per transaction and queue, not per item (a callback that schedules several calls, as
    // a future's set_result does, paid two std::functions and three lock round trips each).
    OpenBatch& open = t_open_batch;
    if (open.queue == this && open.tx == tx) {
      open.items->push_back(item);
      return;
    }
    std::vector<void*>* items = take_spare_batch();
    items->push_back(item);
    // Exactly one of the two hooks runs (also for a run-once transaction's body hooks), on the
    // transaction's thread, and closes the batch there. They hold plain pointers, which
    // std::function keeps without an allocation; the state is kept alive by keepalive_ while
    // any such hook is pending.
    {
      const std::lock_guard lock(mu_);
      if (hooks_++ == 0) keepalive_ = shared_from_this();
    }
    tx->on_commit([this, items] {
      close_open_batch(items);
      push_now(*items);
      give_back_batch(items);
      hook_done();
    });
    tx->on_abort([this, items] {
      close_open_batch(items);
      for (void* dropped : *items) drop_(dropped);
      give_back_batch(items);
      hook_done();
    });
    open = OpenBatch{this, tx, items};
  }

  bool push_if_scheduled(void* item) {
    const std::lock_guard lock(mu_);
    if (!scheduled_ || closed_) return false;
    items_.push_back(item);
    return true;
  }

  bool idle() {
    const std::lock_guard lock(mu_);
    return !scheduled_;
  }

  void close() noexcept {
    std::vector<void*> left;
    {
      const std::lock_guard lock(mu_);
      closed_ = true;
      left.swap(items_);
    }
    for (void* item : left) drop_(item);
  }

 private:
  void push_now(void* item) { push_now(std::span<void* const>(&item, 1)); }

  // Queues the items in order (drops them once the queue is closed) and schedules a drain if
  // none is.
  void push_now(std::span<void* const> items) {
    bool schedule_now = false;
    bool queued = false;
    {
      const std::lock_guard lock(mu_);
      if (!closed_) {
        items_.insert(items_.end(), items.begin(), items.end());
        schedule_now = !scheduled_;
        scheduled_ = true;
        queued = true;
      }
    }
    if (!queued) {
      for (void* item : items) drop_(item);
      return;
    }
    if (schedule_now) schedule();
  }

  // The batch a transaction of this thread is filling (push), until its hook runs.
  struct OpenBatch {
    const ReadyQueueState* queue = nullptr;
    const stm::Transaction* tx = nullptr;
    std::vector<void*>* items = nullptr;
  };
  static thread_local OpenBatch t_open_batch;

  static void close_open_batch(const std::vector<void*>* items) noexcept {
    if (t_open_batch.items == items) t_open_batch = OpenBatch{};
  }

  // A thread's batches are reused: a transaction that pushes one call (a chain of callbacks)
  // costs no allocation, as when each item had hooks of its own.
  static thread_local std::vector<std::unique_ptr<std::vector<void*>>> t_spare_batches;
  static constexpr std::size_t kLargestSpareBatch = 1024;

  static std::vector<void*>* take_spare_batch() {
    if (t_spare_batches.empty()) return new std::vector<void*>();
    std::vector<void*>* items = t_spare_batches.back().release();
    t_spare_batches.pop_back();
    return items;
  }

  static void give_back_batch(std::vector<void*>* items) noexcept {
    std::unique_ptr<std::vector<void*>> owned(items);
    if (owned->capacity() > kLargestSpareBatch) return;  // a burst's memory is not kept
    owned->clear();
    try {
      t_spare_batches.push_back(std::move(owned));
    } catch (...) {  // no memory to keep it: it is freed
    }
  }

  void hook_done() noexcept {
    std::shared_ptr<ReadyQueueState> last;  // released after the lock, maybe the last reference
    const std::lock_guard lock(mu_);
    if (--hooks_ == 0) last = std::move(keepalive_);
  }

  // schedule hands drain to Asio and returns; drain calls schedule for the next batch, never
  // the other way round on the stack. misc-no-recursion counts the lambda given to Asio as a
  // call and sees a cycle.
  // NOLINTBEGIN(misc-no-recursion)
  void schedule() {
    asio::post(strand_->exec, [self = shared_from_this()] { self->drain(); });
  }

  // On the strand: runs the batch queued when it starts, each item as an event of its own.
  void drain() noexcept {
    {
      const std::lock_guard lock(mu_);
      running_.swap(items_);
    }
    ReactorImpl& reactor = strand_->reactor;
    std::size_t done = 0;
    for (; done < running_.size(); ++done) {
      // A callback stopped the reactor: the rest waits for the next run(), as after the
      // stock loop's stop() the handles not run yet stay ready.
      if (reactor.context.stopped() && !reactor.shutting_down()) break;
      void* item = running_[done];
      reactor.run_event(strand_, EventKind::posted,
                        [this, &item](stm::Transaction& tx) { run_(context_, item, tx); });
      if (item != nullptr) drop_(item);  // not run (shutting down) or not taken over (failed)
    }
    bool again = false;
    std::vector<void*> dropped;
    {
      const std::lock_guard lock(mu_);
      if (done < running_.size()) {
        if (closed_) {
          dropped.assign(running_.begin() + static_cast<std::ptrdiff_t>(done), running_.end());
        } else {
          items_.insert(items_.begin(), running_.begin() + static_cast<std::ptrdiff_t>(done),
                        running_.end());
        }
      }
      running_.clear();
      again = !items_.empty();
      scheduled_ = again;
    }
    for (void* item : dropped) drop_(item);
    if (again) {
      try {
        schedule();
      } catch (...) {  // no memory for the handler: the items wait for the next push
        const std::lock_guard lock(mu_);
        scheduled_ = false;
      }
    }
  }
  // NOLINTEND(misc-no-recursion)

  const std::shared_ptr<StrandImpl> strand_;
  const ReadyQueue::RunFn run_;
  const ReadyQueue::DropFn drop_;
  void* const context_;
  std::mutex mu_;
  std::vector<void*> items_;                    // guarded by mu_: the next batch
  bool scheduled_ = false;                      // guarded by mu_: a drain is posted or running
  bool closed_ = false;                         // guarded by mu_: the ReadyQueue is gone
  unsigned hooks_ = 0;                          // guarded by mu_: commit/abort hook pairs pending
  std::shared_ptr<ReadyQueueState> keepalive_;  // guarded by mu_: set while hooks_ > 0
  std::vector<void*> running_;                  // strand-only: the batch being run
};

thread_local ReadyQueueState::OpenBatch ReadyQueueState::t_open_batch;
thread_local std::vector<std::unique_ptr<std::vector<void*>>> ReadyQueueState::t_spare_batches;

}  // namespace detail

ReadyQueue::ReadyQueue(Reactor& reactor, const Strand& strand, RunFn run, DropFn drop,
                       void* context) {
  if (!strand) throw std::invalid_argument("ReadyQueue: empty strand");
  if (&strand.impl()->reactor != &reactor.impl()) {
    throw std::invalid_argument("ReadyQueue: the strand belongs to another reactor");
  }
  state_ = std::make_shared<detail::ReadyQueueState>(strand.impl(), run, drop, context);
}

ReadyQueue::~ReadyQueue() {
  state_->close();
}

void ReadyQueue::push(void* item) {
  state_->push(item);
}

bool ReadyQueue::idle() const {
  return state_->idle();
}

bool ReadyQueue::push_if_scheduled(void* item) {
  return stm::current_transaction() == nullptr && state_->push_if_scheduled(item);
}

}  // namespace tmr::reactor
