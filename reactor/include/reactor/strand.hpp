#pragma once

#include <cstdint>
#include <memory>

namespace tmr::reactor {

namespace detail {
struct StrandImpl;
}

/// A strand: callbacks dispatched on one strand run one at a time and in the order they were
/// posted (or, for posts made inside transactions, in commit order). Different strands run in
/// parallel on the worker pool. Every connection, listener, timer and descriptor watcher has one.
/// Copies refer to the same strand. Obtain one from `Reactor::make_strand` or `current_strand`.
class Strand {
 public:
  Strand() noexcept = default;

  /// Unique within the process; 0 for an empty strand.
  std::uint64_t id() const noexcept;
  explicit operator bool() const noexcept { return impl_ != nullptr; }
  /// True while this thread runs a callback of this strand.
  bool running_in_this_thread() const noexcept;

  friend bool operator==(const Strand& a, const Strand& b) noexcept { return a.impl_ == b.impl_; }

  explicit Strand(std::shared_ptr<detail::StrandImpl> impl) noexcept : impl_(std::move(impl)) {}
  const std::shared_ptr<detail::StrandImpl>& impl() const noexcept { return impl_; }

 private:
  std::shared_ptr<detail::StrandImpl> impl_;
};

/// The strand whose callback this thread is running; empty outside reactor callbacks.
Strand current_strand() noexcept;

/// current_strand().id() without copying the strand (no reference count touched): 0 outside
/// reactor callbacks. For diagnostics that ask on every access (the bindings' race reporter).
std::uint64_t current_strand_id() noexcept;

}  // namespace tmr::reactor
