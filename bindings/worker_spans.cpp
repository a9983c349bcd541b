#include "worker_spans.hpp"

#include <Python.h>

#include <atomic>
#include <chrono>
#include <mutex>

#include "tx_state.hpp"

namespace tmr::bindings {

struct WorkerSpanScope::Span {
  std::mutex mutex;  // the owner thread updates, the Python thread writing the log reads
  WorkerSpanRecord record;
  stm::Stats before;  // this thread's counters when the span started
  stm::Stats latest;  // and after its last event
  std::uint64_t generation = 0;
};

namespace {

std::mutex g_spans_mutex;
std::vector<std::shared_ptr<WorkerSpanScope::Span>> g_spans;  // guarded by g_spans_mutex
std::atomic<std::uint64_t> g_generation{1};                   // bumped by a reset
std::atomic<std::uint32_t> g_next_worker{0};

double monotonic_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// This thread's span of the current generation, started now if there is none.
std::shared_ptr<WorkerSpanScope::Span> this_thread_span() {
  thread_local std::shared_ptr<WorkerSpanScope::Span> span;
  const std::uint64_t generation = g_generation.load(std::memory_order_acquire);
  if (span && span->generation == generation) return span;
  auto fresh = std::make_shared<WorkerSpanScope::Span>();
  fresh->generation = generation;
  fresh->record.name =
      "reactor worker " + std::to_string(g_next_worker.fetch_add(1, std::memory_order_relaxed));
  fresh->record.thread_id = PyThread_get_thread_ident();
  fresh->record.start = fresh->record.end = monotonic_seconds();
  fresh->before = fresh->latest = stm::thread_stats();
  {
    std::lock_guard<std::mutex> lock(g_spans_mutex);
    g_spans.push_back(fresh);
  }
  span = fresh;
  return span;
}

}  // namespace

WorkerSpanScope::WorkerSpanScope() {
  if (g_conflict_log.load(std::memory_order_relaxed)) span_ = this_thread_span();
}

WorkerSpanScope::~WorkerSpanScope() {
  if (!span_) return;
  const stm::Stats now = stm::thread_stats();
  const double end = monotonic_seconds();
  std::lock_guard<std::mutex> lock(span_->mutex);
  span_->latest = now;
  span_->record.end = end;
}

std::vector<WorkerSpanRecord> reactor_worker_spans() {
  std::vector<std::shared_ptr<WorkerSpanScope::Span>> spans;
  {
    std::lock_guard<std::mutex> lock(g_spans_mutex);
    spans = g_spans;
  }
  std::vector<WorkerSpanRecord> out;
  out.reserve(spans.size());
  for (const auto& s : spans) {
    std::lock_guard<std::mutex> lock(s->mutex);
    out.push_back(s->record);
    out.back().stats = s->latest;
    out.back().stats -= s->before;
  }
  return out;
}

void reset_reactor_worker_spans() {
  std::lock_guard<std::mutex> lock(g_spans_mutex);
  g_generation.fetch_add(1, std::memory_order_acq_rel);
  g_spans.clear();
  g_next_worker.store(0, std::memory_order_relaxed);
}

}  // namespace tmr::bindings
