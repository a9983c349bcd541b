#pragma once

#include <cstdlib>

// Sanitizer builds run ~10x slower: scale iteration counts so each test stays within seconds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kScale = 3;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr int kScale = 3;
#else
inline constexpr int kScale = 1;
#endif
#else
inline constexpr int kScale = 1;
#endif

/// n iterations in a release build, n / kScale (at least 1) under sanitizers.
inline int scaled(int n) {
  return n / kScale > 0 ? n / kScale : 1;
}
