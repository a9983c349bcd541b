#include "reactor/write_queue.hpp"

#include <stdexcept>

namespace tmr::reactor {

namespace {
// Slots a drained queue keeps for the next burst (a moved-from chunk each).
constexpr std::size_t kKeptCapacity = 16;
}  // namespace

void WriteQueue::set_limits(std::size_t high, std::size_t low) {
  if (low > high) throw std::invalid_argument("WriteQueue::set_limits: low water above high");
  high_ = high;
  low_ = low;
}

FlowSignal WriteQueue::push(WriteChunk data) {
  size_ += data.size();
  if (!data.empty()) chunks_.push_back(std::move(data));
  if (!paused_ && size_ > high_) {
    paused_ = true;
    return FlowSignal::pause;
  }
  return FlowSignal::none;
}

void WriteQueue::take_batch(std::vector<WriteChunk>& out, std::size_t max_chunks) {
  while (head_ < chunks_.size() && max_chunks-- > 0) out.push_back(std::move(chunks_[head_++]));
  if (head_ == chunks_.size()) {
    // Drained: start over at the front, and give back what a burst grew.
    chunks_.clear();
    head_ = 0;
    if (chunks_.capacity() > kKeptCapacity) chunks_.shrink_to_fit();
  } else if (head_ >= kKeptCapacity && head_ * 2 >= chunks_.size()) {
    // A backlog taken a batch at a time: drop the taken half so that the vector stays bounded.
    chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

FlowSignal WriteQueue::consumed(std::size_t n) {
  size_ -= n <= size_ ? n : size_;
  if (paused_ && size_ <= low_) {
    paused_ = false;
    return FlowSignal::resume;
  }
  return FlowSignal::none;
}

bool WriteQueue::hold_paused() {
  if (paused_) return true;
  if (size_ <= low_) return false;
  paused_ = true;
  return true;
}

FlowSignal WriteQueue::clear() {
  chunks_.clear();
  chunks_.shrink_to_fit();
  head_ = 0;
  size_ = 0;
  if (paused_) {
    paused_ = false;
    return FlowSignal::resume;
  }
  return FlowSignal::none;
}

}  // namespace tmr::reactor
