// The race reporter: reports unmanaged shared state (module globals, class attributes, dicts the
// user names) that reactor callbacks of two different strands mutate without protection.
//
// CPython 3.12+ dict watchers call us before every mutation of a watched dict, on the mutating
// thread. We remember, per watched dict and key, the last mutation: its strand, whether its
// transaction was inevitable, and a short traceback. A mutation from another strand, where not
// both were inevitable (the single inevitable token serialises those), is a race: the report keeps
// both tracebacks. The rules of what is watched live in tm/_race.py; docs/MANAGED_STATE.md "Race
// reports" is the user's description.
//
// Class attributes: a class's attributes live in its type dict, which the watcher sees like any
// other dict, before the change and with the attribute's name. A type watcher
// (PyType_AddWatcher) would fire after the change, without the name, and CPython may fold
// several changes into one call, so it is not used.
//
// Locking: the registry is one mutex. It is never held across a call into the CPython API that
// could allocate or run Python code (tracebacks are taken outside it), because such a call can
// mutate a watched dict and re-enter the watcher on this thread.

#include <Python.h>
#include <frameobject.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "reactor/strand.hpp"
#include "stm/stm.hpp"

namespace py = pybind11;

namespace tmr::bindings {

#if PY_VERSION_HEX >= 0x030C0000
#define TM_HAVE_DICT_WATCHERS 1
#endif

namespace {

#ifdef TM_HAVE_DICT_WATCHERS

constexpr int kTraceFrames = 5;            // frames kept per traceback (innermost ones)
constexpr std::size_t kMaxReports = 1000;  // a bound on memory when a program races everywhere

struct Mutation {
  std::uint64_t strand = 0;
  bool inevitable = false;
  std::vector<std::string> traceback;  // "file:line function", outermost first
};

enum class Kind { module, cls, dict };

struct Watched {
  Kind kind;
  std::string label;   // "module app", "class app.Chat", "dict users"
  std::string module;  // Kind::module: its name, to recognise the classes defined in it
  std::unordered_map<std::string, Mutation> by_key;
};

struct Report {
  std::string object, key, event;
  Mutation earlier, later;
};

std::mutex g_mu;
std::unordered_map<PyObject*, Watched> g_watched;  // by dict; erased when the dict is freed
std::vector<Report> g_reports;
std::set<std::tuple<std::string, std::string, std::string, std::string>> g_reported;
std::atomic<bool> g_on{false};
int g_watcher = -1;
std::atomic<PyObject*> g_sys_modules{nullptr};  // watched while on: modules imported later
PyObject* g_module_hook = nullptr;  // tm._race._module_added(name, module); strong, kept

const char* event_name(PyDict_WatchEvent e) {
  switch (e) {
    case PyDict_EVENT_ADDED:
      return "added";
    case PyDict_EVENT_MODIFIED:
      return "modified";
    case PyDict_EVENT_DELETED:
      return "deleted";
    case PyDict_EVENT_CLONED:
      return "replaced";
    case PyDict_EVENT_CLEARED:
      return "cleared";
    default:
      return "deallocated";
  }
}

// The key as a report names it. Only str and int keys are told apart without running Python
// code (a watcher must not); other keys share one name per type, which can only add reports.
std::string key_name(PyObject* key) {
  if (key == nullptr) return "*";  // clear() and update-from-dict: every key
  if (PyUnicode_CheckExact(key)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(key, &n);
    if (s != nullptr) return std::string(s, static_cast<std::size_t>(n));
    PyErr_Clear();
    return "<str>";
  }
  if (PyLong_CheckExact(key)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (!overflow && !(v == -1 && PyErr_Occurred())) return std::to_string(v);
    PyErr_Clear();
  }
  return std::string("<") + Py_TYPE(key)->tp_name + " key>";
}

std::string frame_summary(PyFrameObject* frame) {
  PyCodeObject* code = PyFrame_GetCode(frame);
  const char* file = PyUnicode_AsUTF8(code->co_filename);
  const char* name = PyUnicode_AsUTF8(code->co_qualname);
  if (file == nullptr || name == nullptr) PyErr_Clear();
  std::string s = std::string(file ? file : "?") + ":" +
                  std::to_string(PyFrame_GetLineNumber(frame)) + " " + (name ? name : "?");
  Py_DECREF(code);
  return s;
}

// The innermost frames of this thread, outermost first.
std::vector<std::string> traceback() {
  std::vector<std::string> out;
  PyFrameObject* frame = PyEval_GetFrame();  // borrowed
  Py_XINCREF(frame);
  while (frame != nullptr && static_cast<int>(out.size()) < kTraceFrames) {
    out.push_back(frame_summary(frame));
    PyFrameObject* back = PyFrame_GetBack(frame);  // new reference
    Py_DECREF(frame);
    frame = back;
  }
  Py_XDECREF(frame);
  return {out.rbegin(), out.rend()};
}

// Module-level code (an import running inside a callback) sets up globals once, under the
// import lock, before any other strand can see them: not a race.
bool running_module_body() {
  PyFrameObject* frame = PyEval_GetFrame();
  if (frame == nullptr) return false;
  PyCodeObject* code = PyFrame_GetCode(frame);
  bool body = PyUnicode_CompareWithASCIIString(code->co_name, "<module>") == 0;
  Py_DECREF(code);
  return body;
}

bool inevitable_now() {
  stm::Transaction* tx = stm::current_transaction();
  return tx != nullptr && tx->is_inevitable();
}

void watch_dict(PyObject* dict, Kind kind, std::string label, std::string module) {
  if (PyDict_Watch(g_watcher, dict) < 0) throw py::error_already_set();
  std::lock_guard lock(g_mu);
  g_watched.try_emplace(dict, Watched{kind, std::move(label), std::move(module), {}});
}

// A class bound at the top level of a watched module and defined there: watch its attributes.
void maybe_watch_class(PyObject* module_dict, PyObject* value) {
  if (!PyType_Check(value) ||
      !PyType_HasFeature(reinterpret_cast<PyTypeObject*>(value), Py_TPFLAGS_HEAPTYPE))
    return;
  std::string module;
  {
    std::lock_guard lock(g_mu);
    auto it = g_watched.find(module_dict);
    if (it == g_watched.end() || it->second.kind != Kind::module) return;
    module = it->second.module;
  }
  auto* type = reinterpret_cast<PyTypeObject*>(value);
  PyObject* dict = PyType_GetDict(type);                       // new reference
  PyObject* owner = PyDict_GetItemString(dict, "__module__");  // borrowed, no Python code runs
  if (owner != nullptr && PyUnicode_Check(owner) &&
      PyUnicode_CompareWithASCIIString(owner, module.c_str()) == 0) {
    try {
      watch_dict(dict, Kind::cls, "class " + module + "." + type->tp_name, {});
    } catch (py::error_already_set&) {
      PyErr_Clear();
    }
  }
  Py_DECREF(dict);
}

void module_added(PyObject* name, PyObject* module) {
  if (g_module_hook == nullptr || !PyModule_Check(module)) return;
  PyObject* r = PyObject_CallFunctionObjArgs(g_module_hook, name, module, nullptr);
  if (r == nullptr)
    PyErr_WriteUnraisable(g_module_hook);
  else
    Py_DECREF(r);
}

// Records the mutation; reports it if the last one of this key came from another strand.
void record(PyObject* dict, PyDict_WatchEvent event, PyObject* key, std::uint64_t strand) {
  const bool inevitable = inevitable_now();
  std::string k = key_name(key);
  {
    std::lock_guard lock(g_mu);
    auto it = g_watched.find(dict);
    if (it == g_watched.end()) return;
    auto last = it->second.by_key.find(k);
    // The common case, a strand mutating what it mutated last: nothing new to remember.
    if (last != it->second.by_key.end() && last->second.strand == strand &&
        last->second.inevitable == inevitable)
      return;
  }
  Mutation now{strand, inevitable, traceback()};  // outside the lock: it may allocate
  std::lock_guard lock(g_mu);
  auto it = g_watched.find(dict);
  if (it == g_watched.end()) return;
  Mutation& last = it->second.by_key[k];
  const bool race = last.strand != 0 && last.strand != strand && !(last.inevitable && inevitable);
  if (race && g_reports.size() < kMaxReports) {
    const std::string& a = last.traceback.empty() ? k : last.traceback.back();
    const std::string& b = now.traceback.empty() ? k : now.traceback.back();
    auto site =
        a < b ? std::tuple(it->second.label, k, a, b) : std::tuple(it->second.label, k, b, a);
    if (g_reported.insert(std::move(site)).second)
      g_reports.push_back({it->second.label, k, event_name(event), last, now});
  }
  last = std::move(now);
}

int on_dict_event(PyDict_WatchEvent event, PyObject* dict, PyObject* key, PyObject* new_value) {
  if (event == PyDict_EVENT_DEALLOCATED) {
    std::lock_guard lock(g_mu);
    g_watched.erase(dict);
    return 0;
  }
  if (!g_on.load(std::memory_order_relaxed)) return 0;
  // The watcher may be called with an exception pending (a dict changed during unwinding):
  // keep it for the code that raised it.
  PyObject* pending = PyErr_GetRaisedException();
  if (dict == g_sys_modules.load(std::memory_order_relaxed)) {
    if (event == PyDict_EVENT_ADDED && new_value != nullptr) module_added(key, new_value);
  } else {
    if (new_value != nullptr && (event == PyDict_EVENT_ADDED || event == PyDict_EVENT_MODIFIED))
      maybe_watch_class(dict, new_value);
    const std::uint64_t strand = reactor::current_strand_id();
    if (strand != 0 && !running_module_body()) record(dict, event, key, strand);
  }
  PyErr_SetRaisedException(pending);
  return 0;
}

void enable(py::object module_hook) {
  if (g_watcher < 0) {
    g_watcher = PyDict_AddWatcher(&on_dict_event);
    if (g_watcher < 0) throw py::error_already_set();
  }
  if (g_module_hook == nullptr) g_module_hook = module_hook.release().ptr();  // kept for good
  PyObject* modules = PyImport_GetModuleDict();                               // borrowed
  if (PyDict_Watch(g_watcher, modules) < 0) throw py::error_already_set();
  g_sys_modules = modules;
  g_on.store(true);
}

// Off: nothing is watched any more (an unwatched dict costs nothing), and what was remembered
// of past mutations is dropped; the reports stay until reset().
void disable() {
  g_on.store(false);
  if (g_watcher < 0) return;
  {
    // Under the lock, so that no dict is freed (and erased) between listing and unwatching;
    // PyDict_Unwatch only clears a bit.
    std::lock_guard lock(g_mu);
    for (auto& [d, w] : g_watched)
      if (PyDict_Unwatch(g_watcher, d) < 0) PyErr_Clear();
    g_watched.clear();
  }
  if (PyObject* modules = g_sys_modules.exchange(nullptr))
    if (PyDict_Unwatch(g_watcher, modules) < 0) PyErr_Clear();
}

void watch(py::handle obj, const std::string& label, const std::string& module) {
  if (g_watcher < 0 || !g_on.load()) throw std::runtime_error("the race reporter is off");
  if (PyModule_Check(obj.ptr())) {
    watch_dict(PyModule_GetDict(obj.ptr()), Kind::module, label, module);
  } else if (PyType_Check(obj.ptr())) {
    PyObject* dict = PyType_GetDict(reinterpret_cast<PyTypeObject*>(obj.ptr()));
    try {
      watch_dict(dict, Kind::cls, label, {});
    } catch (...) {
      Py_DECREF(dict);
      throw;
    }
    Py_DECREF(dict);
  } else if (PyDict_Check(obj.ptr())) {
    watch_dict(obj.ptr(), Kind::dict, label, {});
  } else {
    throw py::type_error("watch_races takes a dict, a class or a module");
  }
}

py::dict mutation_dict(const Mutation& m) {
  py::dict d;
  d["strand"] = m.strand;
  d["inevitable"] = m.inevitable;
  d["traceback"] = m.traceback;
  return d;
}

py::list reports() {
  std::vector<Report> copy;
  {
    std::lock_guard lock(g_mu);
    copy = g_reports;
  }
  py::list out;
  for (const Report& r : copy) {
    py::dict d;
    d["object"] = r.object;
    d["key"] = r.key;
    d["event"] = r.event;
    d["earlier"] = mutation_dict(r.earlier);
    d["later"] = mutation_dict(r.later);
    out.append(d);
  }
  return out;
}

void reset() {
  std::lock_guard lock(g_mu);
  g_reports.clear();
  g_reported.clear();
  for (auto& [d, w] : g_watched) w.by_key.clear();
}

#else

[[noreturn]] void unavailable() {
  throw std::runtime_error(
      "the race reporter needs dict watchers (CPython 3.12 or later); this interpreter has none");
}

#endif  // TM_HAVE_DICT_WATCHERS

}  // namespace

void init_race_report(py::module_& m) {
#ifdef TM_HAVE_DICT_WATCHERS
  m.def("_race_available", [] { return true; });
  m.def("_race_enable", &enable, py::arg("module_hook"));
  m.def("_race_disable", &disable);
  m.def("_race_enabled", [] { return g_on.load(); });
  m.def("_race_watch", &watch, py::arg("obj"), py::arg("label"), py::arg("module") = "");
  m.def("_race_reports", &reports);
  m.def("_race_reset", &reset);
#else
  m.def("_race_available", [] { return false; });
  m.def(
      "_race_enable", [](const py::object&) { unavailable(); }, py::arg("module_hook"));
  m.def("_race_disable", [] {});
  m.def("_race_enabled", [] { return false; });
  m.def(
      "_race_watch", [](py::handle, const std::string&, const std::string&) { unavailable(); },
      py::arg("obj"), py::arg("label"), py::arg("module") = "");
  m.def("_race_reports", [] { return py::list(); });
  m.def("_race_reset", [] {});
#endif
}

}  // namespace tmr::bindings
