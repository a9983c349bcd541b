// tm.List's core: one cell holding an immutable vector of references (copy-on-write; an
// attempt's own copy is mutated in place). The Python class tm.List adds the rest of the
// sequence protocol on these primitives.

#include <pybind11/pybind11.h>

#include <vector>

#include "gc.hpp"
#include "tx_state.hpp"

namespace tmr::bindings {

namespace {

using Items = std::vector<PyRef>;

void release_items(void* p) {
  delete static_cast<Items*>(p);
}

class List {
 public:
  List() : cell_(new Items, &release_items, "tm.List") {}

  std::int64_t size() {
    std::int64_t n = 0;
    transact(this, Access::read,
             [&](stm::Transaction& tx) { n = static_cast<std::int64_t>(read(tx).size()); });
    return n;
  }
  py::object get(std::int64_t i) {
    py::object out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      const Items& v = read(tx);
      out = py::reinterpret_borrow<py::object>(v[index(i, v.size())].get());
    });
    return out;
  }
  void set(std::int64_t i, const py::object& x) {
    PyRef ref = PyRef::borrow(x.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) {
      Items& v = writable(tx);
      PyRef old = std::move(v[index(i, v.size())]);
      v[index(i, v.size())] = ref;
    });  // `old` dies after the vector is consistent: its __del__ may touch this list
  }
  py::object pop(std::int64_t i) {
    py::object out;
    transact(this, Access::write, [&](stm::Transaction& tx) {
      if (read(tx).empty()) throw py::index_error("pop from empty tm.List");
      Items& v = writable(tx);
      const std::size_t j = index(i, v.size(), "pop index out of range");
      PyRef item = std::move(v[j]);
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(j));
      out = py::reinterpret_borrow<py::object>(item.get());
    });
    return out;
  }
  void del(std::int64_t i) { pop(i); }
  void append(const py::object& x) {
    PyRef ref = PyRef::borrow(x.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) { writable(tx).push_back(ref); });
  }
  void insert(std::int64_t i, const py::object& x) {
    PyRef ref = PyRef::borrow(x.ptr());
    transact(this, Access::write, [&](stm::Transaction& tx) {
      Items& v = writable(tx);
      const auto n = static_cast<std::int64_t>(v.size());
      std::int64_t j = i < 0 ? i + n : i;
      j = j < 0 ? 0 : (j > n ? n : j);
      v.insert(v.begin() + j, ref);
    });
  }
  /// Appends every item of a list (materialized by the caller, so extend(self) is safe).
  void extend(const py::list& xs) {
    std::vector<PyRef> refs;
    refs.reserve(xs.size());
    for (py::handle x : xs) refs.push_back(PyRef::borrow(x.ptr()));
    transact(this, Access::write, [&](stm::Transaction& tx) {
      Items& v = writable(tx);
      v.insert(v.end(), refs.begin(), refs.end());
    });
  }
  py::list items() {
    py::list out;
    transact(this, Access::read, [&](stm::Transaction& tx) {
      const Items& v = read(tx);
      py::list l(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) {
        PyObject* o = v[i].new_ref();
        PyList_SET_ITEM(l.ptr(), static_cast<Py_ssize_t>(i), o);
      }
      out = std::move(l);
    });
    return out;
  }
  /// Replaces the whole content (a blind write).
  void assign(const py::list& xs) {
    transact(this, Access::write, [&](stm::Transaction& tx) {
      auto* v = new Items;
      v->reserve(xs.size());
      for (py::handle x : xs) v->push_back(PyRef::borrow(x.ptr()));
      store_cell(tx, cell_, v);
    });
  }

 private:
  const Items& read(stm::Transaction& tx) {
    return *static_cast<const Items*>(load_cell(tx, cell_));
  }
  // This attempt's private copy, made on first write (later writes mutate it in place).
  Items& writable(stm::Transaction& tx) {
    if (void* own = own_draft(cell_)) return *static_cast<Items*>(own);
    auto* copy = new Items(*static_cast<const Items*>(tx.load(cell_)));
    store_cell(tx, cell_, copy);
    return *copy;
  }
  static std::size_t index(std::int64_t i, std::size_t n,
                           const char* msg = "tm.List index out of range") {
    const std::int64_t j = i < 0 ? i + static_cast<std::int64_t>(n) : i;
    if (j < 0 || j >= static_cast<std::int64_t>(n)) throw py::index_error(msg);
    return static_cast<std::size_t>(j);
  }

  stm::Cell cell_;  // payload: Items*, immutable once committed

 public:
  /// Cyclic GC (gc.hpp): the committed items; gc_clear() empties an unreachable list.
  int gc_traverse(visitproc visit, void* arg) const {
    if (const auto* v = static_cast<const Items*>(cell_.unsafe_peek()))
      for (const PyRef& r : *v) Py_VISIT(r.get());
    return 0;
  }
  void gc_clear() { cell_.unsafe_reset(new Items); }
};

}  // namespace

void init_list(py::module_& m) {
  py::class_<List>(m, "List", "The core of tm.List (one consistent vector, copy-on-write).",
                   gc_support<List>())
      .def(py::init<>())
      .def("__len__", &List::size)
      .def("_get", &List::get, py::arg("index"))
      .def("_set", &List::set, py::arg("index"), py::arg("value"))
      .def("_del", &List::del, py::arg("index"))
      .def("pop", &List::pop, py::arg("index") = -1, "Removes and returns the item at index.")
      .def("append", &List::append, py::arg("item"), "Appends item.")
      .def("insert", &List::insert, py::arg("index"), py::arg("item"), "Inserts item before index.")
      .def("_extend", &List::extend, py::arg("items"))
      .def("_items", &List::items, "The items, as a list (one consistent read).")
      .def("_assign", &List::assign, py::arg("items"), "Replaces every item.");
}

}  // namespace tmr::bindings
