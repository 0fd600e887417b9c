// SPDX-License-Identifier: Apache-2.0
// peft's side of benchmarks/compare_torch: one configuration per process, timed, with the
// process's peak RSS, printed as one JSON line. The PyTorch side (bench_torch.py) builds the
// same model, batch and policies; compare_torch runs the two alternately.
//
//   bench_peft --config bert-base|minilm --mode infer|train|serve|peak --method M
//              [--batch 16] [--seq 128] [--steps 5] [--warmup 1] [--threads 2] [--seed 0]
//              [--tasks 1] [--precision fp32|bf16]
//
// Methods: none (inference), houlsby, top2-houlsby, list-adapter, prefix (16 virtual tokens),
// lora (rank 8 on Q and V), mask, side, full. Weights are random (the speed of a BERT-shaped
// encoder does not depend on the values); dropout 0.1 everywhere, as in the PyTorch script.
// A training step is what peft::fit does per batch: zero the gradients, forward, cross
// entropy on a CLS classification head, backward, AdamW.
//
// --mode serve --tasks N (benchmarks/scaling's memory table): N task policies, a mix of
// Houlsby adapters, LoRA, prefix-tuning and LiST adapters in turn, each with its own head,
// held at once over one const encoder; a step runs every task's prediction on the batch.
// The JSON line adds the bytes of the backbone and of all the policies and heads.
//
// --mode peak (compare_torch's first run): the machine's own limit in this process, as one JSON
// line: the FP32 and bf16 multiply-add peak of --threads threads (peak.hpp) and the rate
// peft's GEMM backend reaches on the encoder's linear shapes ([batch*seq x in] times
// [out x in]^T for Q/K/V/O, FFN in, FFN out), in float and with bf16 weights.
//
// --precision bf16 converts the frozen layer weights with peft::to_bf16 (build with
// -DPEFT_DNNL=ON for oneDNN's bf16 kernels; otherwise the slow portable path runs). The float
// weights are freed before the timed steps and the peak-RSS mark is reset after the
// conversion, so the reported peak is the bf16 run's own.

#include <malloc.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <peft/peft.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/policies/side_tuning.hpp>
#include <peft/train/trainer.hpp>

#include "bench_shapes.hpp"
#include "peak.hpp"

namespace {

struct options {
  std::string config = "minilm";
  std::string mode = "train";
  std::string method = "houlsby";
  peft::index batch = 16;
  peft::index seq = 128;
  long steps = 5;
  long warmup = 1;
  int threads = 2;
  std::uint64_t seed = 0;
  long tasks = 1;
  std::string precision = "fp32";
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "bench_peft: " << why
            << "\nusage: bench_peft --config bert-base|minilm --mode infer|train|serve|peak --method M [--batch N] [--seq N]"
               " [--steps N] [--warmup N] [--threads N] [--seed N] [--tasks N] [--precision fp32|bf16]\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("option " + a + " needs a value");
    const std::string v = argv[++i];
    try {
      if (a == "--config") o.config = v;
      else if (a == "--mode") o.mode = v;
      else if (a == "--method") o.method = v;
      else if (a == "--batch") o.batch = std::stol(v);
      else if (a == "--seq") o.seq = std::stol(v);
      else if (a == "--steps") o.steps = std::stol(v);
      else if (a == "--warmup") o.warmup = std::stol(v);
      else if (a == "--threads") o.threads = std::stoi(v);
      else if (a == "--seed") o.seed = std::stoull(v);
      else if (a == "--tasks") o.tasks = std::stol(v);
      else if (a == "--precision") o.precision = v;
      else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("option " + a + " expects a number, got '" + v + "'");
    }
  }
  if (o.config != "bert-base" && o.config != "minilm") usage("--config expects bert-base or minilm");
  if (o.mode != "infer" && o.mode != "train" && o.mode != "serve" && o.mode != "peak")
    usage("--mode expects infer, train, serve or peak");
  if (o.precision != "fp32" && o.precision != "bf16") usage("--precision expects fp32 or bf16");
  if (o.batch < 1 || o.seq < 2 || o.steps < 1 || o.warmup < 0 || o.threads < 1 || o.tasks < 1)
    usage("sizes must be positive");
  return o;
}


/// Peak resident set (VmHWM), in MiB.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // the value is in kB
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

/// Hands freed memory back to the system and resets the peak-RSS mark to the current
/// resident set (Linux >= 4.0), so that a peak measured afterwards is the run's own.
void reset_peak_rss() {
  malloc_trim(0);
  std::ofstream("/proc/self/clear_refs") << "5";
}

using clock_type = std::chrono::steady_clock;

/// Times `steps` calls of `step` after `warmup` untimed ones; prints the JSON line, with
/// `extra` (`"key": value, ...` pairs) appended when given.
template <typename Step>
int run_timed(const options& o, Step&& step, const std::string& extra = "") {
  for (long i = 0; i < o.warmup; ++i) step();
  const auto t0 = clock_type::now();
  for (long i = 0; i < o.steps; ++i) step();
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  const double tokens = double(o.batch) * double(o.seq) * double(o.steps);
  std::printf("{\"tokens_per_s\": %.3f, \"peak_rss_mb\": %.1f, \"steps\": %ld, \"seconds\": %.4f%s%s}\n",
              tokens / seconds, peak_rss_mb(), o.steps, seconds, extra.empty() ? "" : ", ", extra.c_str());
  return 0;
}

