// Inevitability: one token holder at a time; it never aborts, and others keep running.
//
// The holder makes its reads *visible*: before reading a cell it stamps the cell's inev_mark_ with
// its generation (seq_cst), then reads the lock word (seq_cst). A committer locks its write set
// (seq_cst CAS), then reads the live generation and the marks of the cells it locked. By the
// Dekker argument one of them sees the other: either the committer sees the mark and aborts
// (cause inevitable, then blocks until the token is released), or the holder sees the lock and
// waits for the commit to finish before reading the new value. So nothing the holder read can
// change before it commits, and it needs no validation. Transactions that touch other cells, or
// only read what the holder reads or writes, are unaffected.

#include <stdexcept>
#include <thread>

#include "stm/detail/cpu.hpp"
#include "stm/transaction.hpp"

namespace tmr::stm {

void Transaction::become_inevitable() {
  using detail::g;
  if (inevitable_) return;
  if (!active_) throw std::logic_error("tmr::stm::become_inevitable outside an attempt");
  const std::uint64_t gen = g.inev_counter.fetch_add(1, std::memory_order_relaxed) + 1;
  for (;;) {
    std::uint64_t cur = 0;
    if (g.inev_gen.compare_exchange_strong(cur, gen, std::memory_order_seq_cst)) break;
    g.inev_gen.wait(cur, std::memory_order_acquire);  // futex: no spinning while another holds it
  }
  inev_gen_ = gen;
  inev_start_ns_ = detail::now_ns();
  // Freeze what we read so far, then check that it is still what we saw.
  for (const ReadEntry& e : reads_) e.cell->inev_mark_.store(gen, std::memory_order_seq_cst);
  for (const ReadEntry& e : reads_) {
    std::uint64_t l = 0;
    for (unsigned spins = 0; ((l = e.cell->lock_.load(std::memory_order_seq_cst)) & 1) != 0;)
      ++spins < 64 ? detail::cpu_relax() : std::this_thread::yield();
    if ((l >> 1) != e.version) {
      detail::bump(rec_->stats.ns_inevitable, detail::now_ns() - inev_start_ns_);
      release_inevitable();
      conflict(AbortCause::read_write, e.cell,
               e.cell->writer_site_.load(std::memory_order_relaxed));
    }
  }
  inevitable_ = true;
  inject_countdown_ = -1;  // the inevitable transaction is never chosen for injection
}

void Transaction::release_inevitable() noexcept {
  inevitable_ = false;
  detail::g.inev_gen.store(0, std::memory_order_seq_cst);
  detail::g.inev_gen.notify_all();
}

void* Transaction::load_inevitable(Cell& cell) {
  if (cell.inev_mark_.load(std::memory_order_relaxed) != inev_gen_)
    cell.inev_mark_.store(inev_gen_, std::memory_order_seq_cst);
  for (unsigned spins = 0;;) {
    const std::uint64_t l1 = cell.lock_.load(std::memory_order_seq_cst);
    if (l1 & 1) {  // a commit in progress: it either aborts on our mark or finishes soon
      ++spins < 64 ? detail::cpu_relax() : std::this_thread::yield();
      continue;
    }
    void* v = cell.value_.load(std::memory_order_acquire);
    if (cell.lock_.load(std::memory_order_acquire) != l1) continue;
    reads_.push_back(ReadEntry{&cell, l1 >> 1});  // only for retry()
    return v;
  }
}

}  // namespace tmr::stm
