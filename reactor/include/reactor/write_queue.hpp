#pragma once

#include <cstddef>
#include <vector>

#include "reactor/write_chunk.hpp"

namespace tmr::reactor {

/// Default flow-control limits (asyncio's defaults: 64 KiB high, a quarter of it low).
inline constexpr std::size_t kDefaultHighWater = std::size_t{64} * 1024;
inline constexpr std::size_t kDefaultLowWater = std::size_t{16} * 1024;

/// What the producer of a write queue must be told after a change.
enum class FlowSignal { none, pause, resume };

/// The bytes committed for sending on one transport and not yet written to the kernel, with
/// the flow-control state that goes with them. Not thread-safe: the transport guards it with
/// its own mutex. Chunks are kept in commit order and handed to the socket in batches.
///
/// The pause/resume hysteresis follows Twisted producers and asyncio's write buffer limits:
/// `pause` once the buffered size rises above `high`, then `resume` once it drops to `low` or
/// below. Each signal is given once per crossing.
class WriteQueue {
 public:
  /// Throws std::invalid_argument when low > high.
  void set_limits(std::size_t high, std::size_t low);
  std::size_t high_water() const noexcept { return high_; }
  std::size_t low_water() const noexcept { return low_; }

  /// Appends `data` (committed bytes). Returns `pause` when this crossed the high water mark.
  FlowSignal push(WriteChunk data);

  /// Moves up to `max_chunks` queued chunks into `out` (the next batch to send); they stay
  /// counted in `size()` until `consumed`.
  void take_batch(std::vector<WriteChunk>& out, std::size_t max_chunks = 64);

  /// Records that `n` bytes of the taken batches reached the kernel. Returns `resume` when this
  /// brought the buffered size to the low water mark or below after a pause.
  FlowSignal consumed(std::size_t n);

  /// The producer was paused by its owner (for bytes not pushed yet): from now on the queue
  /// counts as paused, so that `consumed` gives `resume` at the low water mark. Returns false,
  /// changing nothing, when the size is at the low water mark already.
  bool hold_paused();

  /// Drops everything queued (an abort). Returns `resume` if the producer was paused.
  FlowSignal clear();

  /// Bytes committed and not yet written: queued plus taken-but-not-consumed.
  std::size_t size() const noexcept { return size_; }
  /// True when no chunk waits to be taken.
  bool idle() const noexcept { return head_ == chunks_.size(); }
  bool paused() const noexcept { return paused_; }

 private:
  // Chunks not yet taken: chunks_[head_...]. A vector with a head index rather than a
  // std::deque, which allocates about 600 bytes as soon as it is made: an idle connection's
  // queue holds no memory. Taking everything resets it; a long-lived backlog is compacted.
  std::vector<WriteChunk> chunks_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  std::size_t high_ = kDefaultHighWater;
  std::size_t low_ = kDefaultLowWater;
  bool paused_ = false;
};

}  // namespace tmr::reactor
