// SPDX-License-Identifier: Apache-2.0
// bench_dist: data-parallel Houlsby training throughput, one configuration per run.
//
//   mpirun -np R bench_dist [--config bert-base|minilm] [--global-batch 16] [--seq 128]
//                           [--steps 6] [--threads T]
//
// Every rank holds the same random BERT-shaped backbone (the speed does not depend on the
// values) and `peft::fit` trains a Houlsby adapter + head with global batch G split over the R
// ranks (G/R each), one MPI_Allreduce per step. The first step is a warm-up and is not timed.
// Rank 0 prints one JSON line: steps/s, tokens/s, bytes all-reduced per step and the time
// spent inside the allreduce (waiting included). Run alone (not under mpirun) it is one rank.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <peft/dist/mpi.hpp>
#include <peft/peft.hpp>
#include <peft/policies/bottleneck_adapter.hpp>

#include "bench_shapes.hpp"

namespace {

struct options {
  std::string config = "minilm";
  long global_batch = 16, seq = 128, steps = 6;
  int threads = 1;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "bench_dist: " << why
            << "\nusage: mpirun -np R bench_dist [--config bert-base|minilm] [--global-batch 16] [--seq 128] "
               "[--steps 6] [--threads T]\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("option " + a + " needs a value");
    const std::string v = argv[i + 1];
    if (a == "--config") o.config = v;
    else if (a == "--global-batch") o.global_batch = std::stol(v);
    else if (a == "--seq") o.seq = std::stol(v);
    else if (a == "--steps") o.steps = std::stol(v);
    else if (a == "--threads") o.threads = std::stoi(v);
    else usage("unknown option " + a);
  }
  if (o.config != "bert-base" && o.config != "minilm") usage("--config expects bert-base or minilm");
  if (o.global_batch < 1 || o.seq < 2 || o.steps < 2 || o.threads < 1) usage("sizes must be positive (steps >= 2)");
  return o;
}


/// Times the reductions of another collective (waiting for the slower rank included).
class timed final : public peft::collective {
public:
  explicit timed(peft::collective& inner) : m_inner(&inner) {}
  int rank() const override { return m_inner->rank(); }
  int size() const override { return m_inner->size(); }
  void allreduce_sum(float* d, std::size_t n) override { time([&] { m_inner->allreduce_sum(d, n); }, n * 4); }
  void allreduce_sum(double* d, std::size_t n) override { time([&] { m_inner->allreduce_sum(d, n); }, n * 8); }
  void broadcast(void* d, std::size_t b, int root) override { m_inner->broadcast(d, b, root); }
  double seconds = 0;

private:
  template <typename F>
  void time(F&& f, std::size_t bytes) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    count(bytes);
  }
  peft::collective* m_inner;
};

int run(const options& o, peft::collective& comm) {
  const int R = comm.size();
  if (o.global_batch % R != 0) usage("--global-batch must be a multiple of the rank count");
  peft::set_num_threads(o.threads);
  peft::keep_freed_memory();
  const auto cfg = bench::shape_of(o.config);
  const peft::encoder<peft::bert, float> enc(peft::random_encoder_weights<float>(cfg, 1, 0.02));
  peft::rng gen(8);
  std::vector<peft::encoded_example> data(static_cast<std::size_t>(o.global_batch * o.steps));
  for (auto& r : data) {
    r.ids.resize(static_cast<std::size_t>(o.seq));
    for (auto& id : r.ids) id = static_cast<std::int32_t>(1000 + gen.below(std::uint64_t(cfg.vocab_size - 1000)));
    r.label = static_cast<int>(gen.below(2));
  }
  peft::bottleneck_adapter<float> adapter(enc.shape(), peft::bottleneck_config::houlsby(), 3);
  peft::classification_head<float> head(enc.hidden_size(), 2, peft::pool_kind::cls, 0.1, 4);
  peft::task_model model(enc, adapter, head);
  timed t(comm);
  peft::fit_options f;
  f.steps = o.steps;
  f.batch_size = o.global_batch / R;
  f.lr = 1e-4;
  f.show_progress = false;
  f.comm = &t;
  using clock = std::chrono::steady_clock;
  clock::time_point start;
  double reduce_at_start = 0;
  f.on_step = [&](long step) {
    if (step == 1) {  // the warm-up step ends: start the clock
      start = clock::now();
      reduce_at_start = t.seconds;
    }
  };
  peft::fit(model, data, {}, f);
  const double secs = std::chrono::duration<double>(clock::now() - start).count();
  const double timed_steps = double(o.steps - 1);
  if (comm.rank() == 0) {
    const nlohmann::json j = {{"config", o.config},
                              {"ranks", R},
                              {"threads_per_rank", o.threads},
                              {"global_batch", o.global_batch},
                              {"seq", o.seq},
                              {"steps_per_s", timed_steps / secs},
                              {"tokens_per_s", timed_steps * double(o.global_batch * o.seq) / secs},
                              {"allreduce_bytes_per_step", t.bytes_reduced() / std::uint64_t(o.steps)},
                              {"allreduce_ms_per_step", 1e3 * (t.seconds - reduce_at_start) / timed_steps},
                              {"trainable_params", model.parameters().size()}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  if (peft::launched_by_mpi()) {
    peft::mpi_session session(&argc, &argv);
    try {
      peft::mpi_collective comm;
      return run(o, comm);
    } catch (const std::exception& e) {
      std::cerr << "bench_dist: " << e.what() << "\n";
      peft::mpi_session::abort(1);
    }
  }
  try {
    peft::single_process one;
    return run(o, one);
  } catch (const std::exception& e) {
    std::cerr << "bench_dist: " << e.what() << "\n";
    return 1;
  }
}
