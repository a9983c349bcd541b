// Process-wide state: thread registry, deferred reclamation, statistics, conflict sites,
// configuration.

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "stm/config.hpp"
#include "stm/detail/conflicts.hpp"
#include "stm/snapshot_pin.hpp"
#include "stm/stats.hpp"
#include "stm/transaction.hpp"

namespace tmr::stm {
namespace detail {

Globals g;

namespace {

std::atomic<ReleaseBatchHook> release_batch_hook{nullptr};

struct Registry {
  std::mutex mu;
  std::vector<ThreadRecord*> all;   // records are never freed: scans need no lock on them
  std::vector<ThreadRecord*> free;  // records of exited threads, reused by new threads
  std::vector<Retired> orphans;     // retired by exited threads, not yet released
  Stats dead;                       // counters of exited threads
  std::uint64_t next_index = 0;
};

Registry& registry() {
  static auto* r = new Registry;  // leaked on purpose: used by thread-exit destructors
  return *r;
}

Stats snapshot(const StatCounters& c) {
  Stats s;
  s.commits = c.commits.load(std::memory_order_relaxed);
  s.read_only_commits = c.read_only_commits.load(std::memory_order_relaxed);
  s.ns_aborted = c.ns_aborted.load(std::memory_order_relaxed);
  s.ns_inevitable = c.ns_inevitable.load(std::memory_order_relaxed);
  s.inevitable_commits = c.inevitable_commits.load(std::memory_order_relaxed);
  s.escalations = c.escalations.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < abort_cause_count; ++i)
    s.aborts[i] = c.aborts[i].load(std::memory_order_relaxed);
  return s;
}

void zero(StatCounters& c) {
  for (auto* a : {&c.commits, &c.read_only_commits, &c.ns_aborted, &c.ns_inevitable,
                  &c.inevitable_commits, &c.escalations})
    a->store(0, std::memory_order_relaxed);
  for (auto& a : c.aborts) a.store(0, std::memory_order_relaxed);
}

std::uint64_t min_active() {
  Registry& r = registry();
  std::vector<ThreadRecord*> recs;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    recs = r.all;
  }
  std::uint64_t m = idle_epoch;
  for (ThreadRecord* rec : recs) m = std::min(m, rec->active_since.load(std::memory_order_seq_cst));
  return m;
}

struct RecordHolder {
  ThreadRecord* rec;
  RecordHolder() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (!r.free.empty()) {
      rec = r.free.back();
      r.free.pop_back();
    } else {
      rec = new ThreadRecord;
      r.all.push_back(rec);
    }
    rec->index = r.next_index++;
  }
  RecordHolder(const RecordHolder&) = delete;
  RecordHolder& operator=(const RecordHolder&) = delete;
  ~RecordHolder() {
    try_reclaim(*rec);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.dead += snapshot(rec->stats);
    zero(rec->stats);
    r.orphans.insert(r.orphans.end(), rec->retired.begin(), rec->retired.end());
    rec->retired.clear();
    rec->active_since.store(idle_epoch, std::memory_order_release);
    r.free.push_back(rec);
  }
};

struct ConflictKey {
  const Cell* cell;
  const char* site;
  const char* other;
  AbortCause cause;
  bool operator<(const ConflictKey& o) const {
    return std::tie(cell, site, other, cause) < std::tie(o.cell, o.site, o.other, o.cause);
  }
};
struct ConflictValue {
  const char* name = nullptr;
  std::uint64_t count = 0, ns = 0;
};
std::mutex conflicts_mu;
std::map<ConflictKey, ConflictValue>& conflicts() {
  static auto* m = new std::map<ConflictKey, ConflictValue>;
  return *m;
}

}  // namespace

ThreadRecord& this_thread_record() {
  thread_local RecordHolder holder;
  return *holder.rec;
}

std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

void try_reclaim(ThreadRecord& rec) {
  if (rec.reclaiming) return;  // a release function ran a transaction that retired more
  rec.reclaiming = true;
  const std::uint64_t safe = min_active();
  std::vector<Retired> ready;
  auto split = [&](std::vector<Retired>& list) {
    auto mid = std::partition(list.begin(), list.end(),
                              [safe](const Retired& r) { return r.stamp > safe; });
    ready.insert(ready.end(), mid, list.end());
    list.erase(mid, list.end());
  };
  split(rec.retired);
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (!r.orphans.empty()) split(r.orphans);
  }
  if (!ready.empty()) {
    const ReleaseBatchHook hook = release_batch_hook.load(std::memory_order_acquire);
    if (hook != nullptr) hook(true);
    for (const Retired& r : ready) r.release(r.payload);
    if (hook != nullptr) hook(false);
  }
  rec.reclaiming = false;
}

void record_conflict(const Cell* cell, const char* site, const char* other_site, AbortCause cause,
                     std::uint64_t ns_lost) {
  std::lock_guard<std::mutex> lock(conflicts_mu);
  ConflictValue& v = conflicts()[ConflictKey{cell, site, other_site, cause}];
  v.name = cell ? cell->name() : nullptr;
  ++v.count;
  v.ns += ns_lost;
}

}  // namespace detail

const char* to_string(AbortCause cause) noexcept {
  switch (cause) {
    case AbortCause::read_write:
      return "read_write";
    case AbortCause::write_write:
      return "write_write";
    case AbortCause::inevitable:
      return "inevitable";
    case AbortCause::explicit_abort:
      return "explicit_abort";
    case AbortCause::injected:
      return "injected";
    case AbortCause::retry:
      return "retry";
  }
  return "unknown";
}

