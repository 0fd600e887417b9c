// SPDX-License-Identifier: Apache-2.0
// Data-parallel training without MPI (two ranks as two threads over an in-process collective),
// keyed dropout, and checkpoint/resume of `fit` (bit for bit, and bad state files). The MPI
// transport itself is checked under mpirun by tests/dist/dist_check.cpp.
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <peft/dist/collective.hpp>
#include <peft/core/file_util.hpp>
#include <peft/model/encoder.hpp>
#include <peft/model/random_weights.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/train/train_state.hpp>
#include <peft/train/trainer.hpp>

#include "small_model.hpp"

namespace {

/// N ranks as N threads: each collective waits for all ranks, sums in rank order, and returns.
class thread_group {
public:
  explicit thread_group(int n) : m_n(n) {}
  class member final : public peft::collective {
  public:
    member(thread_group& g, int r) : m_g(&g), m_r(r) {}
    int rank() const override { return m_r; }
    int size() const override { return m_g->m_n; }
    void allreduce_sum(float* d, std::size_t n) override { sum(d, n); }
    void allreduce_sum(double* d, std::size_t n) override { sum(d, n); }
    void broadcast(void* d, std::size_t bytes, int root) override {
      m_g->exchange(m_r, d, [&](std::vector<void*>& bufs) {
        for (int r = 0; r < m_g->m_n; ++r)
          if (r != root) std::memcpy(bufs[std::size_t(r)], bufs[std::size_t(root)], bytes);
      });
    }

  private:
    template <typename T>
    void sum(T* d, std::size_t n) {
      count(n * sizeof(T));
      m_g->exchange(m_r, d, [&](std::vector<void*>& bufs) {
        std::vector<T> total(n, T(0));
        for (auto* b : bufs)
          for (std::size_t i = 0; i < n; ++i) total[i] += static_cast<T*>(b)[i];
        for (auto* b : bufs) std::memcpy(b, total.data(), n * sizeof(T));
      });
    }
    thread_group* m_g;
    int m_r;
  };

private:
  // The last rank to arrive runs `op` over every rank's buffer; then all leave.
  template <typename Op>
  void exchange(int r, void* d, Op&& op) {
    std::unique_lock<std::mutex> lock(m_mu);
    if (m_bufs.empty()) m_bufs.assign(std::size_t(m_n), nullptr);
    m_bufs[std::size_t(r)] = d;
    const long gen = m_generation;
    if (++m_arrived == m_n) {
      op(m_bufs);
      m_arrived = 0;
      m_bufs.clear();
      ++m_generation;
      m_cv.notify_all();
    } else {
      m_cv.wait(lock, [&] { return m_generation != gen; });
    }
  }
  int m_n;
  std::mutex m_mu;
  std::condition_variable m_cv;
  std::vector<void*> m_bufs;
  int m_arrived = 0;
  long m_generation = 0;
};

struct run_setup {
  peft::encoder<peft::bert, double> enc{
      peft::random_encoder_weights<double>(peft_test::small_config("bert", 0.2), 42)};
  std::vector<peft::encoded_example> train = peft_test::toy_examples(23, 1),
                                     eval = peft_test::toy_examples(9, 4);
};

peft::vector<double> train(const run_setup& s, peft::fit_options o, peft::fit_result* res = nullptr) {
  peft::bottleneck_adapter<double> adapter(s.enc.shape(), peft::bottleneck_config::houlsby(8), 5);
  peft::classification_head<double> head(16, 3, peft::pool_kind::cls, 0.1, 7);
  peft::task_model model(s.enc, adapter, head);
  o.show_progress = false;
  o.lr = 1e-2;
  o.warmup_ratio = 0.2;
  o.seed = 9;
  const auto r = peft::fit(model, s.train, s.eval, o);
  if (res) *res = r;
  return model.parameters().get_flat();
}

std::string scratch(const std::string& name) {
  static const std::string dir = peft_test::scratch_dir("dist");  // removed when the test exits
  return dir + "/" + name;
}

}  // namespace

