// tm.Dict's core over PyMap (insertion-ordered). The Python class tm.Dict adds the rest of the
// mapping protocol on these primitives.

#include <pybind11/pybind11.h>

#include "gc.hpp"
#include "map.hpp"

namespace tmr::bindings {

namespace {

class Dict {
 public:
  Dict() : map_(true, "tm.Dict") {}

  /// The value, or nullptr-like None handle when absent (`found` says which).
  py::object lookup(const py::object& key, bool& found) {
    const Py_hash_t h = hash_of(key.ptr());
    py::object out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      PyRef v = map_.get(tx, key.ptr(), h);
      found = static_cast<bool>(v);
      out = found ? py::reinterpret_borrow<py::object>(v.get()) : py::object();
    });
    return out;
  }
  void set(const py::object& key, const py::object& value) {
    const Py_hash_t h = hash_of(key.ptr());
    PyRef v = PyRef::borrow(value.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) { map_.put(tx, key.ptr(), h, v); });
  }
  py::object pop(const py::object& key, bool& found) {
    const Py_hash_t h = hash_of(key.ptr());
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      PyRef v = map_.erase(tx, key.ptr(), h);
      found = static_cast<bool>(v);
      out = found ? py::reinterpret_borrow<py::object>(v.get()) : py::object();
    });
    return out;
  }
  std::int64_t size() {
    std::int64_t n = 0;
    transact(this, Access::read, [&](stm::Transaction& tx) { n = map_.size(tx); });
    return n;
  }
  /// 0: keys, 1: values, 2: (key, value) tuples; one consistent read, in insertion order.
  py::list items(int what) {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      py::list l;
      for (const PyMap::Entry* e : map_.entries(tx)) {
        if (what == 0) {
          l.append(py::handle(e->key.get()));
        } else if (what == 1) {
          l.append(py::handle(e->value.get()));
        } else {
          l.append(py::make_tuple(py::handle(e->key.get()), py::handle(e->value.get())));
        }
      }
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

void init_dict(py::module_& m) {
  py::class_<Dict>(m, "Dict", "The core of tm.Dict (a transactional, insertion-ordered hash map).",
                   gc_support<Dict>())
      .def(py::init<>())
      .def("__getitem__",
           [](Dict& d, const py::object& k) {
             bool found = false;
             py::object v = d.lookup(k, found);
             if (!found) throw py::key_error(py::repr(k).cast<std::string>());
             return v;
           })
      .def(
          "get",
          [](Dict& d, const py::object& k, const py::object& dflt) {
            bool found = false;
            py::object v = d.lookup(k, found);
            return found ? v : dflt;
          },
          py::arg("key"), py::arg("default") = py::none())
      .def("__contains__",
           [](Dict& d, const py::object& k) {
             bool found = false;
             d.lookup(k, found);
             return found;
           })
      .def("__setitem__", &Dict::set)
      .def("__delitem__",
           [](Dict& d, const py::object& k) {
             bool found = false;
             d.pop(k, found);
             if (!found) throw py::key_error(py::repr(k).cast<std::string>());
           })
      .def("_pop",
           [](Dict& d, const py::object& k) {
             bool found = false;
             py::object v = d.pop(k, found);
             return py::make_tuple(found, found ? v : py::none());
           })
      .def("__len__", &Dict::size)
      .def("_items", &Dict::items, py::arg("what") = 2)
      .def("clear", &Dict::clear, "Removes every item.");
}

}  // namespace tmr::bindings
