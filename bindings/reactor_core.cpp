// tm._core.Reactor: the C++ reactor as the Twisted and asyncio adapters see it. Every callable
// handed in runs later as one transaction on a worker thread.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "builtin_calls.hpp"
#include "py_strand.hpp"
#include "py_timer.hpp"
#include "reactor/fd_watcher.hpp"
#include "reactor/reactor.hpp"
#include "reactor/ready_queue.hpp"
#include "reactor_dispatcher.hpp"
#include "reactor_seconds.hpp"
#include "released_gil.hpp"
#include "stm/stm.hpp"

namespace tmr::bindings {

namespace py = pybind11;
using reactor::Clock;

namespace {

// How often the thread blocked in run() wakes to let Python run its signal handlers: Python
// runs them only on the main thread, between bytecodes, never inside our wait.
constexpr auto kSignalCheckInterval = std::chrono::milliseconds(50);
// How often a wait for the callbacks running serves the run() thread's tick meanwhile (seconds).
constexpr double kExclusiveServeInterval = 0.002;

// How many reactors are running callbacks of different strands on several workers now: while
// none does, a callback's transaction is alone, and output it prints need not wait for its commit
// (tm._io).
std::atomic<int> g_parallel_runs{0};

class ParallelRun {
 public:
  explicit ParallelRun(bool parallel) : parallel_(parallel) {
    if (parallel_) g_parallel_runs.fetch_add(1, std::memory_order_relaxed);
  }
  ~ParallelRun() {
    if (parallel_) g_parallel_runs.fetch_sub(1, std::memory_order_relaxed);
  }
  ParallelRun(const ParallelRun&) = delete;
  ParallelRun& operator=(const ParallelRun&) = delete;

 private:
  bool parallel_;
};

class PyReactor {
 public:
  PyReactor(unsigned workers, bool one_strand)
      : dispatcher_(std::make_shared<PythonDispatcher>()),
        reactor_(reactor::ReactorOptions{workers, dispatcher_, {}, one_strand}) {}

  unsigned workers() const { return reactor_.workers(); }
  bool one_strand() const { return reactor_.one_strand(); }

  // With one worker the caller is the worker, so callbacks run on the thread that called run(), as
  // in the stock loops. With more, the workers run on threads of their own while the caller waits,
  // waking every kSignalCheckInterval, or at once after wake_caller(), to run Python's signal
  // handlers and `tick` (work that belongs to the thread that called run(): installing signal
  // handlers, Twisted's calls from other threads).
  void run(const py::object& tick) {
    const ParallelRun parallel(reactor_.workers() > 1 && !reactor_.one_strand());
    if (reactor_.workers() == 1) {
      ReleasedGil release;
      reactor_.run();
      return;
    }
    const LoopThread loop_thread(*dispatcher_);
    bool done = false;  // guarded by caller_mu_
    std::exception_ptr failure;
    std::thread runner([&] {
      try {
        reactor_.run();
      } catch (...) {
        failure = std::current_exception();
      }
      std::lock_guard lock(caller_mu_);
      done = true;
      caller_cv_.notify_all();
    });
    std::optional<py::error_already_set> interrupted;
    for (;;) {
      {
        ReleasedGil release;
        std::unique_lock lock(caller_mu_);
        caller_cv_.wait_for(lock, kSignalCheckInterval, [&] { return done || caller_woken_; });
        caller_woken_ = false;
        if (done) break;
      }
      try {
        const int signalled =
            PyOS_InterruptOccurred() != 0 ? run_sigint_handler_alone(tick) : PyErr_CheckSignals();
        if (signalled != 0) throw py::error_already_set();
        if (!tick.is_none()) tick();
      } catch (py::error_already_set& e) {
        interrupted.emplace(std::move(e));
        reactor_.stop();
        break;
      }
    }
    {
      ReleasedGil release;
      runner.join();
    }
    if (interrupted) throw std::move(*interrupted);
    if (failure) std::rethrow_exception(failure);
  }

