// Where a transaction's accesses come from and why it became inevitable: the Python file:line
// of a site (the conflict log) and the inevitability sites that tm.report lists.

#include <Python.h>
#include <frameobject.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "tx_state.hpp"

namespace tmr::bindings {

std::atomic<bool> g_conflict_log{false};

namespace {

// The tm package's own directory: its frames (tm.Dict's Python methods, the tm.atomic wrapper,
// TransactionQueue's worker loop) are skipped so that a site names the user's line. Set once at
// import; never freed, so readers need no lock.
std::atomic<const std::string*> g_internal_prefix{nullptr};

// "file:line" of the innermost Python frame outside the tm package (the innermost frame when all
// are inside it), or "" when this thread runs no Python frame.
std::string python_site() {
  PyFrameObject* frame = PyEval_GetFrame();  // borrowed
  Py_XINCREF(frame);
  const std::string* skip = g_internal_prefix.load(std::memory_order_acquire);
  std::string fallback;
  while (frame != nullptr) {
    PyCodeObject* code = PyFrame_GetCode(frame);
    const char* file = PyUnicode_AsUTF8(code->co_filename);
    if (file == nullptr) {
      PyErr_Clear();
    } else {
      std::string site = std::string(file) + ":" + std::to_string(PyFrame_GetLineNumber(frame));
      if (skip == nullptr || std::strncmp(file, skip->c_str(), skip->size()) != 0) {
        Py_DECREF(code);
        Py_DECREF(frame);
        return site;
      }
      if (fallback.empty()) fallback = std::move(site);
    }
    Py_DECREF(code);
    PyFrameObject* back = PyFrame_GetBack(frame);  // new reference
    Py_DECREF(frame);
    frame = back;
  }
  return fallback;
}

// "file:firstline" where fn (a function, a bound method or a partial of one) is defined, or "".
std::string definition_site(PyObject* fn) {
  py::handle f(fn);
  for (int i = 0; i < 3 && f; ++i) {
    if (py::hasattr(f, "__code__")) {
      py::object code = f.attr("__code__");
      auto file = py::str(code.attr("co_filename")).cast<std::string>();
      const std::string* skip = g_internal_prefix.load(std::memory_order_acquire);
      if (skip != nullptr && file.compare(0, skip->size(), *skip) == 0) return {};  // tm's own
      return file + ":" + std::to_string(code.attr("co_firstlineno").cast<long>());
    }
    if (py::hasattr(f, "__func__")) {
      f = f.attr("__func__");
    } else if (py::hasattr(f, "func")) {
      f = f.attr("func");  // functools.partial
    } else {
      break;
    }
  }
  return {};
}

struct SiteTotals {
  std::uint64_t count = 0, ns_held = 0, ns_max = 0;
};
std::mutex g_inev_mu;
std::map<std::tuple<std::string, std::string, std::string>, SiteTotals> g_inev_sites;

}  // namespace

// The transaction has ended (committed or abandoned): the token is released.
void settle_inevitable() noexcept {
  TxState& st = tx_state();
  if (!st.inev_noted) return;
  st.inev_noted = false;
  const auto ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                 std::chrono::steady_clock::now() - st.inev_since)
                                                 .count());
  try {
    std::lock_guard<std::mutex> lock(g_inev_mu);
    SiteTotals& t = g_inev_sites[{std::move(st.inev_site), std::move(st.inev_cause),
                                  std::move(st.inev_detail)}];
    ++t.count;
    t.ns_held += ns;
    t.ns_max = std::max(t.ns_max, ns);
  } catch (...) {  // out of memory: a diagnostic row is lost, the transaction is not
  }
}

void tag_site(stm::Transaction& tx) noexcept {
  std::string site = python_site();
  if (!site.empty()) tx.set_site(stm::intern_site(site));
}

void set_internal_prefix(const std::string& prefix) {
  g_internal_prefix.store(new std::string(prefix), std::memory_order_release);  // kept for good
}

void note_inevitable(const char* cause, const std::string& detail, PyObject* fn) {
  if (!g_conflict_log.load(std::memory_order_relaxed)) return;
  TxState& st = tx_state();
  if (st.inev_noted) return;
  st.inev_since = std::chrono::steady_clock::now();
  std::string site;
  if (fn != nullptr) {
    try {
      site = definition_site(fn);
    } catch (py::error_already_set&) {  // an odd callable: name the running line instead
    }
  }
  if (site.empty()) site = python_site();
  st.inev_site = site.empty() ? "(no Python frame)" : std::move(site);
  st.inev_cause = cause;
  st.inev_detail = detail;
  st.inev_noted = true;
}

std::vector<InevitabilitySite> inevitability_sites() {
  std::vector<InevitabilitySite> out;
  {
    std::lock_guard<std::mutex> lock(g_inev_mu);
    for (const auto& [key, t] : g_inev_sites) {
      out.push_back(
          {std::get<0>(key), std::get<1>(key), std::get<2>(key), t.count, t.ns_held, t.ns_max});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.ns_held, a.count) > std::tie(b.ns_held, b.count);
  });
  return out;
}

void reset_inevitability_sites() {
  std::lock_guard<std::mutex> lock(g_inev_mu);
  g_inev_sites.clear();
}

}  // namespace tmr::bindings
