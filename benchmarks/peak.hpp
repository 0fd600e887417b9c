// SPDX-License-Identifier: Apache-2.0
// The machine's own limit, measured in the benchmark's process (bench_peft --mode peak): the
// FP32 and bf16 multiply-add peak of its vector units, every thread busy, as a roofline probe
// measures it, so that compare_torch can report every row as a share of it.
//
// The kernel is register-blocked: kChains independent accumulators, each one fused
// multiply-add per iteration, more chains than the FMA latency times the FMA ports, so the
// units never wait on a result; its operands never leave the registers. FP32 uses AVX-512
// FMA where the CPU has it, else AVX2 FMA. bf16 takes the faster of AVX512_BF16's dot product
// (vdpbf16ps: 32 bf16 products into 16 float sums) and, where the CPU and kernel allow it,
// AMX's tile product (tdpbf16ps: a 16 x 32 by 32 x 16 bf16 product into a 16 x 16 float tile,
// four independent output tiles), which is what oneDNN's bf16 GEMMs use on such a CPU.
#ifndef PEFT_BENCHMARKS_PEAK_HPP
#define PEFT_BENCHMARKS_PEAK_HPP

#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace bench {

inline constexpr int kChains = 16;  // accumulators per thread (AVX-512: 32 registers)

/// A measured peak (2 FLOPs per multiply-add).
struct peak_result {
  double gflops = 0;  ///< all threads together
  std::string isa;    ///< "avx512", "avx2", "avx512_bf16" or "" when the CPU has none
};

/// The sum of @p v's lanes (stored and added: GCC 12 warns falsely inside _mm512_reduce_add_ps).
__attribute__((target("avx512f"))) inline float lane_sum(__m512 v) {
  alignas(64) float out[16];
  _mm512_store_ps(out, v);
  float t = 0;
  for (float x : out) t += x;
  return t;
}

__attribute__((target("avx512f"))) inline float fp32_avx512(long iterations, float seed) {
  __m512 acc[kChains];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(seed * 1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed + float(c));
  for (long i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return lane_sum(s);  // used, so the loop is not removed
}

__attribute__((target("avx2,fma"))) inline float fp32_avx2(long iterations, float seed) {
  __m256 acc[kChains];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(seed * 1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(seed + float(c));
  for (long i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

__attribute__((target("avx512f,avx512bf16"))) inline float bf16_avx512(long iterations, float seed) {
  __m512 acc[kChains];
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(seed * 1e-7f), _mm512_set1_ps(1e-7f));
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed + float(c));
  for (long i = 0; i < iterations; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return lane_sum(s);
}

/// AMX's tile register layout (the palette 1 configuration `ldtilecfg` reads).
struct tile_config {
  std::uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

/// Asks Linux (5.16 and later) for the AMX tile state; false when the kernel refuses.
inline bool amx_permitted() {
  constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
  return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
}

__attribute__((target("amx-tile,amx-bf16"))) inline float bf16_amx(long iterations, float seed) {
  tile_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;  // 16 floats, or 32 bf16
  }
  _tile_loadconfig(&cfg);
  alignas(64) std::uint16_t a[16 * 32], b[16 * 32];
  alignas(64) float c[16 * 16];
  for (int k = 0; k < 16 * 32; ++k) {
    a[k] = 0x3f00;                                       // 0.5
    b[k] = static_cast<std::uint16_t>(0x3380 + (k & 7));  // about 6e-8: the sums stay small
  }
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, b, 64);
  _tile_loadd(7, b, 64);
  for (long i = 0; i < iterations; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0] + seed;
}

/// Runs @p kernel on @p threads OpenMP threads at once for about @p seconds, `repeats` times,
/// and returns the best rate in GFLOP/s; @p flops_per_iteration is one thread's.
template <typename Kernel>
double best_rate(Kernel kernel, double flops_per_iteration, int threads, double seconds = 0.3, int repeats = 5) {
  // Iterations for `seconds`, from a short calibration run on one thread.
  long iterations = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile float sink = kernel(iterations, 1.0f);
    (void)sink;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > 0.02) {
      iterations = std::max(1L, long(double(iterations) * seconds / dt));
      break;
    }
    iterations *= 4;
  }
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += kernel(iterations, 1.0f + float(omp_get_thread_num()));
#else
    for (int t = 0; t < threads; ++t) total += kernel(iterations, 1.0f + float(t));  // one core: no peak
#endif
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    volatile float sink = total;
    (void)sink;
    best = std::max(best, flops_per_iteration * double(iterations) * threads / dt / 1e9);
  }
  return best;
}

/// The FP32 multiply-add peak of @p threads threads (AVX-512, else AVX2).
inline peak_result fp32_peak(int threads) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {best_rate(fp32_avx512, kChains * 16 * 2.0, threads), "avx512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {best_rate(fp32_avx2, kChains * 8 * 2.0, threads), "avx2"};
  return {};
}

/// The bf16 multiply-add peak: the faster of AVX512_BF16 and AMX where the CPU has them, or 0.
inline peak_result bf16_peak(int threads) {
  __builtin_cpu_init();
  peak_result best;
  if (__builtin_cpu_supports("avx512bf16")) best = {best_rate(bf16_avx512, kChains * 32 * 2.0, threads), "avx512_bf16"};
  // GCC 12's __builtin_cpu_supports does not know AMX: /proc/cpuinfo says whether it is there.
  bool amx = false;
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[8192];
    while (!amx && std::fgets(line, sizeof line, f)) amx = std::strstr(line, " amx_bf16") != nullptr;
    std::fclose(f);
  }
  if (amx && amx_permitted()) {
    const double g = best_rate(bf16_amx, 4 * 16 * 16 * 32 * 2.0, threads);  // 4 tile products a step
    if (g > best.gflops) best = {g, "amx_bf16"};
  }
  return best;
}

}  // namespace bench

#endif  // PEFT_BENCHMARKS_PEAK_HPP
