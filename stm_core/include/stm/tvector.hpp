#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "stm/cell.hpp"
#include "stm/transaction.hpp"
#include "stm/tvar.hpp"

namespace tmr::stm {

/// A transactional vector (Python's tm.List): a root cell holds an immutable spine of element
/// cells; the size is a TVar. Writes to different indices do not conflict; push_back conflicts
/// with other push_backs and with readers of the size (as a list's append must). Growth copies the
/// spine (sharing the element cells) and retires the old one.
template <class T>
class TVector {
  using Spine = std::vector<std::shared_ptr<TVar<T>>>;

 public:
  explicit TVector(const char* name = nullptr) : root_(new Spine, &release_spine, name), size_(0) {}

  std::uint64_t size(Transaction& tx) const { return size_.load(tx); }
  T get(Transaction& tx, std::uint64_t i) const {
    check(tx, i);
    return (*spine(tx))[i]->load(tx);
  }
  void set(Transaction& tx, std::uint64_t i, T value) {
    check(tx, i);
    (*spine(tx))[i]->store(tx, std::move(value));
  }
  void push_back(Transaction& tx, T value) {
    const std::uint64_t n = size_.load(tx);
    const Spine* s = spine(tx);
    if (n == s->size()) {
      auto* bigger = new Spine(*s);
      bigger->resize(n == 0 ? 8 : 2 * n);
      for (std::uint64_t i = n; i < bigger->size(); ++i) (*bigger)[i] = std::make_shared<TVar<T>>();
      root_.store(tx, bigger);
      s = bigger;
    }
    (*s)[n]->store(tx, std::move(value));
    size_.store(tx, n + 1);
  }
  T pop_back(Transaction& tx) {
    const std::uint64_t n = size_.load(tx);
    if (n == 0) throw std::out_of_range("tmr::stm::TVector::pop_back on empty vector");
    T v = (*spine(tx))[n - 1]->load(tx);
    size_.store(tx, n - 1);
    return v;
  }

 private:
  static void release_spine(void* p) { delete static_cast<Spine*>(p); }
  const Spine* spine(Transaction& tx) const { return static_cast<const Spine*>(root_.load(tx)); }
  void check(Transaction& tx, std::uint64_t i) const {
    if (i >= size_.load(tx)) throw std::out_of_range("tmr::stm::TVector index out of range");
  }
  mutable Cell root_;  // payload: Spine*, replaced only by growth
  TVar<std::uint64_t> size_;
};

}  // namespace tmr::stm
