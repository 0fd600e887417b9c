// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_THREADING_HPP
#define PEFT_CORE_THREADING_HPP

/// @file threading.hpp
/// Threads are set once, by the caller, through `set_num_threads`; nothing in peft
/// changes the count behind the caller's back.

#include <Eigen/Core>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "../error.hpp"
#include "types.hpp"

#if defined(PEFT_OPENBLAS)
#include <cblas.h>  // OpenBLAS (CMake option PEFT_BLAS) keeps its own thread pool
#endif

namespace peft {

/// Sets the number of threads used by GEMMs (Eigen, or OpenBLAS with PEFT_BLAS) and by
/// peft's parallel loops.
inline void set_num_threads(int n) {
  if (n < 1) throw invalid_argument("set_num_threads: thread count expected >= 1, got " + std::to_string(n));
  Eigen::setNbThreads(n);
#if defined(PEFT_OPENBLAS)
  openblas_set_num_threads(n);
#endif
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

/// Threads peft's parallel loops will use.
inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Runs `f(begin, end)` over row ranges that together cover `[0, rows)`: split across peft's
/// threads when the work (`rows * cols` elements) is large enough to pay for waking them and
/// the caller is not already inside a parallel region, in one call otherwise. For row-wise
/// element operations (activations, LayerNorm) that would otherwise run on one core
/// while the others wait for the next GEMM. Each row is computed by exactly one call, with
/// the same arithmetic however the rows are split.
template <typename F>
void parallel_rows(index rows, index cols, F&& f) {
#if defined(_OPENMP)
  constexpr index min_elements = index(1) << 15;
  const int threads = omp_get_max_threads();
  if (threads > 1 && rows > 1 && rows * cols >= min_elements && !omp_in_parallel()) {
#pragma omp parallel num_threads(threads)
    {
      const index n = omp_get_num_threads(), t = omp_get_thread_num();
      const index begin = rows * t / n, end = rows * (t + 1) / n;
      if (begin < end) f(begin, end);
    }
    return;
  }
#endif
  (void)cols;
  f(index(0), rows);
}

}  // namespace peft

#endif  // PEFT_CORE_THREADING_HPP
