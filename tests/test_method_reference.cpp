// SPDX-License-Identifier: Apache-2.0
// Every PEFT method against an independent PyTorch reference of its published formulation
// (tests/reference/torch_methods.py).
//
// This file is the peft half. It builds a small random BERT (3 layers, hidden 24, 4 heads) and
// every method with hyper-parameters away from their defaults and random values in every
// parameter (so that no gradient is zero by construction, e.g. LoRA's B), runs one forward in
// train mode (hidden dropout 0.2: an adapter before dropout and one after it see different
// inputs) on a padded batch of lengths 7, 11 and 4, and one backward of
//     loss = sum(h_out .* R)   (R random, zero on padding rows)
// (+ the fusion regulariser for AdapterFusion), in float and in double. It writes the frozen
// weights (as a Hugging Face checkpoint), the batch, R, the policy's parameters and config, the
// dropout masks and router noise the forward drew, and peft's output and parameter gradients
// to safetensors in a scratch folder. The script recomputes the output and every gradient with
// torch autograd (float64 from the double files, float32 from the float files) and exits
// non-zero when a difference exceeds the tolerance; it prints the table in the README. A
// missing /usr/bin/python3 or torch fails the test.
#include <peft/io/hf_checkpoint.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/methods.hpp>
#include <peft/model/encoder.hpp>
#include <peft/model/random_weights.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "gradcheck.hpp"
#include "test_common.hpp"

