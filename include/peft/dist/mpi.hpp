// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_DIST_MPI_HPP
#define PEFT_DIST_MPI_HPP

/// @file mpi.hpp
/// `peft::collective` over MPI (built with `-DPEFT_MPI=ON`; needs `<mpi.h>` and an MPI
/// library, e.g. Debian's OpenMPI). Every call is non-blocking underneath and polled with a
/// deadline: a rank that died or stalled makes the others throw `peft::dist_error` naming the
/// operation and the wait, instead of hanging forever. The launcher (`mpirun`) then tears the
/// job down; `mpi_session` aborts the whole job when it is left by an exception.

// Only MPI's C API is used; its deprecated C++ bindings do not build cleanly with -Werror.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "../error.hpp"
#include "collective.hpp"

namespace peft {

/// A collective operation failed or did not finish in time.
class dist_error : public error {
public:
  using error::error;
};

/// True when this process was started by an MPI launcher (OpenMPI, MPICH/Hydra, PMIx).
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

/// MPI_Init / MPI_Finalize for the life of the object. Destroyed during stack unwinding (an
/// exception escaped), it calls MPI_Abort so the other ranks stop too: create it outside the
/// `try` whose handler reports errors, and call `abort` from that handler.
class mpi_session {
public:
  mpi_session(int* argc, char*** argv) {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
      int provided = 0;
      if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw dist_error("mpi_session: MPI_Init_thread failed");
      m_owner = true;
    }
    m_exceptions = std::uncaught_exceptions();
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() {
    if (!m_owner) return;
    if (std::uncaught_exceptions() > m_exceptions) {
      MPI_Abort(MPI_COMM_WORLD, 3);
      return;
    }
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
  }
  /// Ends the whole job with @p code (after an error this rank reported).
  [[noreturn]] static void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

private:
  bool m_owner = false;
  int m_exceptions = 0;
};

/// The ranks of `MPI_COMM_WORLD` (or another communicator).
class mpi_collective final : public collective {
public:
  /// @param timeout_seconds  longest wait for one operation before `dist_error`; the
  ///   default is $PEFT_DIST_TIMEOUT or 300 s
  explicit mpi_collective(MPI_Comm comm = MPI_COMM_WORLD, double timeout_seconds = 0) : m_comm(comm) {
    MPI_Comm_rank(m_comm, &m_rank);
    MPI_Comm_size(m_comm, &m_size);
    m_timeout = timeout_seconds > 0 ? timeout_seconds : default_timeout();
  }
  int rank() const override { return m_rank; }
  int size() const override { return m_size; }
  double timeout() const noexcept { return m_timeout; }

  void allreduce_sum(float* data, std::size_t n) override { reduce(data, n, MPI_FLOAT, sizeof(float)); }
  void allreduce_sum(double* data, std::size_t n) override { reduce(data, n, MPI_DOUBLE, sizeof(double)); }
  void broadcast(void* data, std::size_t bytes, int root) override {
    if (bytes > static_cast<std::size_t>(INT32_MAX)) throw dist_error("mpi_collective::broadcast: over 2 GiB");
    MPI_Request req;
    check(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, m_comm, &req), "broadcast");
    wait(req, "broadcast");
  }

  static double default_timeout() {
    if (const char* v = std::getenv("PEFT_DIST_TIMEOUT")) {
      char* end = nullptr;
      const double t = std::strtod(v, &end);
      if (end != v && *end == '\0' && t > 0) return t;
      throw invalid_argument(std::string("mpi_collective: PEFT_DIST_TIMEOUT expected seconds > 0, got '") + v + "'");
    }
    return 300.0;
  }

private:
  void reduce(void* data, std::size_t n, MPI_Datatype type, std::size_t elem) {
    if (n > static_cast<std::size_t>(INT32_MAX)) throw dist_error("mpi_collective::allreduce_sum: over 2^31 values");
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), type, MPI_SUM, m_comm, &req), "allreduce_sum");
    wait(req, "allreduce_sum");
    count(n * elem);
  }
  void check(int rc, const char* op) const {
    if (rc != MPI_SUCCESS)
      throw dist_error("mpi_collective::" + std::string(op) + ": rank " + std::to_string(m_rank) + " of " +
                       std::to_string(m_size) + ": MPI error code " + std::to_string(rc));
  }
  // Polls until done; a peer that never arrives is reported after the deadline.
  void wait(MPI_Request& req, const char* op) const {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    int done = 0;
    for (long polls = 0;; ++polls) {
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), op);
      if (done) return;
      const double waited = std::chrono::duration<double>(clock::now() - start).count();
      if (waited > m_timeout)
        throw dist_error("mpi_collective::" + std::string(op) + ": rank " + std::to_string(m_rank) + " of " +
                         std::to_string(m_size) + " waited " + std::to_string(static_cast<long>(waited)) +
                         " s (timeout " + seconds_text(m_timeout) + " s, PEFT_DIST_TIMEOUT) for the other ranks: one died or stalled");
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  static std::string seconds_text(double s) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", s);
    return b;
  }

  MPI_Comm m_comm;
  int m_rank = 0, m_size = 1;
  double m_timeout = 300;
};

}  // namespace peft

#endif  // PEFT_DIST_MPI_HPP