  // Python's handlers for a SIGINT that arrived (PyOS_InterruptOccurred took it), run with no
  // callback of this reactor running. asyncio.Runner's handler cancels the main task: Task.cancel()
  // in C on this thread beside a step of that task on a worker had its waiter freed under it
  // (ASan with PYTHONMALLOC=malloc_debug, 2 workers on 3.11). Callbacks that are waiting for this
  // thread's tick are served while the others finish.
  int run_sigint_handler_alone(const py::object& tick) {
    struct Section {
      PyReactor& reactor;
      explicit Section(PyReactor& owner) : reactor(owner) {}
      Section(const Section&) = delete;
      Section& operator=(const Section&) = delete;
      ~Section() {
        try {
          reactor.end_exclusive();
        } catch (const std::exception&) {  // open already: nothing to undo
        }
      }
    };
    begin_exclusive();
    const Section section{*this};
    while (!wait_exclusive(kExclusiveServeInterval)) {
      if (!tick.is_none()) tick();
    }
    PyErr_SetInterruptEx(SIGINT);  // gives back the SIGINT that PyOS_InterruptOccurred took
    return PyErr_CheckSignals();
  }

  // Makes the thread blocked in run() run its tick now rather than at the next interval.
  void wake_caller() {
    {
      std::lock_guard lock(caller_mu_);
      caller_woken_ = true;
    }
    caller_cv_.notify_all();
  }

  void stop() { reactor_.stop(); }
  bool stopped() const { return reactor_.stopped(); }
  void restart() { reactor_.restart(); }
  void close_all() { reactor_.close_all(); }

  reactor::Strand make_strand() { return reactor_.make_strand(); }

  // The reactor's own locks are taken with the GIL released: a worker dropping a callable
  // needs the GIL while it may hold them.
  void post(py::object fn, std::optional<reactor::Strand> strand, bool fresh) {
    auto callback = python_callback_once(std::move(fn));
    if (strand) {
      post_to(*strand, std::move(callback));
      return;
    }
    ReleasedGil release;
    reactor_.post(std::move(callback),
                  fresh ? reactor::StrandChoice::fresh : reactor::StrandChoice::inherit);
  }

  void post_to(const reactor::Strand& strand, reactor::Callback callback) {
    released_outside_transaction([&] { reactor_.post(strand, std::move(callback)); });
  }

  reactor::Timer call_at(double when, py::object fn, const reactor::Strand* strand, bool fresh) {
    auto callback = python_callback(std::move(fn));
    const auto deadline = from_seconds(when);
    const auto choice = fresh ? reactor::StrandChoice::fresh : reactor::StrandChoice::inherit;
    return released_outside_transaction([&] {
      return strand != nullptr ? reactor_.call_at(*strand, deadline, std::move(callback))
                               : reactor_.call_at(deadline, std::move(callback), choice);
    });
  }

  std::shared_ptr<reactor::FdWatcher> watch_fd(int fd,
                                               const std::optional<reactor::Strand>& strand) {
    ReleasedGil release;
    return reactor::watch_fd(reactor_, fd, strand.value_or(reactor::Strand()));
  }

  bool in_worker() const { return reactor::current_reactor() == &reactor_; }

  // A section in which the calling thread runs Python with no callback of this reactor running.
  void begin_exclusive() {
    try {
      dispatcher_->gate().close();
    } catch (const std::logic_error& error) {
      throw std::runtime_error(error.what());
    }
    exclusive_owner_.store(std::this_thread::get_id());
  }
  // Whether this thread is in an exclusive section of this reactor (the run() thread serving its
  // tick while it waits for callbacks to finish before running SIGINT's handlers).
  bool in_exclusive() const { return exclusive_owner_.load() == std::this_thread::get_id(); }
  bool wait_exclusive(double timeout) {
    const auto wait = std::chrono::duration<double>(std::max(timeout, 0.0));
    ReleasedGil release;
    return dispatcher_->gate().wait_empty(
        std::chrono::duration_cast<std::chrono::nanoseconds>(wait));
  }
  void end_exclusive() {
    if (in_exclusive()) exclusive_owner_.store(std::thread::id());
    try {
      dispatcher_->gate().open();
    } catch (const std::logic_error& error) {
      throw std::runtime_error(error.what());
    }
  }

  reactor::Reactor& native() noexcept { return reactor_; }

  void notify_fork(const std::string& event) {
    if (event == "prepare") {
      reactor_.notify_fork(reactor::ForkEvent::prepare);
    } else if (event == "parent") {
      reactor_.notify_fork(reactor::ForkEvent::parent);
    } else if (event == "child") {
      reactor_.notify_fork(reactor::ForkEvent::child);
    } else {
      throw py::value_error("notify_fork takes 'prepare', 'parent' or 'child', not '" + event +
                            "'");
    }
  }