namespace {

using json = nlohmann::json;

/// One row of the reference table: a registered method (or "fusion", built by hand) with
/// non-default options and the scale of the random values its parameters get.
struct method_case {
  std::string label;
  std::string method;
  json options;
  double scale = 0.3;
  peft::index task = 0;      ///< MPMP: the task whose router row is used
  bool materialize = false;  ///< MPMP: the downstream form, prompts trained directly
};

std::vector<method_case> cases() {
  return {
      {"frozen encoder", "head", json::object(), 0.0, 0},
      {"lora",
       "lora",
       {{"r", 4},
        {"lora_alpha", 12.0},
        {"target_modules", {"query", "value", "ffn_out"}},
        {"layers_to_transform", {0, 2}},
        {"lora_dropout", 0.25}},
       0.15,
       0},
      {"houlsby", "houlsby", {{"bottleneck_size", 5}, {"layers", {1, 2}}}, 0.3, 0},
      {"pfeiffer", "pfeiffer", {{"reduction_factor", 4.0}, {"layers", {0, 2}}}, 0.3, 0},
      {"list-adapter", "list-adapter", {{"bottleneck_size", 7}, {"layers", {0, 1}}}, 0.3, 0},
      {"prefix (MLP)", "prefix", {{"num_virtual_tokens", 3}, {"encoder_hidden_size", 9}}, 0.5, 0},
      {"prefix (direct)", "prefix", {{"num_virtual_tokens", 4}, {"prefix_projection", false}}, 0.8, 0},
      {"mask",
       "mask",
       {{"threshold", 0.05}, {"target_modules", {"key", "attn_out", "ffn_in"}}, {"layers", {1, 2}}},
       0.1,
       0},
      {"side (MLP)", "side", {{"side_hidden_size", 10}, {"side_activation", "gelu"}}, 0.4, 0},
      {"side (Transformer)",
       "side",
       {{"side_network", "transformer"},
        {"side_hidden_size", 12},
        {"side_num_heads", 3},
        {"side_intermediate_size", 20},
        {"side_activation", "gelu_new"},
        {"side_layer_norm_eps", 1e-5}},
       0.4,
       0},
      {"full", "full", json::object(), 0.05, 0},
      {"fusion", "fusion", json::object(), 0.12, 0},
      {"mpmp (deep)",
       "mpmp",
       {{"num_modules", 3},
        {"num_prompt_tokens", 2},
        {"intrinsic_dim", 5},
        {"num_tasks", 3},
        {"temperature", 0.7}},
       0.7,
       1},
      {"mpmp (shallow)",
       "mpmp",
       {{"num_modules", 4},
        {"num_prompt_tokens", 3},
        {"intrinsic_dim", 6},
        {"num_tasks", 2},
        {"temperature", 1.5},
        {"deep", false}},
       0.7,
       1},
      {"mpmp (materialised)",
       "mpmp",
       {{"num_modules", 3},
        {"num_prompt_tokens", 2},
        {"intrinsic_dim", 4},
        {"num_tasks", 2},
        {"temperature", 0.5}},
       0.4,
       0,
       true},
      // Last, so that the cases above keep their seeds (the index).
      {"lora (rsLoRA)",
       "lora",
       {{"r", 9},
        {"lora_alpha", 6.0},
        {"use_rslora", true},
        {"target_modules", {"key", "ffn_in"}},
        {"layers_to_transform", {1}}},
       0.15,
       0},
  };
}

constexpr double hidden_dropout = 0.2;
constexpr double fusion_regularization_weight = 0.25;

peft::encoder_config model_config() {
  peft::encoder_config c;
  c.model_type = "bert";
  c.vocab_size = 40;
  c.hidden_size = 24;
  c.embedding_size = 24;
  c.num_layers = 3;
  c.num_heads = 4;
  c.intermediate_size = 40;
  c.max_positions = 16;
  c.type_vocab_size = 2;
  c.pad_token_id = 0;
  c.layer_norm_eps = 1e-12;
  c.hidden_act = peft::activation::gelu_erf;
  c.hidden_dropout = hidden_dropout;
  c.attention_dropout = 0.0;  // the attention-probability masks are not exported
  return c;
}

/// Lengths 7, 11, 4: [CLS] = 2, random ids in 4..39, [SEP] = 3; the second half is segment 1.
peft::batch model_batch() {
  peft::rng gen(2024);
  std::vector<std::vector<std::int32_t>> ids, seg;
  for (int len : {7, 11, 4}) {
    std::vector<std::int32_t> s = {2}, g = {0};
    for (int t = 1; t + 1 < len; ++t) s.push_back(static_cast<std::int32_t>(4 + gen.below(36)));
    s.push_back(3);
    for (int t = 1; t < len; ++t) g.push_back(t >= len / 2 ? 1 : 0);
    ids.push_back(s);
    seg.push_back(g);
  }
  return peft::make_batch(ids, 0, &seg);
}

template <typename S>
std::vector<std::int64_t> shape_of(const peft::matrix<S>& m) {
  return {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
}
template <typename S>
std::vector<S> values_of(const peft::matrix<S>& m) {
  return std::vector<S>(m.data(), m.data() + m.size());
}
template <typename M>
void add_matrix(peft::safetensors_writer& w, const std::string& name, const M& m) {
  using S = typename M::Scalar;
  const peft::matrix<S> c = m;
  w.add(name, shape_of(c), values_of(c));
}
void add_ids(peft::safetensors_writer& w, const std::string& name, const peft::id_matrix& m) {
  std::vector<std::int64_t> v;
  for (peft::index i = 0; i < m.rows(); ++i)
    for (peft::index j = 0; j < m.cols(); ++j) v.push_back(m(i, j));
  w.add(name, {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())}, v);
}

/// Random values for every block of @p store: N(0, scale) drawn in double (the float run gets
/// the same draws rounded), mask scores uniform in threshold +- 0.1 but never within 1e-3 of it
/// (so that float and double keep the same mask).
template <typename S>
void randomise(peft::parameter_store<S>& store, double scale, peft::rng& gen, double mask_threshold = -1) {
  for (peft::index k = 0; k < store.size(); ++k) {
    double v;
    if (mask_threshold >= 0) {
      do {
        v = 0.2 * gen.uniform() - 0.1;
      } while (std::abs(v) < 1e-3);
      v += mask_threshold;
    } else {
      v = gen.normal() * scale;
    }
    store.values()[k] = static_cast<S>(v);
  }
  store.zero_grad();
}

template <typename S>
peft::any_policy<S> build(const method_case& c, std::uint64_t seed, const peft::encoder_shape& shape,
                          json& policy_config,
                          std::vector<std::shared_ptr<const peft::bottleneck_adapter<S>>>& fused) {
  peft::rng gen(1000 + seed);
  if (c.method == "fusion") {
    // Two frozen, trained-looking FFN adapters of different sizes and non-linearities.
    auto ca = peft::bottleneck_config::pfeiffer(6);
    ca.layers = {0, 2};
    ca.adapter_name = "a";
    auto cb = peft::bottleneck_config::pfeiffer(3);
    cb.layers = {0, 2};
    cb.activation = peft::adapter_activation::gelu;
    cb.adapter_name = "b";
    peft::bottleneck_adapter<S> a(shape, ca, 1), bb(shape, cb, 2);
    randomise(a.parameters(), 0.4, gen);
    randomise(bb.parameters(), 0.4, gen);
    fused = {std::make_shared<const peft::bottleneck_adapter<S>>(a),
             std::make_shared<const peft::bottleneck_adapter<S>>(bb)};
    peft::adapter_fusion_config fc;
    fc.temperature = 0.5;
    fc.dropout = 0.3;
    fc.value_initialized = false;
    peft::adapter_fusion<S> f(shape, {fused[0], fused[1]}, fc, 3);
    randomise(f.parameters(), c.scale, gen);
    policy_config = f.config_json();
    return peft::any_policy<S>(std::move(f));
  }
  peft::any_policy<S> p = peft::make_policy<S>(c.method, shape, 7, c.options);
  if (auto* mp = p.template get_if<peft::modular_prompt<S>>()) {
    mp->set_task(c.task);
    if (c.materialize) mp->materialize();
  }
  const double threshold = c.method == "mask" ? c.options.at("threshold").get<double>() : -1;
  for (auto* s : p.stores()) randomise(*s, c.scale, gen, threshold);
  if (p.has_policy()) policy_config = p.config_json();
  return p;
}

template <typename S>
void dump_case(const method_case& c, std::uint64_t seed, const peft::encoder<peft::bert, S>& enc,
               const peft::batch& b, const peft::matrix<S>& R, const std::string& path) {
  json config;
  std::vector<std::shared_ptr<const peft::bottleneck_adapter<S>>> fused;
  peft::any_policy<S> pol = build<S>(c, seed, enc.shape(), config, fused);
  // The options took effect: the config the reference reads says what the case asked for.
  for (const auto& kv : c.options.items()) {
    INFO(c.label << " option " << kv.key());
    CHECK(config.at(kv.key()) == kv.value());
  }
  peft::safetensors_writer w;
  // Side-tuning runs in eval mode: the reference freezes its base network in eval mode
  // (side_tuning.hpp), so the side network must not see the base's embedding dropout.
  const peft::mode run_mode = c.method == "side" ? peft::mode::eval : peft::mode::train;
  pol.visit([&](auto& p) {
    using P = std::decay_t<decltype(p)>;
    peft::encoder_tape<S, P> tape;
    peft::rng gen(99);
    const peft::matrix<S> out = enc.forward(b, p, run_mode, &tape, &gen);
    enc.backward(R, p, tape);
    if constexpr (std::is_same_v<P, peft::adapter_fusion<S>>)
      p.add_regularization_grad(fusion_regularization_weight);
    // The policies' own dropout scales: LoRA's on each path's input, the fusion's on its scores.
    if constexpr (std::is_same_v<P, peft::lora<S>>) {
      for (std::size_t i = 0; i < tape.policy.paths.size(); ++i)
        if (tape.policy.paths[i].mask.size() != 0)
          add_matrix(w,
                     "policy_dropout." + std::to_string(i / peft::num_linear_ids) + "." +
                         peft::to_string(static_cast<peft::linear_id>(i % peft::num_linear_ids)),
                     tape.policy.paths[i].mask);
    }
    if constexpr (std::is_same_v<P, peft::adapter_fusion<S>>) {
      for (std::size_t i = 0; i < tape.policy.layers.size(); ++i) {
        REQUIRE(tape.policy.layers[i].drop.size() != 0);
        add_matrix(w, "policy_dropout." + std::to_string(p.fused_layers()[i]), tape.policy.layers[i].drop);
      }
    }
    if constexpr (std::is_same_v<P, peft::modular_prompt<S>>) {
      REQUIRE(tape.policy.sampled);  // train mode: relaxed-Bernoulli routing
      for (std::size_t s = 0; s < tape.policy.noise.size(); ++s)
        add_matrix(w, "noise." + std::to_string(s), peft::matrix<S>(tape.policy.noise[s].transpose()));
    }
    add_matrix(w, "output", out);
    if (run_mode == peft::mode::train) {
      // The hidden-dropout scales the forward drew (0 or 1/(1-p)), for the reference to apply.
      REQUIRE(tape.drop_emb.size() == out.size());
      add_matrix(w, "dropout.embeddings", tape.drop_emb);
      for (std::size_t l = 0; l < tape.layers.size(); ++l) {
        REQUIRE(tape.layers[l].drop_attn.size() == out.size());
        add_matrix(w, "dropout.attention." + std::to_string(l), tape.layers[l].drop_attn);
        add_matrix(w, "dropout.ffn." + std::to_string(l), tape.layers[l].drop_ffn);
      }
    }
  });
  for (auto* s : pol.stores())
    for (peft::index k = 0; k < s->num_blocks(); ++k) {
      add_matrix(w, "param." + s->block(k).name, s->value(k));
      add_matrix(w, "grad." + s->block(k).name, s->grad(k));
    }
  for (const auto& a : fused)
    for (const auto& blk : a->parameters().blocks())
      add_matrix(w, "frozen." + blk.name, a->parameters().value(a->parameters().find(blk.name)));
  w.set_metadata("label", c.label);
  w.set_metadata("method", c.method);
  w.set_metadata("config", config.dump());
  w.set_metadata("task", std::to_string(c.task));
  w.set_metadata("mode", run_mode == peft::mode::train ? "train" : "eval");
  w.set_metadata("regularization_weight", std::to_string(fusion_regularization_weight));
  w.save(path);
}

template <typename S>
void dump_precision(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  auto weights = peft::random_encoder_weights<S>(model_config(), 42, 0.06);
  peft::save_hf_encoder(dir + "/model", *weights);
  const peft::encoder<peft::bert, S> enc(weights);
  const peft::batch b = model_batch();
  peft::matrix<S> R = peft_test::random_matrix<S>(b.rows(), enc.hidden_size(), 5);
  for (peft::index i = 0; i < b.size(); ++i)
    for (peft::index t = 0; t < b.time(); ++t)
      if (!b.mask(i, t)) R.row(i * b.time() + t).setZero();
  peft::safetensors_writer in;
  add_ids(in, "ids", b.ids);
  add_ids(in, "mask", b.mask);
  add_ids(in, "segments", b.segments);
  add_matrix(in, "loss_weights", R);
  in.save(dir + "/inputs.safetensors");
  const auto all = cases();
  for (std::size_t k = 0; k < all.size(); ++k)
    dump_case<S>(all[k], k, enc, b, R, dir + "/case" + std::to_string(k) + ".safetensors");
}

}  // namespace

TEST_CASE("every PEFT method matches an independent PyTorch reference (output and gradients)",
          "[reference][torch]") {
  // PEFT_METHOD_REFERENCE_DIR keeps the dump in that folder (to rerun the script by hand);
  // by default it goes to a scratch folder removed when the test ends.
  const char* keep = std::getenv("PEFT_METHOD_REFERENCE_DIR");
  const std::string dir = keep && *keep ? std::string(keep) : peft_test::scratch_dir("method_reference");
  dump_precision<double>(dir + "/double");
  dump_precision<float>(dir + "/float");
  const std::string python = "/usr/bin/python3";
  if (!std::filesystem::exists(python))
    FAIL(python << " not found (Debian: python3 python3-torch): the methods are not checked against torch");
  const std::string cmd =
      python + " " + std::string(PEFT_SOURCE_DIR) + "/tests/reference/torch_methods.py " + dir;
  std::fflush(stdout);
  const int rc = std::system(cmd.c_str());
  INFO("command: " << cmd);
  REQUIRE(rc == 0);
}
