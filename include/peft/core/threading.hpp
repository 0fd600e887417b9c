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

}  // namespace peft

#endif  // PEFT_CORE_THREADING_HPP
