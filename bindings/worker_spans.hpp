#pragma once

// The report's timeline for reactor worker threads. TransactionQueue workers and the user's own
// threads record their spans in Python (tm.worker_span()); the reactor's workers are C++ threads
// that only ever run dispatched events, so the dispatcher records theirs: while the conflict log
// is on, each thread's first and last event and the transaction statistics it added in between.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stm/stm.hpp"

namespace tmr::bindings {

struct WorkerSpanRecord {
  std::string name;
  std::uint64_t thread_id = 0;  // PyThread_get_thread_ident(), as threading.get_ident()
  double start = 0, end = 0;    // time.monotonic() seconds
  stm::Stats stats;             // added during the span
};

/// Brackets one dispatched event on this thread; does nothing while the conflict log is off.
class WorkerSpanScope {
 public:
  WorkerSpanScope();
  ~WorkerSpanScope();
  WorkerSpanScope(const WorkerSpanScope&) = delete;
  WorkerSpanScope& operator=(const WorkerSpanScope&) = delete;

  struct Span;

 private:
  std::shared_ptr<Span> span_;
};

/// The spans recorded since the last reset, one per worker thread, in the order they started.
std::vector<WorkerSpanRecord> reactor_worker_spans();
/// Forgets them (tm.reset_stats(), which also zeroes the counters the spans are measured by).
void reset_reactor_worker_spans();

}  // namespace tmr::bindings