template <typename Policy>
int train_with(const options& o, const peft::encoder<peft::bert, float>& enc, Policy& policy,
               const peft::task_batch& tb) {
  peft::classification_head<float> head(enc.hidden_size(), 2, peft::pool_kind::cls, 0.1, o.seed + 1);
  peft::task_model model(enc, policy, head);
  auto set = model.parameters();
  std::cerr << "bench_peft: " << o.method << " trains " << set.size() << " parameters\n";
  peft::adamw_hyper hyper;
  hyper.lr = 1e-3;
  peft::adamw<float> opt(hyper);
  opt.init(set);
  peft::rng drop_gen(o.seed ^ 0x9e3779b97f4a7c15ULL);
  return run_timed(o, [&] {
    set.zero_grad();
    model.forward_backward(tb, peft::mode::train, drop_gen, [&](const peft::matrix<float>& z, peft::matrix<float>& dz) {
      return static_cast<double>(peft::cross_entropy(z, tb.labels, dz));
    });
    opt.step(set, hyper.lr);
  });
}

double megabytes(std::size_t scalars) { return double(scalars) * sizeof(float) / (1024.0 * 1024.0); }

/// --mode serve: `o.tasks` policies of mixed methods and their heads over one encoder. Tokens
/// per second count every task's rows (a step predicts the batch once per task).
int serve(const options& o, const peft::encoder<peft::bert, float>& enc, const peft::task_batch& tb) {
  using head_t = peft::classification_head<float>;
  const peft::encoder_shape shape = enc.shape();
  // Deques keep every policy's address fixed while more are added.
  std::deque<peft::bottleneck_adapter<float>> adapters;
  std::deque<peft::lora<float>> loras;
  std::deque<peft::prefix_tuning<float>> prefixes;
  std::deque<head_t> heads;
  std::vector<std::function<float()>> predictors;  // one per task: its first logit
  std::size_t policy_scalars = 0;
  auto add = [&](auto& policy) {
    heads.emplace_back(enc.hidden_size(), 2, peft::pool_kind::cls, 0.1, o.seed + 1 + heads.size());
    policy_scalars += static_cast<std::size_t>(policy.parameters().size() + heads.back().parameters().size());
    predictors.push_back([&enc, &tb, p = &policy, h = &heads.back()] {
      peft::task_model model(enc, *p, *h);
      return model.predict(tb)(0, 0);
    });
  };
  for (long t = 0; t < o.tasks; ++t) {
    const std::uint64_t seed = o.seed + 100 + std::uint64_t(t);
    switch (t % 4) {
      case 0: add(adapters.emplace_back(shape, peft::bottleneck_config::houlsby(), seed)); break;
      case 1: add(loras.emplace_back(shape, peft::lora_config{}, seed)); break;
      case 2: {
        peft::prefix_tuning_config c;
        c.num_virtual_tokens = 16;
        add(prefixes.emplace_back(shape, c, seed));
        break;
      }
      default: add(adapters.emplace_back(shape, peft::bottleneck_config::list(), seed)); break;
    }
  }
  const std::size_t backbone_bytes = enc.weights().bytes();
  options timed = o;
  timed.batch = o.batch * o.tasks;  // tokens counted over every task's rows
  char extra[160];
  std::snprintf(extra, sizeof extra, "\"tasks\": %ld, \"backbone_mb\": %.1f, \"policies_mb\": %.2f", o.tasks,
                double(backbone_bytes) / (1024.0 * 1024.0), megabytes(policy_scalars));
  return run_timed(timed, [&] {
    for (auto& predict : predictors) {
      const float z = predict();
      if (!(z == z)) std::cerr << "bench_peft: NaN in a prediction\n";
    }
  }, extra);
}

/// GFLOP/s of peft's linear_forward on `x` [rows x in] times `w`^T ([out x in]), best of
/// `repeats` timed calls after one untimed.
template <typename W>
double gemm_rate(const peft::matrix<float>& x, const W& w, peft::index out, int repeats) {
  const peft::vector<float> no_bias;
  peft::matrix<float> y;
  peft::ops::linear_forward(x, w, no_bias, y);
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = clock_type::now();
    peft::ops::linear_forward(x, w, no_bias, y);
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    best = std::max(best, 2.0 * double(x.rows()) * double(x.cols()) * double(out) / dt / 1e9);
  }
  if (!(y(0, 0) == y(0, 0))) std::cerr << "bench_peft: NaN in a product\n";
  return best;
}