Cell::~Cell() {
  void* v = value_.load(std::memory_order_acquire);
  if (release_ != nullptr && v != nullptr) release_(v);
}

void Cell::unsafe_reset(void* payload) noexcept {
  void* old = value_.exchange(payload, std::memory_order_acq_rel);
  if (release_ != nullptr && old != nullptr && old != payload) release_(old);
}

SnapshotPin::SnapshotPin() noexcept : rec_(&detail::this_thread_record()) {
  if (rec_->active_since.load(std::memory_order_relaxed) != detail::idle_epoch) {
    rec_ = nullptr;
    return;
  }
  // seq_cst, as in begin(): reclaimers scan these slots after their write-back.
  rec_->active_since.store(detail::g.clock.load(std::memory_order_acquire),
                           std::memory_order_seq_cst);
}

SnapshotPin::~SnapshotPin() {
  if (rec_ != nullptr) {
    rec_->active_since.store(detail::idle_epoch, std::memory_order_release);
  }
}

bool reclaim_pending() noexcept {
  return !detail::this_thread_record().retired.empty();
}

void reclaim() {
  if (current_transaction() != nullptr) return;  // never while this thread is inside a transaction
  detail::try_reclaim(detail::this_thread_record());
}

void quiesce() {
  const std::uint64_t v = detail::g.clock.load(std::memory_order_seq_cst);
  detail::Registry& r = detail::registry();
  std::vector<detail::ThreadRecord*> recs;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    recs = r.all;
  }
  const detail::ThreadRecord* self = &detail::this_thread_record();
  for (detail::ThreadRecord* rec : recs) {
    if (rec == self) continue;
    for (unsigned spins = 0; rec->active_since.load(std::memory_order_seq_cst) <= v; ++spins)
      std::this_thread::yield();
  }
}

Stats thread_stats() {
  return detail::snapshot(detail::this_thread_record().stats);
}

Stats total_stats() {
  detail::Registry& r = detail::registry();
  std::lock_guard<std::mutex> lock(r.mu);
  Stats s = r.dead;
  for (detail::ThreadRecord* rec : r.all) s += detail::snapshot(rec->stats);
  return s;
}

void reset_stats() {
  {
    detail::Registry& r = detail::registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.dead = Stats{};
    for (detail::ThreadRecord* rec : r.all) detail::zero(rec->stats);
  }
  std::lock_guard<std::mutex> lock(detail::conflicts_mu);
  detail::conflicts().clear();
}

std::vector<ConflictRecord> conflict_report() {
  std::vector<ConflictRecord> out;
  {
    std::lock_guard<std::mutex> lock(detail::conflicts_mu);
    for (const auto& [k, v] : detail::conflicts()) {
      ConflictRecord c;
      c.cell = k.cell;
      c.cell_name = v.name ? v.name : "";
      c.site = k.site ? k.site : "";
      c.other_site = k.other ? k.other : "";
      c.cause = k.cause;
      c.count = v.count;
      c.ns_lost = v.ns;
      out.push_back(std::move(c));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ConflictRecord& a, const ConflictRecord& b) { return a.ns_lost > b.ns_lost; });
  return out;
}

const char* intern_site(const std::string& site) {
  static std::mutex mu;
  static auto* sites = new std::set<std::string>;
  std::lock_guard<std::mutex> lock(mu);
  return sites->insert(site).first->c_str();
}

void set_escalation_threshold(std::uint32_t aborts) noexcept {
  detail::g.escalation_threshold.store(aborts, std::memory_order_relaxed);
}
std::uint32_t escalation_threshold() noexcept {
  return detail::g.escalation_threshold.load(std::memory_order_relaxed);
}

namespace detail {

std::uint64_t probability_threshold(double probability) noexcept {
  if (probability >= 1.0) {
    return ~0ULL;
  }
  if (probability > 0.0) {
    return static_cast<std::uint64_t>(probability * 18446744073709551616.0);
  }
  return 0;
}

void schedule_noise(std::uint64_t thread_index) noexcept {
  const std::uint64_t threshold = g.noise_threshold.load(std::memory_order_relaxed);
  if (threshold == 0) {
    return;
  }
  thread_local std::uint64_t rng = 0;
  thread_local std::uint64_t generation = ~0ULL;
  const std::uint64_t gen = g.noise_generation.load(std::memory_order_relaxed);
  if (gen != generation) {
    generation = gen;
    std::uint64_t seed = g.noise_seed.load(std::memory_order_relaxed);
    if (seed == 0) {
      seed = now_ns();
    }
    rng = seed ^ (0xd1b54a32d192ed03ULL * (thread_index + 1));
  }
  if (next_random(rng) >= threshold) {
    return;
  }
  const std::uint64_t draw = next_random(rng);
  if ((draw & 1U) != 0) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds((draw >> 1U) % 200));
  }
}

}  // namespace detail

void set_abort_injection(double probability, std::uint64_t seed) {
  detail::g.injection_seed.store(seed, std::memory_order_relaxed);
  detail::g.injection_generation.fetch_add(1, std::memory_order_relaxed);
  detail::g.injection_threshold.store(detail::probability_threshold(probability),
                                      std::memory_order_relaxed);
}

void set_schedule_noise(double probability, std::uint64_t seed) {
  detail::g.noise_seed.store(seed, std::memory_order_relaxed);
  detail::g.noise_generation.fetch_add(1, std::memory_order_relaxed);
  detail::g.noise_threshold.store(detail::probability_threshold(probability),
                                  std::memory_order_relaxed);
}

void set_release_batch_hook(ReleaseBatchHook hook) noexcept {
  detail::release_batch_hook.store(hook, std::memory_order_release);
}

}  // namespace tmr::stm
