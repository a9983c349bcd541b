// tm._core statistics: the engine's counters and conflict sites, and the conflict-log switch.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "tx_state.hpp"
#include "worker_spans.hpp"

namespace tmr::bindings {

namespace {

py::dict to_dict(const stm::Stats& s) {
  py::dict d, aborts;
  for (std::size_t i = 0; i < stm::abort_cause_count; ++i)
    aborts[stm::to_string(static_cast<stm::AbortCause>(i))] = s.aborts[i];
  d["commits"] = s.commits;
  d["read_only_commits"] = s.read_only_commits;
  d["inevitable_commits"] = s.inevitable_commits;
  d["escalations"] = s.escalations;
  d["aborts"] = aborts;
  d["total_aborts"] = s.total_aborts();
  d["seconds_aborted"] = static_cast<double>(s.ns_aborted) * 1e-9;
  d["seconds_inevitable"] = static_cast<double>(s.ns_inevitable) * 1e-9;
  return d;
}

py::list conflicts() {
  py::list out;
  for (const stm::ConflictRecord& c : stm::conflict_report()) {
    py::dict d;
    d["cell"] = reinterpret_cast<std::uintptr_t>(c.cell);
    d["cell_name"] = c.cell_name;
    d["site"] = c.site;
    d["other_site"] = c.other_site;
    d["cause"] = stm::to_string(c.cause);
    d["count"] = c.count;
    d["seconds_lost"] = static_cast<double>(c.ns_lost) * 1e-9;
    out.append(d);
  }
  return out;
}

py::list worker_spans() {
  py::list out;
  for (const WorkerSpanRecord& s : reactor_worker_spans()) {
    py::dict d;
    d["name"] = s.name;
    d["thread_id"] = s.thread_id;
    d["start"] = s.start;
    d["end"] = s.end;
    d["stats"] = to_dict(s.stats);
    out.append(d);
  }
  return out;
}

}  // namespace

void init_stats(py::module_& m) {
  m.def(
      "stats",
      [](bool thread) { return to_dict(thread ? stm::thread_stats() : stm::total_stats()); },
      py::arg("thread") = false,
      "Commits, aborts by cause, time lost and time inevitable: summed over every thread, or this "
      "thread's (thread=True).");
  m.def(
      "reset_stats",
      [] {
        stm::reset_stats();
        reset_inevitability_sites();
        reset_reactor_worker_spans();
      },
      "Zeroes every counter, the conflict sites, the inevitability sites and the reactor "
      "workers' spans.");
  m.def("reactor_worker_spans", &worker_spans,
        "Each reactor worker thread's span while the conflict log was on: name, thread_id, "
        "start, end (time.monotonic() seconds) and the stats it added.");
  m.def("conflicts", &conflicts, "Conflict sites, the costliest first.");
  m.def(
      "set_conflict_log", [](bool on) { g_conflict_log.store(on, std::memory_order_relaxed); },
      py::arg("on"), "Tags accesses with their Python file:line (costs a frame lookup each).");
  m.def(
      "conflict_log_enabled", [] { return g_conflict_log.load(std::memory_order_relaxed); },
      "Whether accesses are tagged with their Python file:line.");
}

}  // namespace tmr::bindings
