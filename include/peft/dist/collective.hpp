// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DIST_COLLECTIVE_HPP
#define PEFT_DIST_COLLECTIVE_HPP

/// @file collective.hpp
/// The collective operations data-parallel training needs, as an interface the trainer can
/// call without knowing the transport. `single_process` is the one-rank case; the MPI
/// implementation is `peft::mpi_collective` in `dist/mpi.hpp`, which alone needs `<mpi.h>`.

#include <cstddef>
#include <cstdint>

namespace peft {

/// Sum-allreduce and broadcast across the ranks of one job. Every rank must make the same
/// calls in the same order with the same sizes.
class collective {
public:
  virtual ~collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Replaces `data[0..n)` on every rank by its sum over the ranks.
  virtual void allreduce_sum(float* data, std::size_t n) = 0;
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  /// Copies `bytes` of `root`'s buffer into every rank's buffer.
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;

  /// Bytes this rank handed to `allreduce_sum` so far (payload, not wire traffic).
  std::uint64_t bytes_reduced() const noexcept { return m_bytes_reduced; }
  /// Calls to `allreduce_sum` so far.
  std::uint64_t allreduce_calls() const noexcept { return m_calls; }

protected:
  void count(std::size_t bytes) noexcept {
    m_bytes_reduced += bytes;
    ++m_calls;
  }

private:
  std::uint64_t m_bytes_reduced = 0;
  std::uint64_t m_calls = 0;
};

/// One rank: the reductions are the identity. A trainer given this runs the data-parallel code
/// path (keyed dropout, sharding arithmetic) on one process, which is the reference N ranks
/// must reproduce.
class single_process final : public collective {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, std::size_t n) override { count(n * sizeof(float)); }
  void allreduce_sum(double*, std::size_t n) override { count(n * sizeof(double)); }
  void broadcast(void*, std::size_t, int) override {}
};

}  // namespace peft

#endif  // PEFT_DIST_COLLECTIVE_HPP
