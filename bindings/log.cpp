// tm.Log (append-only, conflict-free appends) and tm.Queue (FIFO, queue.Queue's interface,
// conflict-free puts when unbounded).

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>

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
        tx_state().deferred.emplace_back(
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
  explicit Queue(std::int64_t maxsize) : maxsize_(maxsize) {}

  /// Appends item. Unbounded (maxsize <= 0): a conflict-free merge. Bounded: reads the size
  /// first, and when full blocks (tm.retry) as get() does when empty, or raises queue.Full.
  void put(py::handle self, py::handle item, bool block, std::optional<double> timeout) {
    const Deadline deadline = timed_wait_deadline(timeout);
    QueueSlot slot =
        std::make_shared<stm::Cell>(py::reinterpret_borrow<py::object>(item).release().ptr(),
                                    &release_pyobject, "tm.Queue item");
    if (maxsize_ > 0) {
      transact(this, Access::write, [&](stm::Transaction& tx) {
        if (static_cast<std::int64_t>(q_.size(tx)) >= maxsize_)
          wait_or_raise(tx, block, deadline, full_error());
        q_.put(tx, slot);
        unfinished_.add(tx, 1);
      });
      return;
    }
    transact(this, Access::conflict_free, [&](stm::Transaction& tx) {
      if (must_defer(tx)) {
        PyRef keep = PyRef::borrow(self.ptr());
        tx_state().deferred.emplace_back([keep, slot, this](stm::Transaction& t) {
          q_.put(t, slot);
          unfinished_.add(t, 1);
        });
      } else {
        q_.put(tx, slot);
        unfinished_.add(tx, 1);
      }
    });
  }
  /// The next item; when empty: blocks (tm.retry, until the timeout if one is given) if `block`
  /// in a restartable transaction or outside any, else raises queue.Empty.
  py::object get(bool block, std::optional<double> timeout) {
    const Deadline deadline = timed_wait_deadline(timeout);
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      std::optional<QueueSlot> slot = q_.get(tx);
      if (!slot) wait_or_raise(tx, block, deadline, empty_error());
      // Head and cell are written by the same commits, so a consistent snapshot that has not
      // taken this item yet still finds it in the cell.
      out = py::reinterpret_borrow<py::object>(static_cast<PyObject*>(tx.load(**slot)));
      store_cell(tx, **slot, nullptr);  // taken: released by reclamation after the commit
    });
    return out;
  }
  /// queue.Queue's task accounting: every put() counts one unfinished task, task_done() ends one.
  void task_done() {
    transact(this, Access::write, [&](stm::Transaction& tx) {
      if (unfinished_.get(tx) <= 0) throw py::value_error("task_done() called too many times");
      unfinished_.add(tx, -1);
    });
  }
  /// Blocks (tm.retry) until every item put has been marked done.
  void join() {
    transact(this, Access::read, [&](stm::Transaction& tx) {
      if (unfinished_.get(tx) > 0) wait_or_raise(tx, true, std::nullopt, py::object());
    });
  }
  std::uint64_t size() {
    std::uint64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = q_.size(tx); });
    return n;
  }
  std::int64_t maxsize() const noexcept { return maxsize_; }
  static py::object empty_error() { return py::module_::import("queue").attr("Empty"); }
  static py::object full_error() { return py::module_::import("queue").attr("Full"); }

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
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  /// The queue cannot proceed: wait for a change of what this attempt read (a restartable
  /// transaction, or none, with `block`, until `deadline`), else raise `error`. An irrevocable
  /// block cannot wait: it raises `error`, or RuntimeError when there is none (join).
  static void wait_or_raise(stm::Transaction& tx, bool block, Deadline deadline,
                            const py::object& error) {
    if (block && tx_state().mode == Mode::restartable) {
      if (!deadline || std::chrono::steady_clock::now() < *deadline) retry_waiting(tx, deadline);
    } else if (!error) {
      throw std::runtime_error("tm.Queue.join() cannot wait inside a with tm.atomic() block");
    }
    PyErr_SetNone(error.ptr());
    throw py::error_already_set();
  }

  stm::Queue<QueueSlot> q_{"tm.Queue"};
  stm::Counter unfinished_{0, "tm.Queue unfinished tasks"};
  const std::int64_t maxsize_;
};

}  // namespace

void init_log(py::module_& m) {
  py::class_<Log>(m, "Log", "An append-only log: append() never conflicts.", gc_support<Log>())
      .def(py::init<>())
      .def(
          "append",
          [](const py::object& self, const py::object& x) { self.cast<Log&>().append(self, x); },
          py::arg("item"), "Appends item (merged at commit, in commit order).")
      .def("__len__", &Log::size)
      .def("_at", &Log::at, py::arg("index"))
      .def("_items", &Log::items, "The items, as a list (one consistent read).");
  py::class_<Queue>(m, "Queue",
                    "A FIFO queue (queue.Queue's interface): put() never conflicts when the queue "
                    "is unbounded; get() conflicts only with getters.",
                    gc_support<Queue>())
      .def(py::init<std::int64_t>(), py::arg("maxsize") = 0)
      .def(
          "put",
          [](const py::object& self, const py::object& x, bool block,
             std::optional<double> timeout) { self.cast<Queue&>().put(self, x, block, timeout); },
          py::arg("item"), py::arg("block") = true, py::arg("timeout") = py::none(),
          "Appends item (merged at commit); a full bounded queue blocks or raises queue.Full.")
      .def("get", &Queue::get, py::arg("block") = true, py::arg("timeout") = py::none(),
           "Removes and returns the oldest item (see the class doc for an empty queue).")
      .def("get_nowait", [](Queue& q) { return q.get(false, std::nullopt); })
      .def("task_done", &Queue::task_done, "Marks one task of an item got earlier as done.")
      .def("join", &Queue::join, "Blocks until every item put has been marked done.")
      .def("qsize", &Queue::size)
      .def("__len__", &Queue::size)
      .def("empty", [](Queue& q) { return q.size() == 0; })
      .def("full",
           [](Queue& q) {
             return q.maxsize() > 0 && static_cast<std::int64_t>(q.size()) >= q.maxsize();
           })
      .def_property_readonly("maxsize", &Queue::maxsize);
}

}  // namespace tmr::bindings