/// --mode peak: the vector units' peaks and the GEMM rates at the encoder's shapes.
int peak(const options& o, const peft::encoder_config& cfg) {
  const bench::peak_result f = bench::fp32_peak(o.threads), b = bench::bf16_peak(o.threads);
  const peft::index rows = o.batch * o.seq, H = cfg.hidden_size, I = cfg.intermediate_size;
  peft::rng gen(o.seed + 3);
  auto random = [&](peft::index r, peft::index c) {
    peft::matrix<float> m(r, c);
    for (peft::index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<float>(gen.normal() * 0.05);
    return m;
  };
  // (out, in) of the layer's linears and how many of each a layer has.
  const struct { peft::index out, in, count; } shapes[] = {{H, H, 4}, {I, H, 1}, {H, I, 1}};
  std::string json = "{\"mode\": \"peak\", \"threads\": " + std::to_string(o.threads) +
                     ", \"fp32_isa\": \"" + f.isa + "\", \"fp32_peak_gflops\": " + std::to_string(f.gflops) +
                     ", \"bf16_isa\": \"" + b.isa + "\", \"bf16_peak_gflops\": " + std::to_string(b.gflops);
  for (const char* precision : {"fp32", "bf16"}) {
    double flops = 0, seconds = 0;  // the layer's mix: total work over total time
    std::string each;
    for (const auto& s : shapes) {
      const peft::matrix<float> x = random(rows, s.in), w = random(s.out, s.in);
      const double g = std::string(precision) == "fp32" ? gemm_rate(x, w, s.out, 5)
                                                        : gemm_rate(x, peft::bf16_matrix(w), s.out, 5);
      const double work = 2.0 * double(rows) * double(s.in) * double(s.out) * double(s.count);
      flops += work;
      seconds += work / (g * 1e9);
      each += ", \"" + std::string(precision) + "_gemm_" + std::to_string(s.out) + "x" + std::to_string(s.in) +
              "_gflops\": " + std::to_string(g);
    }
    json += each + ", \"" + precision + "_gemm_layer_mix_gflops\": " + std::to_string(flops / seconds / 1e9);
  }
  std::cout << json << "}" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  peft::set_num_threads(o.threads);
  if (!peft::keep_freed_memory()) std::cerr << "bench_peft: the allocator settings did not take\n";
  const auto cfg = bench::shape_of(o.config);
  if (o.mode == "peak") return peak(o, cfg);
  peft::shared_weights<float> weights = peft::random_encoder_weights<float>(cfg, o.seed, 0.02);
  if (o.precision == "bf16") {
    weights = peft::to_bf16(weights);  // the float weights are freed here
    reset_peak_rss();
  }
  const peft::encoder<peft::bert, float> enc(weights);
  weights.reset();
  const peft::encoder_shape shape = enc.shape();

  // Random ids (not the special ones), every position real, random labels in {0, 1}.
  peft::rng gen(o.seed + 7);
  std::vector<peft::encoded_example> rows(static_cast<std::size_t>(o.batch));
  std::vector<std::size_t> pick;
  for (auto& r : rows) {
    r.ids.resize(static_cast<std::size_t>(o.seq));
    for (auto& id : r.ids) id = static_cast<std::int32_t>(1000 + gen.below(std::uint64_t(cfg.vocab_size - 1000)));
    r.label = static_cast<int>(gen.below(2));
    pick.push_back(pick.size());
  }
  const peft::task_batch tb = peft::make_task_batch(rows, pick, 0);

  if (o.mode == "serve") return serve(o, enc, tb);
  if (o.mode == "infer") {
    if (o.method != "none") usage("--mode infer measures the plain encoder: --method none");
    return run_timed(o, [&] {
      const auto h = enc.forward(tb.input);
      if (!(h(0, 0) == h(0, 0))) std::cerr << "bench_peft: NaN in the output\n";
    });
  }
  const std::string& m = o.method;
  if (m == "houlsby" || m == "top2-houlsby" || m == "list-adapter") {
    auto c = m == "list-adapter" ? peft::bottleneck_config::list() : peft::bottleneck_config::houlsby();
    if (m == "top2-houlsby") c.layers = {cfg.num_layers - 2, cfg.num_layers - 1};
    peft::bottleneck_adapter<float> p(shape, c, o.seed);
    return train_with(o, enc, p, tb);
  }
  if (m == "prefix") {
    peft::prefix_tuning_config c;
    c.num_virtual_tokens = 16;
    peft::prefix_tuning<float> p(shape, c, o.seed);
    return train_with(o, enc, p, tb);
  }
  if (m == "lora") {
    peft::lora<float> p(shape, peft::lora_config{}, o.seed);
    return train_with(o, enc, p, tb);
  }
  if (m == "mask") {
    peft::mask_tuning<float> p(shape, peft::mask_tuning_config{}, o.seed);
    return train_with(o, enc, p, tb);
  }
  if (m == "side") {
    peft::side_tuning<float> p(shape, peft::side_tuning_config{}, o.seed);
    return train_with(o, enc, p, tb);
  }
  if (m == "full") {
    peft::full_finetune<float> p(shape);
    return train_with(o, enc, p, tb);
  }
  usage("unknown --method " + m);
} catch (const std::exception& e) {
  std::cerr << "bench_peft: " << e.what() << "\n";
  return 1;
}