 private:
  // For one run with several workers: they present themselves to Python as the caller's thread.
  class LoopThread {
   public:
    explicit LoopThread(PythonDispatcher& dispatcher) : dispatcher_(dispatcher) {
      dispatcher_.set_loop_thread(py::module_::import("threading").attr("current_thread")());
    }
    ~LoopThread() { dispatcher_.set_loop_thread(py::object()); }
    LoopThread(const LoopThread&) = delete;
    LoopThread& operator=(const LoopThread&) = delete;

   private:
    PythonDispatcher& dispatcher_;
  };

  std::shared_ptr<PythonDispatcher> dispatcher_;
  reactor::Reactor reactor_;
  // The thread blocked in run() (more than one worker) waits on these between ticks.
  std::mutex caller_mu_;
  std::condition_variable caller_cv_;
  bool caller_woken_ = false;                       // guarded by caller_mu_
  std::atomic<std::thread::id> exclusive_owner_{};  // the thread in an exclusive section, if any
};

// Reactor.poster(strand): a builtin function of one argument that posts it to the strand, what
// Reactor.post(fn, strand) does, called without pybind11's dispatch (argument conversion, the
// type lookups of its casters): asyncio's call_soon and the serial loop's other posts go through
// it, one call per callback.
struct Poster {
  py::object owner;  // the tm._core.Reactor: keeps `reactor` alive
  PyReactor* reactor;
  reactor::Strand strand;
};

constexpr const char* kPosterCapsule = "tm._core.Poster";

PyObject* poster_post(PyObject* capsule, PyObject* fn) {
  auto* poster = static_cast<Poster*>(PyCapsule_GetPointer(capsule, kPosterCapsule));
  if (poster == nullptr) return nullptr;
  try {
    poster->reactor->post_to(poster->strand,
                             python_callback_once(py::reinterpret_borrow<py::object>(fn)));
  } catch (py::error_already_set& error) {
    error.restore();
    return nullptr;
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef g_poster_def = {"post", poster_post, METH_O,
                            "post(fn): runs fn() as a transaction on the poster's strand."};

py::object make_poster(py::object owner, const reactor::Strand& strand) {
  if (!strand) throw py::value_error("Reactor.poster: empty strand");
  auto* reactor = &owner.cast<PyReactor&>();
  auto poster = std::make_unique<Poster>(Poster{std::move(owner), reactor, strand});
  auto capsule = py::reinterpret_steal<py::object>(PyCapsule_New(
      poster.get(), kPosterCapsule,
      [](PyObject* o) { delete static_cast<Poster*>(PyCapsule_GetPointer(o, kPosterCapsule)); }));
  if (!capsule) throw py::error_already_set();
  static_cast<void>(poster.release());  // the capsule owns it now
  PyObject* fn = PyCFunction_New(&g_poster_def, capsule.ptr());
  if (fn == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(fn);
}

// Reactor.call_at(when, fn, strand=None, fresh=False), a builtin method: Twisted's callLater and
// asyncio's timers call it once per timer (builtin_calls.hpp), and it returns a plain
// tm._core.Timer (py_timer.hpp).
PyObject* reactor_call_at(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                          PyObject* kwnames) {
  return builtin_call([&]() -> PyObject* {
    static constexpr std::array<const char*, 4> kNames = {"when", "fn", "strand", "fresh"};
    std::array<PyObject*, kNames.size()> given{};
    if (nargs > static_cast<Py_ssize_t>(kNames.size())) {
      throw py::type_error("call_at() takes at most 4 arguments (" + std::to_string(nargs) +
                           " given)");
    }
    std::copy_n(args, nargs, given.begin());
    const Py_ssize_t keywords = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < keywords; ++k) {
      const std::string name = py::str(PyTuple_GET_ITEM(kwnames, k));
      const auto* slot = std::find(kNames.begin(), kNames.end(), name);
      if (slot == kNames.end()) {
        throw py::type_error("call_at() got an unexpected keyword argument '" + name + "'");
      }
      PyObject*& value = given.at(static_cast<std::size_t>(slot - kNames.begin()));
      if (value != nullptr) {
        throw py::type_error("call_at() got multiple values for argument '" + name + "'");
      }
      value = args[nargs + k];
    }
    for (std::size_t slot = 0; slot < 2; ++slot) {
      if (given.at(slot) == nullptr) {
        throw py::type_error(std::string("call_at() missing required argument '") +
                             kNames.at(slot) + "'");
      }
    }
    const double when = PyFloat_AsDouble(given[0]);
    if (when == -1.0 && PyErr_Occurred() != nullptr) throw py::error_already_set();
    const reactor::Strand* strand = nullptr;
    if (given[2] != nullptr && given[2] != Py_None) {
      strand = py_strand_value(given[2]);
      if (strand == nullptr) {
        throw py::type_error(
            std::string("call_at(): strand must be a tm._core.Strand or None, not ") +
            Py_TYPE(given[2])->tp_name);
      }
    }
    const bool fresh = given[3] != nullptr && py::handle(given[3]).cast<bool>();
    auto* reactor = instance_value<PyReactor>(self);
    if (reactor == nullptr) return nullptr;
    return new_py_timer(
        reactor->call_at(when, py::reinterpret_borrow<py::object>(given[1]), strand, fresh));
  });
}

PyMethodDef g_call_at_def = {
    "call_at", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&reactor_call_at)),
    METH_FASTCALL | METH_KEYWORDS,
    "call_at($self, /, when, fn, strand=None, fresh=False)\n--\n\nRuns fn() at `when` "
    "(tm._core.monotonic() seconds); strands as for post()."};

// Reactor.in_worker(), a builtin method: tm_twisted's callLater asks it.
PyObject* reactor_in_worker(PyObject* self, PyObject* /*unused*/) {
  const auto* reactor = instance_value<PyReactor>(self);
  if (reactor == nullptr) return nullptr;
  return PyBool_FromLong(reactor->in_worker() ? 1 : 0);
}

PyMethodDef g_in_worker_def = {"in_worker", &reactor_in_worker, METH_NOARGS,
                               "in_worker($self, /)\n--\n\nTrue on this reactor's worker threads."};

// Reactor.ready_queue(strand): a builtin function of one argument that queues it on the strand's
// ready queue (reactor::ReadyQueue), a serial loop's call_soon: no allocation, no Asio post and
// no GIL release per call, and one Asio handler runs the queued callables one transaction each.
// With a runner, an item runs as runner(item), a vectorcall of one argument: a loop's handles
// need no __call__, which the interpreter would look up on the handle's type at every call.
struct ReadyPoster {
  ReadyPoster(py::object o, PyReactor& reactor, const reactor::Strand& strand, PyObject* runner)
      : owner(std::move(o)),
        queue(reactor.native(), strand, &run_ready_callable, &drop_ready_callable,
              Py_XNewRef(runner)) {}
  py::object owner;  // the tm._core.Reactor: keeps the reactor alive
  reactor::ReadyQueue queue;
};

constexpr const char* kReadyPosterCapsule = "tm._core.ReadyPoster";

PyObject* ready_post(PyObject* capsule, PyObject* fn) {
  auto* poster = static_cast<ReadyPoster*>(PyCapsule_GetPointer(capsule, kReadyPosterCapsule));
  if (poster == nullptr) return nullptr;
  Py_INCREF(fn);  // the queue's reference, dropped after the call or when it will not run
  try {
    if (stm::current_transaction() != nullptr) {
      poster->queue.push(fn);  // at commit; dropped on abort
    } else if (!poster->queue.push_if_scheduled(fn)) {
      // The first of a batch posts the queue's handler to Asio, whose locks are taken with the
      // GIL released (PyReactor::post).
      ReleasedGil release;
      poster->queue.push(fn);
    }
  } catch (const std::exception& error) {
    Py_DECREF(fn);
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

// ready_queue_idle(post): whether no batch of the ready queue behind `post` (a function that
// Reactor.ready_queue made) waits to run.
PyObject* ready_queue_idle(PyObject* /*module*/, PyObject* post) {
  PyObject* capsule = PyCFunction_Check(post) != 0 ? PyCFunction_GetSelf(post) : nullptr;
  if (capsule == nullptr || PyCapsule_IsValid(capsule, kReadyPosterCapsule) == 0) {
    PyErr_SetString(PyExc_TypeError,
                    "ready_queue_idle: expected a function of Reactor.ready_queue");
    return nullptr;
  }
  auto* poster = static_cast<ReadyPoster*>(PyCapsule_GetPointer(capsule, kReadyPosterCapsule));
  return PyBool_FromLong(static_cast<long>(poster->queue.idle()));
}

PyMethodDef g_ready_poster_def = {
    "post", ready_post, METH_O,
    "post(fn): runs fn() as a transaction on the strand's ready queue, in a batch."};

py::object make_ready_poster(py::object owner, const reactor::Strand& strand,
                             const py::object& runner) {
  if (!strand) throw py::value_error("Reactor.ready_queue: empty strand");
  if (!runner.is_none() && PyCallable_Check(runner.ptr()) == 0) {
    throw py::type_error("Reactor.ready_queue: runner must be callable or None");
  }
  auto& reactor = owner.cast<PyReactor&>();
  auto poster = std::make_unique<ReadyPoster>(std::move(owner), reactor, strand,
                                              runner.is_none() ? nullptr : runner.ptr());
  auto capsule = py::reinterpret_steal<py::object>(
      PyCapsule_New(poster.get(), kReadyPosterCapsule, [](PyObject* o) {
        delete static_cast<ReadyPoster*>(PyCapsule_GetPointer(o, kReadyPosterCapsule));
      }));
  if (!capsule) throw py::error_already_set();
  static_cast<void>(poster.release());  // the capsule owns it now
  PyObject* fn = PyCFunction_New(&g_ready_poster_def, capsule.ptr());
  if (fn == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(fn);
}

}  // namespace

// For the other reactor bindings (stream_transport.cpp, py_stream_listener.cpp): the C++ reactor
// of a tm._core.Reactor.
reactor::Reactor& native_reactor(py::handle reactor) {
  if (!py::isinstance<PyReactor>(reactor)) throw py::type_error("expected a tm._core.Reactor");
  return reactor.cast<PyReactor&>().native();
}

void init_reactor(py::module_& m) {
  // monotonic() and current_strand() run several times per event (Twisted's callLater, the
  // per-strand Cooperators): builtins without pybind11's dispatch (builtin_calls.hpp); a Strand is
  // a plain CPython type (py_strand.hpp).
  static PyMethodDef monotonic_def = {
      "monotonic",
      [](PyObject* /*module*/, PyObject* /*unused*/) -> PyObject* {
        return PyFloat_FromDouble(to_seconds(Clock::now()));
      },
      METH_NOARGS,
      "monotonic($module, /)\n--\n\nThe reactor's clock in seconds: monotonic, the clock of "
      "time.monotonic()."};
  add_builtin_function(m, &monotonic_def);

  init_strand_type(m);
  m.def(
      "callbacks_run_in_parallel",
      [] { return g_parallel_runs.load(std::memory_order_relaxed) > 0; },
      "Whether a reactor is running callbacks of different strands on several workers now.");
  static PyMethodDef current_strand_def = {
      "current_strand",
      [](PyObject* /*module*/, PyObject* /*unused*/) -> PyObject* {
        return builtin_call([] {
          reactor::Strand strand = reactor::current_strand();
          if (!strand) Py_RETURN_NONE;
          return new_py_strand(std::move(strand));
        });
      },
      METH_NOARGS,
      "current_strand($module, /)\n--\n\nThe strand of the reactor callback this thread runs, "
      "or None."};
  add_builtin_function(m, &current_strand_def);
  static PyMethodDef ready_queue_idle_def = {
      "ready_queue_idle", ready_queue_idle, METH_O,
      "ready_queue_idle($module, post, /)\n--\n\nWhether no batch of the ready queue behind "
      "post (made by Reactor.ready_queue) waits to run."};
  add_builtin_function(m, &ready_queue_idle_def);

  init_timer_type(m);

  py::class_<reactor::FdWatcher, std::shared_ptr<reactor::FdWatcher>>(
      m, "FdWatcher",
      "Level-triggered readiness callbacks for a descriptor the reactor does not own.")
      .def("add_reader",
           [](reactor::FdWatcher& w, py::object fn) {
             auto callback = python_callback(std::move(fn));
             ReleasedGil release;
             w.add_reader(std::move(callback));
           })
      .def("remove_reader", &reactor::FdWatcher::remove_reader, py::call_guard<ReleasedGil>())
      .def("add_writer",
           [](reactor::FdWatcher& w, py::object fn) {
             auto callback = python_callback(std::move(fn));
             ReleasedGil release;
             w.add_writer(std::move(callback));
           })
      .def("remove_writer", &reactor::FdWatcher::remove_writer, py::call_guard<ReleasedGil>())
      .def_property_readonly("has_reader", &reactor::FdWatcher::has_reader)
      .def_property_readonly("has_writer", &reactor::FdWatcher::has_writer)
      .def("release", &reactor::FdWatcher::release, py::call_guard<ReleasedGil>(),
           "Forgets the descriptor; call before closing it.")
      .def("fileno", &reactor::FdWatcher::native_handle);

  py::class_<PyReactor>(m, "Reactor",
                        "The transactional event reactor: an io_context and a pool of workers, "
                        "each ready event one transaction on its strand.")
      .def(py::init<unsigned, bool>(), py::arg("workers") = 0, py::arg("one_strand") = false,
           "workers=0 means one per core; 1 runs everything serially. one_strand=True makes "
           "every strand the same one: events run one at a time in the order they became ready.")
      .def_property_readonly("workers", &PyReactor::workers)
      .def_property_readonly("one_strand", &PyReactor::one_strand)
      .def("run", &PyReactor::run, py::arg("tick") = py::none(),
           "Runs the workers until stop(). With one worker, callbacks run on the calling thread; "
           "with more, the calling thread runs Python's signal handlers and tick() every 50 ms "
           "and after each wake_caller().")
      .def("wake_caller", &PyReactor::wake_caller, py::call_guard<ReleasedGil>(),
           "With more than one worker: makes the thread blocked in run() call tick() now. "
           "Thread-safe.")
      .def("stop", &PyReactor::stop, py::call_guard<ReleasedGil>())
      .def_property_readonly("stopped", &PyReactor::stopped)
      .def("restart", &PyReactor::restart)
      .def("close_all", &PyReactor::close_all, py::call_guard<ReleasedGil>())
      .def("make_strand", &PyReactor::make_strand)
      .def("post", &PyReactor::post, py::arg("fn"), py::arg("strand") = py::none(),
           py::arg("fresh") = false,
           "Runs fn() as a transaction: on `strand`, else the caller's strand (a new one outside "
           "callbacks, or always a new one with fresh=True). Inside a transaction it is posted "
           "at commit.")
      .def("poster", &make_poster, py::arg("strand"),
           "A function of one argument, fn, that does post(fn, strand): the same post without "
           "the keyword handling of a bound method, for a hot path.")
      .def("ready_queue", &make_ready_poster, py::arg("strand"), py::arg("runner") = py::none(),
           "A function of one argument, fn, that queues fn on the strand's ready queue: fn() "
           "(or runner(fn)) runs as a transaction of its own, in FIFO order with the others "
           "queued there, in batches (those queued while a batch runs form the next one, "
           "behind what the strand got meanwhile). Inside a transaction it queues at commit.")
      .def("watch_fd", &PyReactor::watch_fd, py::arg("fd"), py::arg("strand") = py::none(),
           "A watcher whose callbacks run on `strand` (a new strand when None).")
      .def("notify_fork", &PyReactor::notify_fork, py::arg("event"))
      .def("begin_exclusive", &PyReactor::begin_exclusive,
           "Starts an exclusive section on this thread, outside any callback: callbacks that "
           "arrive from now on wait until end_exclusive(); wait_exclusive() waits for those "
           "running. One thread at a time (RuntimeError otherwise).")
      .def("wait_exclusive", &PyReactor::wait_exclusive, py::arg("timeout"),
           "In an exclusive section: waits up to `timeout` seconds for the callbacks running to "
           "finish; True once none runs.")
      .def("in_exclusive", &PyReactor::in_exclusive,
           "Whether this thread is in an exclusive section (begin_exclusive) of this reactor.")
      .def("end_exclusive", &PyReactor::end_exclusive,
           "Ends the exclusive section this thread began; the callbacks waiting run.");
  add_builtin_method(m.attr("Reactor"), &g_call_at_def);
  add_builtin_method(m.attr("Reactor"), &g_in_worker_def);
}

}  // namespace tmr::bindings
