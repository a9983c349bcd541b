// tm.Counter: a commutative 64-bit counter; add() is merged at commit and never conflicts.

#include <pybind11/operators.h>
#include <pybind11/pybind11.h>

#include "tx_state.hpp"

namespace tmr::bindings {

namespace {

class Counter {
 public:
  explicit Counter(std::int64_t initial) : c_(initial, "tm.Counter") {}

  void add(py::handle self, std::int64_t delta) {
    transact(this, Access::conflict_free, [&](stm::Transaction& tx) {
      if (must_defer(tx)) {
        PyRef keep = PyRef::borrow(self.ptr());  // the deferred op keeps the counter alive
        tx_state().deferred.emplace_back(
            [keep, delta, this](stm::Transaction& t) { c_.add(t, delta); });
      } else {
        c_.add(tx, delta);
      }
    });
  }
  std::int64_t get() {
    std::int64_t out = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      if (tx_state().snapshot > 0) {
        out = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(
            tx.apply_own_merges(c_.cell(), c_.cell().unsafe_peek())));
      } else {
        out = c_.get(tx);
      }
    });
    return out;
  }

 private:
  stm::Counter c_;
};

}  // namespace

void init_counter(py::module_& m) {
  py::class_<Counter>(m, "Counter",
                      "A commutative 64-bit counter: add() never conflicts and never forces "
                      "inevitability; reading the value is an ordinary transactional read.")
      .def(py::init<std::int64_t>(), py::arg("initial") = 0)
      .def(
          "add", [](const py::object& self, std::int64_t d) { self.cast<Counter&>().add(self, d); },
          py::arg("delta") = 1, "Adds delta (merged at commit).")
      .def("get", &Counter::get, "The value.")
      .def_property_readonly("value", &Counter::get, "The value.")
      .def("__int__", &Counter::get)
      .def("__index__", &Counter::get)
      .def("__iadd__",
           [](py::object self, std::int64_t d) {
             self.cast<Counter&>().add(self, d);
             return self;
           })
      .def("__isub__",
           [](py::object self, std::int64_t d) {
             self.cast<Counter&>().add(self, -d);
             return self;
           })
      .def("__repr__", [](Counter& c) { return "tm.Counter(" + std::to_string(c.get()) + ")"; })
      .def("__reduce__", [](const py::object& self) {
        return py::make_tuple(self.get_type(), py::make_tuple(self.cast<Counter&>().get()));
      });
}

}  // namespace tmr::bindings
