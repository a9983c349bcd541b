#pragma once

namespace tmr::stm::detail {

/// Spin-wait hint: lets the sibling hyper-thread run and saves power while polling a lock word.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace tmr::stm::detail
