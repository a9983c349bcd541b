// tm._core's transaction functions: run, the atomic block, inevitable, retry, snapshot, hooks,
// test modes, reclamation, the audit hook that makes unqueued I/O inevitable.

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "builtin_calls.hpp"
#include "tx_state.hpp"

namespace tmr::bindings {

void begin_block();
bool end_block(bool ok);

namespace {

stm::Transaction& require_tx(const char* what) {
  stm::Transaction* tx = stm::current_transaction();
  if (tx == nullptr) throw std::runtime_error(std::string(what) + " needs a running transaction");
  return *tx;
}

void inevitable() {
  stm::Transaction* tx = stm::current_transaction();
  if (tx == nullptr) return;  // outside a transaction everything is already irrevocable
  TxState& st = tx_state();
  if (st.doomed) throw stm::AbortSignal{st.doomed_cause};
  make_inevitable(*tx, "explicit");
}

void retry() {
  stm::Transaction& tx = require_tx("tm.retry()");
  TxState& st = tx_state();
  if (st.mode == Mode::irrevocable) {
    throw std::runtime_error(
        "tm.retry() needs a restartable transaction (tm.atomic(fn)), not a with-block");
  }
  retry_waiting(tx);
}

std::function<void()> python_hook(PyRef fn) {
  auto h = std::make_shared<PyRef>(std::move(fn));
  return [h] {
    Attach a;
    PyObject* r = PyObject_CallNoArgs(h->get());
    if (r == nullptr) PyErr_WriteUnraisable(h->get());  // the commit already happened
    Py_XDECREF(r);
  };
}

void on_commit(py::object fn) {
  stm::Transaction* tx = enter_access(Access::conflict_free);
  if (tx == nullptr) {
    fn();
    return;
  }
  // An irrevocable body's hooks outlive its replayed attempts (stm::commit_once): no deferral.
  tx->on_commit(python_hook(PyRef::borrow(fn.ptr())));
}

void on_abort(py::object fn) {
  stm::Transaction* tx = enter_access(Access::conflict_free);
  if (tx == nullptr) return;
  tx->on_abort(python_hook(PyRef::borrow(fn.ptr())));
}

const char* mode_name() {
  if (stm::current_transaction() == nullptr) return nullptr;
  return tx_state().mode == Mode::irrevocable ? "irrevocable" : "restartable";
}

// ---- automatic inevitability for unqueued I/O ------------------------------------------------

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

bool is_io_event(const char* e) {
  if (std::strcmp(e, "open") == 0) return true;
  static const char* const prefixes[] = {
      "socket.",     "subprocess.", "os.system",   "os.exec",      "os.spawn",   "os.posix_spawn",
      "os.fork",     "os.kill",     "os.remove",   "os.rename",    "os.mkdir",   "os.rmdir",
      "os.truncate", "os.chmod",    "os.chown",    "os.utime",     "os.symlink", "os.link",
      "os.listdir",  "os.scandir",  "os.putenv",   "os.unsetenv",  "shutil.",    "time.sleep",
      "select.",     "mmap.",       "urllib.",     "http.client.", "ftplib.",    "smtplib.",
      "poplib.",     "imaplib.",    "nntplib.",    "telnetlib.",   "sqlite3.",   "fcntl.",
      "pty.",        "ctypes.",     "webbrowser.", "signal.",      "resource.",  "syslog.",
      "glob.",       "tempfile.",   "os.walk",     "os.fwalk",     "pathlib.",   "os.add_dll"};
  return std::ranges::any_of(prefixes, [&](const char* p) { return starts_with(e, p); });
}

int audit_hook(const char* event, PyObject*, void*) {
  stm::Transaction* tx = stm::current_transaction();
  if (tx == nullptr || tx->is_inevitable() || !is_io_event(event)) return 0;
  try {
    make_inevitable(*tx, "io", event);
  } catch (const stm::AbortSignal& s) {
    raise_abort(s.cause);
    return -1;
  }
  return 0;
}

bool g_audit_installed = false;  // guarded by the import lock (set once from tm/__init__)

void install_audit_hook() {
  if (g_audit_installed) return;
  if (PySys_AddAuditHook(&audit_hook, nullptr) < 0) throw py::error_already_set();
  g_audit_installed = true;
}

}  // namespace

void init_transaction(py::module_& m) {
  m.def(
      "run",
      [](const py::object& fn, const py::tuple& args, const py::object& kwargs, bool irrevocable) {
        return run_python_transaction(fn, args, kwargs,
                                      irrevocable ? Mode::irrevocable : Mode::restartable);
      },
      py::arg("fn"), py::arg("args"), py::arg("kwargs"), py::arg("irrevocable") = false,
      "Runs fn(*args, **kwargs) as one transaction (restartable unless irrevocable).");
  m.def("_begin_block", &begin_block, "Starts a `with tm.atomic():` block (irrevocable).");
  m.def("_end_block", &end_block, py::arg("ok"),
        "Commits (ok) or abandons the block; False when it was nested.");
  // in_transaction() and on_commit(fn) run several times per event (twisted.web's writes,
  // tm's output streams): builtins without pybind11's dispatch (builtin_calls.hpp).
  static PyMethodDef in_transaction_def = {
      "in_transaction",
      [](PyObject* /*module*/, PyObject* /*unused*/) -> PyObject* {
        return PyBool_FromLong(stm::current_transaction() != nullptr ? 1 : 0);
      },
      METH_NOARGS, "in_transaction($module, /)\n--\n\nTrue inside a transaction."};
  add_builtin_function(m, &in_transaction_def);
  m.def(
      "is_inevitable",
      [] {
        stm::Transaction* tx = stm::current_transaction();
        return tx != nullptr && tx->is_inevitable();
      },
      "True if the running transaction is inevitable.");
  m.def("mode", &mode_name, "'restartable', 'irrevocable' or None outside a transaction.");
  m.def("inevitable", &inevitable,
        "Makes the running transaction inevitable: it will not abort and commits next.");
  m.def("retry", &retry,
        "Aborts the restartable transaction and reruns it once a value it read has changed.");
  m.def(
      "_snapshot_enter", [] { ++tx_state().snapshot; }, "Starts snapshot (unvalidated) reads.");
  m.def(
      "_snapshot_exit", [] { --tx_state().snapshot; }, "Ends snapshot reads.");
  static PyMethodDef on_commit_def = {
      "on_commit",
      [](PyObject* /*module*/, PyObject* fn) -> PyObject* {
        return builtin_call([fn] {
          on_commit(py::reinterpret_borrow<py::object>(fn));
          return py::none().release().ptr();
        });
      },
      METH_O,
      "on_commit($module, fn, /)\n--\n\nCalls fn() after the running transaction commits, in "
      "commit order (now if none runs)."};
  add_builtin_function(m, &on_commit_def);
  m.def("on_abort", &on_abort, py::arg("fn"),
        "Calls fn() if the running attempt aborts or is abandoned.");
  m.def(
      "set_abort_injection",
      [](double p, std::uint64_t seed) { stm::set_abort_injection(p, seed); },
      py::arg("probability"), py::arg("seed") = 0,
      "Test mode: aborts that fraction of non-inevitable attempts at random points (a reactor "
      "callback's, or a with-block's, at its commit).");
  m.def(
      "set_schedule_noise", [](double p, std::uint64_t seed) { stm::set_schedule_noise(p, seed); },
      py::arg("probability"), py::arg("seed") = 0,
      "Test mode: pauses that fraction of commits at random (a yield or a short sleep).");
  m.def(
      "set_escalation_threshold", [](std::uint32_t n) { stm::set_escalation_threshold(n); },
      py::arg("aborts"), "Consecutive aborts after which a transaction reruns inevitable.");
  m.def(
      "escalation_threshold", [] { return stm::escalation_threshold(); },
      "Consecutive aborts after which a transaction reruns inevitable.");
  m.def(
      "reclaim",
      [] {
        stm::reclaim();
        drain_pending();
      },
      "Releases this thread's replaced values that no running transaction can still read.");
  m.def(
      "quiesce",
      [] {
        if (stm::current_transaction() != nullptr)
          throw std::runtime_error("tm.quiesce() inside a transaction");
        {
          Detach d;
          stm::quiesce();
        }
        stm::reclaim();
        drain_pending();
      },
      "Waits until every running transaction has ended, then reclaims.");
  m.def(
      "inevitability_sites",
      [] {
        py::list out;
        for (const InevitabilitySite& s : inevitability_sites()) {
          py::dict d;
          d["site"] = s.site;
          d["cause"] = s.cause;
          d["detail"] = s.detail;
          d["count"] = s.count;
          d["seconds_held"] = static_cast<double>(s.ns_held) * 1e-9;
          d["max_seconds_held"] = static_cast<double>(s.ns_max) * 1e-9;
          out.append(d);
        }
        return out;
      },
      "Where transactions became inevitable (conflict log on), the longest total hold first.");
  m.def("_set_internal_prefix", &set_internal_prefix, py::arg("prefix"),
        "Frames of files under prefix (the tm package) are skipped when a site is named.");
  m.def("_install_audit_hook", &install_audit_hook,
        "Installs the audit hook that makes a transaction inevitable before unqueued I/O.");
}

}  // namespace tmr::bindings
