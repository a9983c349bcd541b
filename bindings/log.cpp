// tm.Log (append-only, conflict-free appends) and tm.Queue (FIFO, conflict-free puts).

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>

#include "gc.hpp"
#include "tx_state.hpp"

namespace tmr::bindings {

namespace {

py::object item_at(const PyRef& r) {
  return py::reinterpret_borrow<py::object>(r.get());
}

/// tp_traverse over a log's committed items (appends still pending in a running transaction are
/// not visited, which only keeps a cycle through them alive until that transaction ends).
int traverse_items(const stm::Log<PyRef>& log, visitproc visit, void* arg) {
  const std::uint64_t n = log.unsafe_size();
  for (std::uint64_t i = 0; i < n; ++i) Py_VISIT(log.unsafe_at(i).get());
  return 0;
}

class Log {
 public:
  void append(py::handle self, py::handle item) {
    PyRef ref = PyRef::borrow(item.ptr());
    transact(this, Access::conflict_free, [&](stm::Transaction& tx) {
      if (must_defer(tx)) {
        PyRef keep = PyRef::borrow(self.ptr());
        tx_state().deferred.push_back(
            [keep, ref, this](stm::Transaction& t) { log_.append(t, ref); });
      } else {
        log_.append(tx, ref);
      }
    });
  }
  std::uint64_t size() {
    std::uint64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = log_.size(tx); });
    return n;
  }
  py::object at(std::int64_t i) {
    py::object out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      const auto n = static_cast<std::int64_t>(log_.size(tx));
      const std::int64_t j = i < 0 ? i + n : i;
      if (j < 0 || j >= n) throw py::index_error("tm.Log index out of range");
      out = item_at(log_.at(tx, static_cast<std::uint64_t>(j)));
    });
    return out;
  }
  py::list items() {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      out = py::list();
      const std::uint64_t n = log_.size(tx);
      for (std::uint64_t i = 0; i < n; ++i) out.append(item_at(log_.at(tx, i)));
    });
    return out;
  }

  /// Cyclic GC (gc.hpp); gc_clear() empties an unreachable log.
  int gc_traverse(visitproc visit, void* arg) const { return traverse_items(log_, visit, arg); }
  void gc_clear() { log_.unsafe_clear(); }

 private:
  stm::Log<PyRef> log_{"tm.Log"};
};

/// A queue item: its own cell (payload: one reference to the item), so that get() can give the
/// reference back through deferred reclamation: it stores null in the cell, and the item is
/// released once no transaction that could still read it is running. The log keeps the emptied
/// cells (a few words each) until the queue goes.
using QueueSlot = std::shared_ptr<stm::Cell>;

class Queue {
 public:
  void put(py::handle self, py::handle item) {
    QueueSlot slot =
        std::make_shared<stm::Cell>(py::reinterpret_borrow<py::object>(item).release().ptr(),
                                    &release_pyobject, "tm.Queue item");
    transact(this, Access::conflict_free, [&](stm::Transaction& tx) {
      if (must_defer(tx)) {
        PyRef keep = PyRef::borrow(self.ptr());
        tx_state().deferred.push_back([keep, slot, this](stm::Transaction& t) { q_.put(t, slot); });
      } else {
        q_.put(tx, slot);
      }
    });
  }
  /// The next item; when empty: blocks (tm.retry) if `block` in a restartable transaction or
  /// outside any, else raises queue.Empty.
  py::object get(bool block) {
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      std::optional<QueueSlot> slot = q_.get(tx);
      if (!slot) {
        if (block && tx_state().mode == Mode::restartable)
          throw stm::AbortSignal{stm::AbortCause::retry};
        PyErr_SetNone(empty_error().ptr());
        throw py::error_already_set();
      }
      // Head and cell are written by the same commits, so a consistent snapshot that has not
      // taken this item yet still finds it in the cell.
      out = py::reinterpret_borrow<py::object>(static_cast<PyObject*>(tx.load(**slot)));
      store_cell(tx, **slot, nullptr);  // taken: released by reclamation after the commit
    });
    return out;
  }
  std::uint64_t size() {
    std::uint64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = q_.size(tx); });
    return n;
  }
  static py::object empty_error() { return py::module_::import("queue").attr("Empty"); }

  /// Cyclic GC (gc.hpp): the committed items not taken yet (a taken item's cell is null);
  /// gc_clear() empties an unreachable queue.
  int gc_traverse(visitproc visit, void* arg) const {
    const stm::Log<QueueSlot>& log = q_.unsafe_log();
    const std::uint64_t n = log.unsafe_size();
    for (std::uint64_t i = 0; i < n; ++i)
      Py_VISIT(static_cast<PyObject*>(log.unsafe_at(i)->unsafe_peek()));
    return 0;
  }
  void gc_clear() { q_.unsafe_clear(); }

 private:
  stm::Queue<QueueSlot> q_{"tm.Queue"};
};

}  // namespace

void init_log(py::module_& m) {
  py::class_<Log>(m, "Log", "An append-only log: append() never conflicts.", gc_support<Log>())
      .def(py::init<>())
      .def(
          "append", [](py::object self, py::object x) { self.cast<Log&>().append(self, x); },
          py::arg("item"), "Appends item (merged at commit, in commit order).")
      .def("__len__", &Log::size)
      .def("_at", &Log::at, py::arg("index"))
      .def("_items", &Log::items, "The items, as a list (one consistent read).");
  py::class_<Queue>(m, "Queue",
                    "A FIFO queue: put() never conflicts; get() conflicts only with getters.",
                    gc_support<Queue>())
      .def(py::init<>())
      .def(
          "put", [](py::object self, py::object x) { self.cast<Queue&>().put(self, x); },
          py::arg("item"), "Appends item (merged at commit).")
      .def("get", &Queue::get, py::arg("block") = true,
           "Removes and returns the oldest item (see the class doc for an empty queue).")
      .def("get_nowait", [](Queue& q) { return q.get(false); })
      .def("qsize", &Queue::size)
      .def("__len__", &Queue::size)
      .def("empty", [](Queue& q) { return q.size() == 0; });
}

}  // namespace tmr::bindings
