// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPS_DNNL_GEMM_HPP
#define PEFT_OPS_DNNL_GEMM_HPP

/// @file dnnl_gemm.hpp
/// With PEFT_DNNL (CMake option, Debian `libdnnl-dev`): row-major matrix products through
/// oneDNN's matmul primitive, in float or with bf16 operands and a float result. oneDNN picks
/// its kernel for the CPU it runs on (AVX-512 brgemm here; AVX-512-BF16 or AMX for bf16) and
/// runs it on the same OpenMP threads as the rest of peft. Without PEFT_DNNL this header
/// declares nothing.
///
/// A matmul primitive is built once per shape (sizes, transposes, leading dimensions, data
/// type, accumulate or not) and cached for the life of the process; building one costs far
/// more than running a small product, and the shapes of a training run repeat every step.

#if defined(PEFT_DNNL)

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

namespace peft::ops::detail {

/// Data type of a product's two operands (the result is always float).
enum class gemm_operands { f32, bf16 };

class dnnl_gemm_cache {
public:
  static dnnl_gemm_cache& instance() {
    static dnnl_gemm_cache cache;
    return cache;
  }

  /// `C[m x n] = op(A) op(B) (+ C when accumulate)`, row-major with leading dimensions
  /// lda/ldb/ldc; op(A) is `[m x k]` (stored `[k x m]` when trans_a), op(B) is `[k x n]`
  /// (stored `[n x k]` when trans_b). Returns false when oneDNN has no kernel for it.
  bool run(gemm_operands t, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
           const void* a, std::int64_t lda, const void* b, std::int64_t ldb, bool accumulate, float* c,
           std::int64_t ldc) {
    const key_type key{static_cast<std::int64_t>(t), trans_a, trans_b, m, n, k, lda, ldb, ldc, accumulate};
    const entry* e = nullptr;
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      auto it = m_primitives.find(key);
      if (it == m_primitives.end()) it = m_primitives.emplace(key, build(key)).first;
      e = &it->second;
    }
    if (!e->ok) return false;
    thread_local dnnl::stream stream(m_engine);
    dnnl::memory ma(e->a, m_engine, const_cast<void*>(a));
    dnnl::memory mb(e->b, m_engine, const_cast<void*>(b));
    dnnl::memory mc(e->c, m_engine, c);
    e->primitive.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    stream.wait();
    return true;
  }

private:
  using key_type = std::tuple<std::int64_t, bool, bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                              std::int64_t, std::int64_t, bool>;
  struct entry {
    bool ok = false;
    dnnl::memory::desc a, b, c;
    dnnl::matmul primitive;
  };

  dnnl_gemm_cache() : m_engine(dnnl::engine::kind::cpu, 0) {}

  entry build(const key_type& key) const {
    const auto [t, trans_a, trans_b, m, n, k, lda, ldb, ldc, accumulate] = key;
    using dt = dnnl::memory::data_type;
    const dt operand = t == static_cast<std::int64_t>(gemm_operands::bf16) ? dt::bf16 : dt::f32;
    entry e;
    // Transposes are strides: a row-major [k x m] array read as [m x k] has strides {1, lda}.
    e.a = dnnl::memory::desc({m, k}, operand, trans_a ? dnnl::memory::dims{1, lda} : dnnl::memory::dims{lda, 1});
    e.b = dnnl::memory::desc({k, n}, operand, trans_b ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
    e.c = dnnl::memory::desc({m, n}, dt::f32, dnnl::memory::dims{ldc, 1});
    try {
      dnnl::primitive_attr attr;
      if (accumulate) {
        dnnl::post_ops ops;
        ops.append_sum(1.0f);
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(e.a, e.b, e.c), attr, m_engine);
      e.primitive = dnnl::matmul(pd);
      e.ok = true;
    } catch (const dnnl::error&) {
      e.ok = false;  // no kernel for this combination: the caller computes it another way
    }
    return e;
  }

  dnnl::engine m_engine;
  std::mutex m_mutex;
  std::map<key_type, entry> m_primitives;
};

}  // namespace peft::ops::detail

#endif  // PEFT_DNNL

#endif  // PEFT_OPS_DNNL_GEMM_HPP
