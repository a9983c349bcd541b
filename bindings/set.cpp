// tm.Set's core over PyMap (unordered: blind adds of different keys never conflict). The Python
// class tm.Set adds the rest of the set protocol.

#include <pybind11/pybind11.h>

#include "gc.hpp"
#include "map.hpp"

namespace tmr::bindings {

namespace {

class Set {
 public:
  Set() : map_(false, "tm.Set") {}

  /// Blind add: in a with-block that is not inevitable yet it is deferred and replayed (it never
  /// forces inevitability); elsewhere a bucket read-modify-write.
  void add(py::handle self, const py::object& key) {
    const Py_hash_t h = hash_of(key.ptr());
    PyRef k = PyRef::borrow(key.ptr());
    transact(this, Access::conflict_free, [&](stm::Transaction& tx) {
      if (must_defer(tx)) {
        PyRef keep = PyRef::borrow(self.ptr());
        tx_state().deferred.emplace_back([keep, k, h, this](stm::Transaction& t) {
          map_.put(t, k.get(), h, PyRef::borrow(Py_None), false);
        });
      } else {
        map_.put(tx, key.ptr(), h, PyRef::borrow(Py_None), false);
      }
    });
  }
  bool contains(const py::object& key) {
    const Py_hash_t h = hash_of(key.ptr());
    bool found = false;
    transact(this, Access::read,
             [&](stm::Transaction& tx) { found = static_cast<bool>(map_.get(tx, key.ptr(), h)); });
    return found;
  }
  bool discard(const py::object& key) {
    const Py_hash_t h = hash_of(key.ptr());
    bool found = false;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      found = static_cast<bool>(map_.erase(tx, key.ptr(), h));
    });
    return found;
  }
  std::int64_t size() {
    std::int64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = map_.size(tx); });
    return n;
  }
  py::list items() {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      py::list l;
      for (const PyMap::Entry* e : map_.entries(tx)) l.append(py::handle(e->key.get()));
      out = std::move(l);
    });
    return out;
  }
  void clear() {
    transact(this, Access::write, [&](stm::Transaction& tx) { map_.clear(tx); });
  }

 private:
  PyMap map_;

 public:
  int gc_traverse(visitproc visit, void* arg) const { return map_.gc_traverse(visit, arg); }
  void gc_clear() { map_.gc_clear(); }
};

}  // namespace

void init_set(py::module_& m) {
  py::class_<Set>(m, "Set", "The core of tm.Set (a transactional hash set).", gc_support<Set>())
      .def(py::init<>())
      .def(
          "add",
          [](const py::object& self, const py::object& k) { self.cast<Set&>().add(self, k); },
          py::arg("item"), "Adds item (blind: never forces inevitability).")
      .def("__contains__", &Set::contains)
      .def("_discard", &Set::discard, py::arg("item"))
      .def("__len__", &Set::size)
      .def("_items", &Set::items)
      .def("clear", &Set::clear, "Removes every item.");
}

}  // namespace tmr::bindings
