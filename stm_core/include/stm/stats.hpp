#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "stm/abort_cause.hpp"

namespace tmr::stm {

/// Counters of one thread, or summed over all threads that ever ran transactions.
struct Stats {
  std::uint64_t commits = 0;
  std::uint64_t read_only_commits = 0;
  std::array<std::uint64_t, abort_cause_count> aborts{};  ///< indexed by AbortCause
  std::uint64_t ns_aborted = 0;     ///< wall time spent in attempts that aborted
  std::uint64_t ns_inevitable = 0;  ///< wall time spent holding the inevitable token
  std::uint64_t inevitable_commits = 0;
  std::uint64_t escalations = 0;  ///< attempts run inevitable because of too many aborts

  std::uint64_t total_aborts() const noexcept {
    std::uint64_t n = 0;
    for (auto a : aborts) n += a;
    return n;
  }
  std::uint64_t aborts_of(AbortCause c) const noexcept {
    return aborts[static_cast<std::size_t>(c)];
  }

  /// Field-wise sum (over threads) and difference (one thread's counters over a span).
  Stats& operator+=(const Stats& s) noexcept { return combine(s, std::plus<>{}); }
  Stats& operator-=(const Stats& s) noexcept { return combine(s, std::minus<>{}); }

 private:
  template <class Op>
  Stats& combine(const Stats& s, Op op) noexcept {  // the one list of the fields
    commits = op(commits, s.commits);
    read_only_commits = op(read_only_commits, s.read_only_commits);
    for (std::size_t i = 0; i < aborts.size(); ++i) aborts[i] = op(aborts[i], s.aborts[i]);
    ns_aborted = op(ns_aborted, s.ns_aborted);
    ns_inevitable = op(ns_inevitable, s.ns_inevitable);
    inevitable_commits = op(inevitable_commits, s.inevitable_commits);
    escalations = op(escalations, s.escalations);
    return *this;
  }
};

/// This thread's counters.
Stats thread_stats();
/// Sum over every thread, live or exited.
Stats total_stats();
/// Zeroes every counter and the conflict report (tests and benchmarks; not concurrent-safe with
/// exact accounting, but safe to call while transactions run).
void reset_stats();

/// One conflict site: a cell and the two site tags (the aborted access and the other side).
struct ConflictRecord {
  const void* cell = nullptr;
  std::string cell_name;   ///< Cell::name(), or empty
  std::string site;        ///< the aborted attempt's site tag (Transaction::set_site), or empty
  std::string other_site;  ///< the committer/lock holder's site tag, or empty
  AbortCause cause = AbortCause::read_write;
  std::uint64_t count = 0;
  std::uint64_t ns_lost = 0;
};

/// Conflict sites recorded so far, the most costly (ns_lost) first.
std::vector<ConflictRecord> conflict_report();

/// Returns a pointer to an interned copy of `site` that lives until the process ends: use it to
/// turn a dynamic "file:line" string into a site tag.
const char* intern_site(const std::string& site);

}  // namespace tmr::stm
