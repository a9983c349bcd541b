#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace tmr::reactor {

/// One write's bytes on their way to the socket: a string of the transport's own, or bytes that
/// an owner keeps alive and unchanged (a Python bytes object) until the chunk lets go of it.
/// A borrowed chunk spares a large write its copy; the owner's release (the shared_ptr's deleter)
/// runs wherever the transport drops the chunk, with the transport's lock held, and so must not
/// block.
class WriteChunk {
 public:
  WriteChunk() = default;
  explicit WriteChunk(std::string bytes) : owned_(std::move(bytes)) {}
  WriteChunk(std::shared_ptr<const void> owner, std::string_view bytes)
      : owner_(std::move(owner)), borrowed_(bytes) {}

  std::string_view bytes() const noexcept { return owner_ ? borrowed_ : std::string_view(owned_); }
  const char* data() const noexcept { return bytes().data(); }
  std::size_t size() const noexcept { return bytes().size(); }
  bool empty() const noexcept { return size() == 0; }

  /// Forgets the first `n` bytes (`n` <= size()): what a partial send left to send.
  void drop_front(std::size_t n) {
    if (owner_) {
      borrowed_.remove_prefix(n);
    } else {
      owned_.erase(0, n);
    }
  }

 private:
  std::string owned_;
  std::shared_ptr<const void> owner_;
  std::string_view borrowed_;
};

}  // namespace tmr::reactor
