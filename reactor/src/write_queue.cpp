#include "reactor/write_queue.hpp"

#include <stdexcept>

namespace tmr::reactor {

void WriteQueue::set_limits(std::size_t high, std::size_t low) {
  if (low > high) throw std::invalid_argument("WriteQueue::set_limits: low water above high");
  high_ = high;
  low_ = low;
}

FlowSignal WriteQueue::push(std::string data) {
  size_ += data.size();
  if (!data.empty()) chunks_.push_back(std::move(data));
  if (!paused_ && size_ > high_) {
    paused_ = true;
    return FlowSignal::pause;
  }
  return FlowSignal::none;
}

void WriteQueue::take_batch(std::vector<std::string>& out, std::size_t max_chunks) {
  while (!chunks_.empty() && max_chunks-- > 0) {
    out.push_back(std::move(chunks_.front()));
    chunks_.pop_front();
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
  size_ = 0;
  if (paused_) {
    paused_ = false;
    return FlowSignal::resume;
  }
  return FlowSignal::none;
}

}  // namespace tmr::reactor