TEST_CASE("keyed dropout: an example's mask does not depend on its batch", "[dist][dropout]") {
  peft::rng a(5), b(5);
  a.set_example_keys({10, 11, 12});
  b.set_example_keys({12, 99});
  peft::matrix<float> ma, mb;
  const peft::index T = 4, H = 6;
  peft::ops::make_dropout_mask<float>(3 * T, H, 0.3, a, ma);  // rows of examples 10, 11, 12
  peft::ops::make_dropout_mask<float>(2 * T, H, 0.3, b, mb);  // rows of examples 12, 99
  CHECK(ma.middleRows(2 * T, T) == mb.topRows(T));
  CHECK(ma.topRows(T) != ma.middleRows(T, T));
  // One draw per mask: both generators are still in step.
  CHECK(a.engine()() == b.engine()());
  // The keep rate over many entries is 1 - p, and kept entries are 1/(1-p).
  peft::rng c(6);
  std::vector<std::uint64_t> keys(64);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = i;
  c.set_example_keys(keys);
  peft::matrix<double> mc;
  peft::ops::make_dropout_mask<double>(64 * 8, 64, 0.25, c, mc);
  const double kept = double((mc.array() > 0).count()) / double(mc.size());
  CHECK(std::abs(kept - 0.75) < 0.01);
  CHECK(mc.maxCoeff() == Approx(1 / 0.75));
  CHECK_THROWS_WITH(peft::ops::make_dropout_mask<double>(65, 4, 0.1, c, mc),
                    Catch::Contains("multiple of the 64"));
}

TEST_CASE("make_batch pads to min_time", "[dist][batch]") {
  const auto b = peft::make_batch({{2, 5, 3}, {2, 3}}, 0, nullptr, 6);
  CHECK(b.time() == 6);
  CHECK(b.length(0) == 3);
  CHECK(b.length(1) == 2);
}

TEST_CASE("2 ranks with batch b train what 1 process with batch 2b trains", "[dist][fit]") {
  const run_setup s;
  for (int ranks : {2, 3}) {
    CAPTURE(ranks);
    thread_group g(ranks);
    std::vector<peft::vector<double>> out(static_cast<std::size_t>(ranks));
    std::vector<std::uint64_t> bytes(static_cast<std::size_t>(ranks)), calls(static_cast<std::size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
      threads.emplace_back([&, r] {
        thread_group::member m(g, r);
        peft::fit_options o;
        o.steps = 10;  // crosses the epoch and its short last batch
        o.batch_size = 3;
        o.comm = &m;
        out[std::size_t(r)] = train(s, o);
        bytes[std::size_t(r)] = m.bytes_reduced();
        calls[std::size_t(r)] = m.allreduce_calls();
      });
    for (auto& t : threads) t.join();
    peft::single_process one;
    peft::fit_options o;
    o.steps = 10;
    o.batch_size = 3 * ranks;
    o.comm = &one;
    const auto ref = train(s, o);
    for (int r = 0; r < ranks; ++r) {
      CHECK((out[std::size_t(r)] - ref).cwiseAbs().maxCoeff() < 1e-12 * ref.cwiseAbs().maxCoeff());
      CHECK(calls[std::size_t(r)] == 10);
      CHECK(bytes[std::size_t(r)] == 10 * (static_cast<std::uint64_t>(ref.size()) + 1) * sizeof(double));
    }
    // Without keyed dropout (no communicator) the batch-2b run draws other masks.
    peft::fit_options plain = o;
    plain.comm = nullptr;
    CHECK((train(s, plain) - ref).cwiseAbs().maxCoeff() > 1e-6);
  }
}

TEST_CASE("2 ranks train what 1 process trains for a token-classification task, whose loss averages tokens",
          "[dist][fit][kinds]") {
  // Token cross-entropy is a mean over the batch's labelled positions, which ranks hold in
  // uneven numbers: each rank must weigh its mean by its share of those, not of the rows.
  const run_setup s;
  auto with_tags = [](std::vector<peft::encoded_example> rows) {
    peft::rng gen(17);
    for (auto& e : rows) {
      e.label = -1;
      e.token_labels.assign(e.ids.size(), peft::ignore_label);
      for (std::size_t t = 1; t + 1 < e.ids.size(); ++t)
        if (gen.below(4) != 0) e.token_labels[t] = e.ids[t] % 3;  // some positions unlabelled
    }
    return rows;
  };
  const auto train_rows = with_tags(s.train), eval_rows = with_tags(s.eval);
  auto run = [&](peft::fit_options o) {
    peft::bottleneck_adapter<double> adapter(s.enc.shape(), peft::bottleneck_config::houlsby(8), 5);
    peft::classification_head<double> head(16, 3, peft::pool_kind::tokens, 0.1, 7);
    peft::task_model model(s.enc, adapter, head);
    o.show_progress = false;
    o.lr = 1e-2;
    o.seed = 9;
    o.steps = 8;
    o.task.kind = peft::task_kind::token_classification;
    o.task.labels = {"B-X", "I-X", "O"};
    peft::fit(model, train_rows, eval_rows, o);
    return model.parameters().get_flat();
  };
  thread_group g(2);
  std::vector<peft::vector<double>> out(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      thread_group::member m(g, r);
      peft::fit_options o;
      o.batch_size = 3;
      o.comm = &m;
      out[std::size_t(r)] = run(o);
    });
  for (auto& t : threads) t.join();
  peft::single_process one;
  peft::fit_options o;
  o.batch_size = 6;
  o.comm = &one;
  const auto ref = run(o);
  for (int r = 0; r < 2; ++r) CHECK((out[std::size_t(r)] - ref).cwiseAbs().maxCoeff() < 1e-12 * ref.cwiseAbs().maxCoeff());
}

