// SPDX-License-Identifier: Apache-2.0
// Data-parallel training over MPI, run by ctest under `mpirun -np 2`:
//
//   dist_check equal   2 ranks with per-rank batch b train the same parameters as one process
//                      with batch 2b (double: to 1e-12; float on real USE-lite: to 1e-4 of the largest parameter),
//                      with dropout on, a short last batch, one allreduce per step
//                      and sharded LiST (both meta re-weighting methods) against one process
//   dist_check die     rank 1 kills itself (SIGKILL) at step 2: the job must end, not hang
//   dist_check stall   rank 1 sleeps at step 2: rank 0 reports a clear timeout error
//   dist_check disagree rank 1 holds one training example fewer: it names the mismatch, the job ends
//
// Exit status 0 on success; failures print what differed.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <peft/dist/mpi.hpp>
#include <peft/core/file_util.hpp>
#include <peft/io/use_lite.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/text/unigram.hpp>
#include <peft/train/self_training.hpp>
#include <peft/train/trainer.hpp>

#include "../small_model.hpp"

namespace {


template <typename Enc, typename Scalar>
peft::vector<Scalar> train(const Enc& enc, const std::vector<peft::encoded_example>& data, peft::index width,
                           peft::index classes, peft::collective& comm, peft::index batch, long steps,
                           std::function<void(long)> on_step = {}) {
  peft::bottleneck_adapter<Scalar> adapter(enc.shape(), peft::bottleneck_config::houlsby(8), 5);
  peft::classification_head<Scalar> head(width, classes, peft::pool_kind::cls, 0.1, 7);
  peft::task_model model(enc, adapter, head);
  peft::fit_options o;
  o.steps = steps;
  o.batch_size = batch;
  o.lr = 1e-2;
  o.warmup_ratio = 0.2;
  o.show_progress = false;
  o.seed = 9;
  o.comm = &comm;
  o.on_step = std::move(on_step);
  peft::fit(model, data, {}, o);
  return model.parameters().get_flat();
}

template <typename Scalar>
double max_rel_diff(const peft::vector<Scalar>& a, const peft::vector<Scalar>& b) {
  if (a.size() != b.size()) return 1e30;
  const double scale = std::max(1e-30, static_cast<double>(b.cwiseAbs().maxCoeff()));
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / scale;
}

/// LiST on the small double BERT: teacher, one session with KD warm-up, re-weighted steps and
/// fine-tuning; returns the final student's parameters.
peft::vector<double> run_list(const peft::encoder<peft::bert, double>& enc, peft::collective& comm,
                              peft::reweight_method method) {
  using adapter = peft::bottleneck_adapter<double>;
  using head = peft::classification_head<double>;
  const auto labelled = peft_test::toy_examples(12, 2);
  auto pool = peft_test::toy_examples(40, 3);
  for (auto& e : pool) e.label = -1;
  peft::list_options o;
  o.teacher_epochs = 2;
  o.sessions = 1;
  o.student_steps = 6;
  o.warmup_fraction = 0.5;
  o.finetune_epochs = 1;
  o.teacher_lr = o.student_lr = 1e-2;
  o.labelled_batch = 4;
  o.unlabelled_batch = 8;
  o.meta_batch = 4;
  o.meta.method = method;
  o.show_progress = false;
  o.comm = &comm;
  peft::self_trainer<peft::bert, double, adapter, head> st(
      enc, [&](std::uint64_t s) { return adapter(enc.shape(), peft::bottleneck_config::list(8), s); },
      [&](std::uint64_t s) { return head(16, 3, peft::pool_kind::cls, 0.1, s); }, o);
  st.run(labelled, pool);
  return st.student().parameters().get_flat();
}

int check_equal(peft::mpi_collective& comm) {
  int failures = 0;
  const int N = comm.size();
  {
    // Small random BERT in double: 23 examples, batch 3 per rank, 10 steps cross an epoch and
    // its short last batch (6+6+6+5 for 2 ranks).
    const peft::encoder<peft::bert, double> enc(peft::random_encoder_weights<double>(peft_test::small_config("bert", 0.2), 42));
    const auto data = peft_test::toy_examples(23, 1);
    const auto before = comm.allreduce_calls();
    const auto dist = train<decltype(enc), double>(enc, data, 16, 3, comm, 3, 10);
    const auto calls = comm.allreduce_calls() - before;
    peft::single_process one;
    const auto ref = train<decltype(enc), double>(enc, data, 16, 3, one, 3 * N, 10);
    const double d = max_rel_diff(dist, ref);
    const peft::vector<double> zero = peft::vector<double>::Zero(dist.size());
    const double moved = max_rel_diff(dist, zero);
    std::printf("rank %d: small BERT (double) %d ranks x batch 3 vs 1 x batch %d: max rel diff %.3g; "
                "%llu allreduce calls for 10 steps, %lld parameters\n",
                comm.rank(), N, 3 * N, d, static_cast<unsigned long long>(calls), static_cast<long long>(dist.size()));
    if (!(d < 1e-12)) {
      std::printf("FAIL: parameters differ (tolerance 1e-12)\n");
      ++failures;
    }
    if (calls != 10) {
      std::printf("FAIL: allreduce calls expected 10 (one per step), got %llu\n", static_cast<unsigned long long>(calls));
      ++failures;
    }
    if (!(moved > 0)) {
      std::printf("FAIL: the trained parameters are all zero\n");
      ++failures;
    }
    for (auto method : {peft::reweight_method::per_example, peft::reweight_method::directional}) {
      const auto list_dist = run_list(enc, comm, method);
      const auto list_ref = run_list(enc, one, method);
      const double dl = max_rel_diff(list_dist, list_ref);
      std::printf("rank %d: sharded LiST (%s re-weighting, double) on %d ranks vs 1 process: max rel diff %.3g\n",
                  comm.rank(), peft::to_string(method), N, dl);
      if (!(dl < 1e-9)) {
        std::printf("FAIL: LiST parameters differ (tolerance 1e-9)\n");
        ++failures;
      }
    }
  }
  {
    // Real USE-lite (float) on real yelp sentences, LiST-size batches: 4 per rank, 5 steps.
    const peft::encoder<peft::use_lite, float> enc{peft::load_use_lite<float>(peft_test::use_lite_dir())};
    const auto tok = peft::unigram_tokenizer::from_vocab_json(peft_test::use_lite_dir() + "/vocab.json");
    const auto j = nlohmann::json::parse(
        peft::detail::read_file(peft_test::assets_dir() + "/sentiment/test/fixtures/yelp.json", "dist_check"));
    std::vector<peft::encoded_example> data;
    for (const auto& e : j) {
      if (e["class"].is_null() || data.size() >= 20) continue;
      peft::encoded_example x;
      x.ids = tok.encode(e["text"].get<std::string>(), 64);
      x.label = e["class"].get<int>();
      if (!x.ids.empty()) data.push_back(std::move(x));
    }
    const auto dist = train<decltype(enc), float>(enc, data, 512, 2, comm, 4, 5);
    peft::single_process one;
    const auto ref = train<decltype(enc), float>(enc, data, 512, 2, one, 4 * N, 5);
    const double d = max_rel_diff(dist, ref);
    std::printf("rank %d: USE-lite (float, real yelp) %d ranks x batch 4 vs 1 x batch %d: max rel diff %.3g\n",
                comm.rank(), N, 4 * N, d);
    if (!(d < 1e-4)) {
      std::printf("FAIL: parameters differ (tolerance 1e-4)\n");
      ++failures;
    }
  }
  return failures;
}

int check_fault(peft::mpi_collective& comm, bool die) {
  const peft::encoder<peft::bert, double> enc(peft::random_encoder_weights<double>(peft_test::small_config("bert", 0.2), 42));
  const auto data = peft_test::toy_examples(40, 1);
  train<decltype(enc), double>(enc, data, 16, 3, comm, 2, 20, [&](long step) {
    if (step == 2 && comm.rank() == 1) {
      std::printf("rank 1: %s at step 2\n", die ? "raising SIGKILL" : "stalling for 600 s");
      std::fflush(stdout);
      if (die) std::raise(SIGKILL);
      std::this_thread::sleep_for(std::chrono::seconds(600));
    }
  });
  std::printf("rank %d: FAIL: training finished although rank 1 %s\n", comm.rank(), die ? "died" : "stalled");
  return 1;
}

int check_disagree(peft::mpi_collective& comm) {
  const peft::encoder<peft::bert, double> enc(peft::random_encoder_weights<double>(peft_test::small_config("bert", 0.2), 42));
  const auto data = peft_test::toy_examples(comm.rank() == 1 ? 39 : 40, 1);
  train<decltype(enc), double>(enc, data, 16, 3, comm, 2, 4);
  std::printf("rank %d: FAIL: training finished although the ranks hold different data\n", comm.rank());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "equal" && mode != "die" && mode != "stall" && mode != "disagree") {
    std::fprintf(stderr, "usage: mpirun -np N dist_check equal|die|stall|disagree\n");
    return 2;
  }
  peft::mpi_session session(&argc, &argv);  // outside the try: the handler reports, then aborts
  try {
    peft::mpi_collective comm;
    const int failures = mode == "equal"      ? check_equal(comm)
                         : mode == "disagree" ? check_disagree(comm)
                                              : check_fault(comm, mode == "die");
    std::fflush(stdout);
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_check: %s\n", e.what());
    std::fflush(stderr);
    peft::mpi_session::abort(3);
  }
}
