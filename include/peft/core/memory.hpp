// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_MEMORY_HPP
#define PEFT_CORE_MEMORY_HPP

/// @file memory.hpp
/// Process-wide allocator settings for training and batched inference, applied only when
/// the caller asks (`peft::keep_freed_memory()`); peft never changes them by itself.
///
/// Why: every step allocates the same activation buffers again (tens of MB each at BERT
/// shapes). glibc's malloc serves blocks that large with a fresh `mmap` and returns them
/// to the kernel on `free`, so every step touches new pages and pays a page fault per 4 KiB;
/// on a virtual machine that cost was half of a MiniLM adapter-training step
/// (benchmarks/README.md). Serving every block from the heap (no `mmap` at all) and turning
/// heap trimming off keeps freed blocks for the next step. The price is that the process
/// keeps its peak heap until it exits.

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__)  // GCC
#define PEFT_DETAIL_ASAN 1
#elif defined(__has_feature)       // Clang
#if __has_feature(address_sanitizer)
#define PEFT_DETAIL_ASAN 1
#endif
#endif

namespace peft {

/// True when `keep_freed_memory()` can take effect: the process runs glibc's own malloc.
/// AddressSanitizer replaces malloc and its `mallopt` accepts nothing, so under ASan (and
/// off glibc) the settings are not applied and the call returns false.
#if defined(__GLIBC__) && !defined(PEFT_DETAIL_ASAN)
inline constexpr bool allocator_settings_supported = true;
#else
inline constexpr bool allocator_settings_supported = false;
#endif

/// Keeps freed blocks, however large, in the process heap for reuse instead of returning
/// them to the kernel (glibc's malloc only; elsewhere a no-op). Returns whether the settings
/// took, which is `allocator_settings_supported` unless glibc refuses them.
inline bool keep_freed_memory() {
#if defined(__GLIBC__) && !defined(PEFT_DETAIL_ASAN)
  // No block is served by mmap. Raising the mmap threshold alone is not enough: glibc caps
  // it at 32 MiB, and a BERT-base FFN activation at batch 32 x 128 (50 MB) still went
  // through mmap and page faults every step (318 against 501 tokens/s in benchmarks/scaling).
  // The threshold is raised too, so glibc's dynamic threshold never comes into play.
  const bool mmap_ok = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1;
  // -1: never trim. A finite threshold (an int, so at most 2 GiB) is exceeded by the free
  // space a BERT-base training tape leaves when it is released, and the heap then shrinks.
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, -1) == 1;
  const bool pad_ok = mallopt(M_TOP_PAD, 64 * 1024 * 1024) == 1;
  return mmap_ok && trim_ok && pad_ok;
#else
  return false;
#endif
}

}  // namespace peft

#endif  // PEFT_CORE_MEMORY_HPP