TEST_CASE("a run stopped mid-way and resumed ends with the same parameters, bit for bit", "[dist][resume]") {
  const run_setup s;
  for (bool with_comm : {false, true}) {
    CAPTURE(with_comm);
    peft::single_process one;
    peft::fit_options o;
    o.steps = 11;
    o.batch_size = 4;
    o.eval_every = 2;
    o.patience = 50;  // best-parameter tracking is part of the state
    o.comm = with_comm ? &one : nullptr;
    o.csv_path = scratch("curve_full.csv");
    const auto full = train(s, o);
    const std::string full_csv = peft::detail::read_file(o.csv_path);

    peft::fit_options first = o;
    first.state_path = scratch("state.bin");
    std::filesystem::remove(first.state_path);
    first.csv_path = scratch("curve_resumed.csv");
    first.save_every = 3;
    first.on_step = [](long step) {
      if (step == 8) throw std::runtime_error("stop at step 8");  // after the step-6 save
    };
    CHECK_THROWS_WITH(train(s, first), "stop at step 8");
    peft::fit_options second = first;
    second.on_step = nullptr;
    second.resume = true;
    peft::fit_result r;
    const auto resumed = train(s, second, &r);
    CHECK(r.steps == 11);
    CHECK(resumed == full);  // exact
    CHECK(peft::detail::read_file(second.csv_path) == full_csv);

    // Resuming a finished run changes nothing.
    CHECK(train(s, second) == full);
  }
}

TEST_CASE("bad training-state files are refused with a clear error", "[dist][resume][hostile]") {
  const run_setup s;
  peft::fit_options o;
  o.steps = 4;
  o.batch_size = 4;
  o.state_path = scratch("good.bin");
  o.save_every = 2;
  train(s, o);
  const std::string good = peft::detail::read_file(o.state_path);

  const auto resume_from = [&](const std::string& bytes, peft::fit_options ro) {
    ro.state_path = scratch("bad.bin");
    peft::atomic_write(ro.state_path, bytes);
    ro.resume = true;
    train(s, ro);
  };
  CHECK_THROWS_AS(resume_from(good.substr(0, good.size() / 2), o), peft::io_error);
  CHECK_THROWS_WITH(resume_from(good.substr(0, good.size() / 2), o), Catch::Contains("checksum"));
  CHECK_THROWS_WITH(resume_from("not a state file at all", o), Catch::Contains("magic 'PEFTTRN1' expected"));
  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x40);
  CHECK_THROWS_WITH(resume_from(flipped, o), Catch::Contains("checksum mismatch"));
  peft::fit_options other = o;
  other.steps = 5;
  CHECK_THROWS_WITH(resume_from(good, other), Catch::Contains("total steps expected 5 (this run), found 4"));
  other = o;
  other.batch_size = 2;
  CHECK_THROWS_WITH(resume_from(good, other), Catch::Contains("global batch expected 2 (this run), found 4"));
  CHECK_THROWS_WITH(peft::load_train_state<float>(o.state_path), Catch::Contains("scalar size"));

  // A save that cannot be written is an io_error naming the file (atomic_write's own tests
  // show the previous file survives a failed write).
  peft::fit_options fails = o;
  fails.state_path = scratch("no_such_dir") + "/sub/state.bin";
  CHECK_THROWS_WITH(train(s, fails), Catch::Contains("no_such_dir/sub/state.bin"));
  CHECK(peft::detail::read_file(o.state_path) == good);
}
