// SPDX-License-Identifier: Apache-2.0
// The method registry and the contract every registered method keeps, checked method by method
// (one suite for all methods, the way Hugging Face PEFT's common tester runs): the registry
// lists every policy class; a fresh policy counts its parameters; its gradients match finite
// differences in double; training moves only its own parameters and leaves the frozen weights
// bitwise unchanged; save_policy + load_any_policy give back the same outputs.
#include <peft/methods.hpp>
#include <peft/serve/multi_task.hpp>
#include <peft/train/self_training.hpp>
#include <peft/train/trainer.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "reference_compare.hpp"
#include "small_model.hpp"
#include "test_common.hpp"

using peft::any_policy;
using peft_test::small_model;

namespace {

namespace fs = std::filesystem;

/// Options that fit each method to the small test encoder (2 layers, hidden 16, rows of 3-6
/// tokens) and move its hyper-parameters away from their defaults.
peft::method_options small_options(const std::string& method) {
  if (method == "houlsby") return {{"bottleneck_size", 4}, {"non_linearity", "gelu"}};
  if (method == "pfeiffer") return {{"reduction_factor", 4.0}};
  if (method == "list-adapter" || method == "list") return {{"bottleneck_size", 3}};
  if (method == "prefix") return {{"num_virtual_tokens", 3}, {"encoder_hidden_size", 8}};
  if (method == "mask") return {{"threshold", 0.02}};
  if (method == "side") return {{"side_hidden_size", 6}, {"alpha_init", 0.3}};
  if (method == "lora")
    return {{"r", 3}, {"lora_alpha", 12.0}, {"target_modules", {"query", "value", "ffn_in"}}};
  // Hugging Face's BERT form of (IA)3 but with attn_out scaled on its output: both sides, and
  // the feed-forward list a plain name cannot write (io/hf_peft.hpp).
  if (method == "ia3")
    return {{"target_modules", {"query", "value", "attn_out", "ffn_out"}}, {"feedforward_modules", {"ffn_out"}}};
  if (method == "prompt-tuning") return {{"num_virtual_tokens", 2}};
  if (method == "mpmp") return {{"num_modules", 2}, {"num_prompt_tokens", 2}, {"intrinsic_dim", 3}};
  return {};
}

/// A policy of @p method for @p shape: the registry's own builder, or, for a method built from
/// other policies (AdapterFusion), the way a user builds it. Fails the test for a registered
/// method neither covers: a new method must be buildable here.
template <typename S>
any_policy<S> build(const peft::method<S>& m, const peft::encoder_shape& shape, std::uint64_t seed) {
  if (m.make) return m.make(shape, seed, small_options(m.name));
  if (m.name == "fusion") {
    using adapter = peft::bottleneck_adapter<S>;
    auto a = peft::bottleneck_config::pfeiffer(4);
    a.adapter_name = "a";
    auto b = a;
    b.adapter_name = "b";
    // Trained adapters: non-zero up-projections, so that the fused branches differ.
    std::vector<std::shared_ptr<const adapter>> ads;
    for (const auto& c : {a, b}) {
      adapter x(shape, c, seed + ads.size() + 1);
      peft::rng g(seed + 10 + ads.size());
      for (peft::index i = 0; i < x.parameters().values().size(); ++i)
        x.parameters().values()[i] += static_cast<S>(g.normal() * 0.3);
      ads.push_back(std::make_shared<const adapter>(std::move(x)));
    }
    return peft::adapter_fusion<S>(shape, std::move(ads), peft::adapter_fusion_config{}, seed);
  }
  FAIL("method '" << m.name << "' has no builder: give it `make` in the registry or one here");
  return {};
}

/// Batch @p b as policy @p p reads it: with its virtual tokens in front (prompt tuning).
template <typename S>
peft::batch input_for(const any_policy<S>& p, const peft::batch& b) {
  return p.visit([&](const auto& q) {
    if constexpr (peft::has_on_input_embeddings_v<std::decay_t<decltype(q)>>) {
      return peft::with_virtual_tokens(b, q.num_virtual_tokens());
    } else {
      return b;
    }
  });
}

/// Adds N(0, scale) to every trainable value, so that no path is idle (LoRA's B and the
/// adapters' up-projections start at zero).
template <typename S>
void perturb(any_policy<S>& p, double scale, std::uint64_t seed) {
  peft::rng g(seed);
  for (auto* st : p.stores())
    for (peft::index i = 0; i < st->values().size(); ++i)
      st->values()[i] += static_cast<S>(g.normal() * scale);
}

/// Every trainable value of @p p, in store order.
template <typename S>
std::vector<S> all_values(any_policy<S>& p) {
  std::vector<S> out;
  for (auto* st : p.stores())
    out.insert(out.end(), st->values().data(), st->values().data() + st->values().size());
  return out;
}

/// The peft_type of every policy class declared under include/peft/policies.
std::set<std::string> declared_peft_types() {
  std::set<std::string> out;
  const std::regex decl(R"re(static\s+constexpr\s+const\s+char\s*\*\s*peft_type\s*=\s*"([A-Z_0-9]+)")re");
  for (const auto& e : fs::directory_iterator(fs::path(PEFT_SOURCE_DIR) / "include" / "peft" / "policies")) {
    const std::string text = peft_test::read_text(e.path().string());
    for (auto it = std::sregex_iterator(text.begin(), text.end(), decl); it != std::sregex_iterator(); ++it)
      out.insert((*it)[1].str());
  }
  return out;
}

}  // namespace

TEST_CASE("the registry lists every policy class, once, with a checkpoint type of its own",
          "[methods][registry]") {
  const auto& table = peft::methods<float>();
  std::set<std::string> names, types;
  for (const auto& m : table) {
    INFO("method " << m.name);
    CHECK(names.insert(m.name).second);  // unique names
    CHECK(m.default_lr > 0);
    CHECK(!m.summary.empty());
    REQUIRE(m.policy_index < std::variant_size_v<peft::policy_variant<float>>);
    if (!m.peft_type.empty()) types.insert(m.peft_type);
  }
  // Every class with a peft_type in policies/ is registered; compose is a combinator of them.
  const auto declared = declared_peft_types();
  REQUIRE(declared.size() >= 8);  // the scan found the headers
  for (const auto& t : declared) {
    INFO("peft_type " << t << " is declared in include/peft/policies but no registered method has it");
    if (t != "COMPOSE") CHECK(types.count(t) == 1);
  }
  // Every alternative of the variant has a row, and each row's peft_type is its class's.
  std::set<std::size_t> covered;
  for (const auto& m : table) covered.insert(m.policy_index);
  CHECK(covered.size() == std::variant_size_v<peft::policy_variant<float>>);
  small_model<peft::bert, float> sm("bert");
  for (const auto& m : table) {
    if (!m.make) continue;
    const auto p = m.make(sm.enc.shape(), 1, small_options(m.name));
    INFO("method " << m.name);
    CHECK(p.variant().index() == m.policy_index);
    CHECK(std::string(p.peft_type()) == m.peft_type);
  }
}

TEST_CASE("unknown methods, options and checkpoint types are rejected, naming what was expected",
          "[methods][errors]") {
  small_model<peft::bert, float> sm("bert");
  const auto shape = sm.enc.shape();
  CHECK_THROWS_WITH(peft::find_method("loraa"),
                    Catch::Contains("unknown method 'loraa'") && Catch::Contains("lora"));
  CHECK_THROWS_WITH(peft::make_policy("fusion", shape),
                    Catch::Contains("method 'fusion' is not built from a config"));
  CHECK_THROWS_WITH(peft::make_policy("lora", shape, 0, {{"rank", 4}}),
                    Catch::Contains("method 'lora' has no option 'rank'") && Catch::Contains("lora_alpha"));
  CHECK_THROWS_WITH(peft::make_policy("lora", shape, 0, {{"hidden_size", 4}}),
                    Catch::Contains("no option 'hidden_size'"));
  CHECK_THROWS_WITH(peft::make_policy("lora", shape, 0, {{"r", -2}}), Catch::Contains("r"));
  CHECK_THROWS_WITH(peft::make_policy("full", shape, 0, {{"r", 2}}),
                    Catch::Contains("method 'full' takes no options"));
  CHECK_THROWS_WITH(peft::make_policy("lora", shape, 0, nlohmann::json::array({1})),
                    Catch::Contains("options expected a JSON object"));

  const std::string dir = peft_test::scratch_dir("methods_bad_type");
  peft::save_policy(dir, peft::make_policy("lora", shape, 1, small_options("lora")));
  auto cfg = peft::read_adapter_config(dir);
  cfg["peft_type"] = "ADALORA";
  std::ofstream(fs::path(dir) / peft::adapter_config_file) << cfg.dump();
  CHECK_THROWS_WITH(peft::load_any_policy(dir, shape), Catch::Contains("field 'peft_type' expected one of") &&
                                                           Catch::Contains("LORA") &&
                                                           Catch::Contains("got \"ADALORA\""));
  cfg["peft_type"] = "COMPOSE";
  std::ofstream(fs::path(dir) / peft::adapter_config_file) << cfg.dump();
  CHECK_THROWS_WITH(peft::load_any_policy(dir, shape), Catch::Contains("load_policy<compose<...>>"));
  cfg.erase("peft_type");
  std::ofstream(fs::path(dir) / peft::adapter_config_file) << cfg.dump();
  CHECK_THROWS_WITH(peft::load_any_policy(dir, shape),
                    Catch::Contains("field 'peft_type' expected a string"));
  CHECK_THROWS_WITH(peft::save_policy(dir, any_policy<float>()), Catch::Contains("got the head alone"));
  fs::remove_all(dir);
}

TEST_CASE("options reach the policy: LoRA's rank, scale and targets from make_policy", "[methods][options]") {
  small_model<peft::bert, float> sm("bert");
  auto p = peft::make_policy("lora", sm.enc.shape(), 1,
                             {{"r", 5}, {"lora_alpha", 20.0}, {"target_modules", {"key"}}});
  const auto* l = p.get_if<peft::lora<float>>();
  REQUIRE(l != nullptr);
  CHECK(l->config().r == 5);
  CHECK(l->config().lora_alpha == 20.0);
  REQUIRE(l->config().target_modules.size() == 1);
  CHECK(l->config().target_modules[0] == peft::linear_id::key);
  // Two layers, key only, A [5 x 16] + B [16 x 5].
  CHECK(p.num_parameters() == 2 * (5 * 16 + 16 * 5));
}

namespace {

/// The gradient contract of every registered method inside encoder @p enc on batch @p b;
/// @p tol bounds the absolute error of the central differences (step 1e-6).
template <typename Arch>
void check_method_gradients(const peft::encoder<Arch, double>& enc, const peft::batch& b, double tol = 1e-7) {
  for (const auto& method : peft::methods<double>()) {
    INFO("method " << method.name);
    auto p = build(method, enc.shape(), 5);
    const auto stores = p.stores();
    peft::index total = 0;
    for (auto* st : stores) total += st->size();
    CHECK(p.num_parameters() == total);
    if (!p.has_policy()) {
      CHECK(total == 0);
      continue;
    }
    REQUIRE(total > 0);
    perturb(p, 0.2, 9);
    p.visit([&](auto& q) {
      using P = std::decay_t<decltype(q)>;
      if constexpr (!std::is_same_v<P, peft::no_policy<double>>) {
        for (std::size_t k = 0; k < stores.size(); ++k) {
          INFO("store " << k << " of " << stores.size());
          if constexpr (peft::has_on_input_embeddings_v<P>) {
            // The policy supplies input embeddings: checked from the ids (there is no
            // embedding output to start from that the policy does not also change).
            auto r = peft_test::check_policy_from_ids(enc, input_for(p, b), q, stores[k]->values(),
                                                      stores[k]->grads(), 80);
            INFO("params max abs err " << r.params.max_abs_err);
            CHECK(r.max_param_grad > 1e-6);
            CHECK(r.params.max_abs_err < tol);
            continue;
          }
          auto r = peft_test::check_policy_in_encoder(enc, b, q, stores[k]->values(), stores[k]->grads(), 80);
          INFO("params max abs err " << r.params.max_abs_err << ", input " << r.input.max_abs_err);
          // A side network reads the frozen embedding output, so the encoder returns the input
          // gradient of the encoder path only (nothing below the embeddings is trained): the
          // finite differences of the input see the side path too and are not comparable.
          if constexpr (!peft::has_on_encoder_output_v<P>) CHECK(r.input.max_abs_err < tol);
          CHECK(r.max_input_grad > 1e-3);
          CHECK(r.max_param_grad > 1e-6);
          // Mask-tuning's score gradient is straight-through, not the derivative of the
          // thresholded mask: test_mask_tuning checks it against the relaxed mask instead.
          if (method.name != "mask") CHECK(r.params.max_abs_err < tol);
        }
      }
    });
  }
}

}  // namespace

TEST_CASE("contract: parameter count, and gradients against finite differences in double",
          "[methods][grad]") {
  small_model<peft::bert, double> m("bert");
  check_method_gradients(m.enc, m.b);
}

TEST_CASE("contract: gradients hold in every encoder family (projected embeddings, shared layers, relative bias)",
          "[methods][grad][families]") {
  // The PyTorch-checked reference folders (test_parity_torch), in double.
  auto family = [](const std::string& name, auto arch) {
    using Arch = decltype(arch);
    const std::string dir = peft_test::reference_dir() + "/families/" + name;
    if (!fs::exists(dir + "/config.json")) {
      FAIL_CHECK("reference_families output missing for " << name);
      return;
    }
    INFO("family " << name);
    const peft::encoder<Arch, double> enc(peft::load_hf_encoder<double>(dir));
    // Wider and deeper than the small BERT, with larger activations: the truncation error
    // of the central differences reaches ~1.3e-7 (DistilBERT's LoRA), so the bound is 5e-7.
    check_method_gradients(enc, peft_test::reference_batch(dir), 5e-7);
  };
  SECTION("ELECTRA") { family("electra", peft::bert{}); }
  SECTION("ALBERT") { family("albert", peft::bert{}); }
  SECTION("MPNet") { family("mpnet", peft::roberta{}); }
  SECTION("DistilBERT") { family("distilbert", peft::bert{}); }
}

TEST_CASE("contract: fit moves every trainable value's store and leaves the frozen weights bitwise unchanged",
          "[methods][frozen]") {
  small_model<peft::bert, float> m("bert");
  const peft::encoder_weights<float> before = m.enc.weights();
  const auto train = peft_test::toy_examples(24, 3);
  for (const auto& method : peft::methods<float>()) {
    INFO("method " << method.name);
    auto p = build(method, m.enc.shape(), 7);
    perturb(p, 0.05, 2);
    std::vector<std::vector<float>> start;
    for (auto* st : p.stores())
      start.emplace_back(st->values().data(), st->values().data() + st->values().size());
    peft::classification_head<float> head(m.enc.hidden_size(), 3, peft::pool_kind::cls, 0.0, 1);
    peft::task_model model(m.enc, p, head);
    peft::fit_options o;
    o.epochs = 2;
    o.batch_size = 8;
    o.lr = std::max(method.default_lr, 1e-3);  // large enough to move every value visibly
    o.show_progress = false;
    const auto r = peft::fit(model, train, {}, o);
    CHECK(std::isfinite(r.final_loss));
    CHECK(peft_test::same_weights(before, m.enc.weights()));
    const auto stores = p.stores();
    REQUIRE(stores.size() == start.size());
    for (std::size_t k = 0; k < stores.size(); ++k) {
      INFO("store " << k);
      double moved = 0;
      for (peft::index i = 0; i < stores[k]->values().size(); ++i)
        moved =
            std::max(moved, double(std::abs(stores[k]->values()[i] - start[k][static_cast<std::size_t>(i)])));
      CHECK(moved > 0);
    }
  }
}

TEST_CASE("contract: save_policy + load_any_policy round-trips every method to the same outputs",
          "[methods][io]") {
  small_model<peft::bert, float> m("bert");
  for (const auto& method : peft::methods<float>()) {
    INFO("method " << method.name);
    auto p = build(method, m.enc.shape(), 11);
    if (!p.has_policy()) continue;
    perturb(p, 0.1, 4);
    const std::string dir = peft_test::scratch_dir("methods_round_trip_" + method.name);
    peft::save_policy(dir, p);
    const auto q = peft::load_any_policy(dir, m.enc.shape());
    CHECK(std::string(q.peft_type()) == method.peft_type);
    CHECK(q.variant().index() == p.variant().index());
    // The saved form is what the method saves, not always its training form: a prefix trained
    // through its MLP is saved (as Hugging Face PEFT saves it) and loaded as the prefix itself.
    const auto* prefix = p.get_if<peft::prefix_tuning<float>>();
    if (prefix && !prefix->ejected()) {
      CHECK(q.get_if<peft::prefix_tuning<float>>()->ejected());
      CHECK(q.num_parameters() < p.num_parameters());
    } else {
      CHECK(q.num_parameters() == p.num_parameters());
    }
    const peft::batch in = input_for(p, m.b);
    const auto out_p = p.visit([&](const auto& x) { return m.enc.forward(in, x); });
    const auto out_q = q.visit([&](const auto& x) { return m.enc.forward(in, x); });
    CHECK((out_p - out_q).cwiseAbs().maxCoeff() == 0.0f);
    // The method changes the encoder's output (a policy that does nothing would pass the rest;
    // a prompt's positions are compared on the text after it).
    const peft::index extra = in.time() - m.b.time();
    peft::matrix<float> text(m.b.rows(), out_p.cols());
    for (peft::index i = 0; i < m.b.size(); ++i)
      text.middleRows(i * m.b.time(), m.b.time()) = out_p.middleRows(i * in.time() + extra, m.b.time());
    CHECK((text - m.enc.forward(m.b)).cwiseAbs().maxCoeff() > 1e-4f);
    fs::remove_all(dir);
  }
}

TEST_CASE("an any_policy serves like its class: multi_task_server gives the same logits",
          "[methods][serve]") {
  small_model<peft::bert, float> m("bert");
  auto p = peft::make_policy("lora", m.enc.shape(), 3, small_options("lora"));
  perturb(p, 0.1, 5);
  peft::classification_head<float> head(m.enc.hidden_size(), 3, peft::pool_kind::cls, 0.0, 2);
  const auto rows = peft_test::toy_examples(5, 8);
  std::vector<std::size_t> picks{0, 1, 2, 3, 4};
  auto lora_copy = *p.get_if<peft::lora<float>>();
  auto head_copy = head;
  const auto direct =
      peft::task_model(m.enc, lora_copy, head_copy).predict(peft::make_task_batch(rows, picks, 0));
  peft::multi_task_server<peft::bert, float> server(m.enc, 0);
  server.add_task("t", p, head);
  CHECK((server.task_logits("t", rows) - direct).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("LiST self-training over an any_policy gives the concrete class's students, bit for bit",
          "[methods][list]") {
  small_model<peft::bert, float> m("bert");
  const auto shape = m.enc.shape();
  using adapter = peft::bottleneck_adapter<float>;
  using head = peft::classification_head<float>;
  auto make_adapter = [&](std::uint64_t s) { return adapter(shape, peft::bottleneck_config::list(4), s); };
  auto make_head = [&](std::uint64_t s) { return head(m.enc.hidden_size(), 3, peft::pool_kind::cls, 0.1, s); };
  peft::list_options o;
  o.teacher_epochs = 2;
  o.teacher_lr = 1e-2;
  o.sessions = 1;
  o.student_steps = 4;
  o.finetune_epochs = 1;
  o.student_lr = 1e-2;
  o.unlabelled_batch = 4;
  o.meta_batch = 2;
  o.show_progress = false;
  const auto labelled = peft_test::toy_examples(9, 1);
  auto pool = peft_test::toy_examples(12, 2);
  for (auto& e : pool) e.label = -1;
  const auto test = peft_test::toy_examples(6, 3);

  peft::self_trainer<peft::bert, float, adapter, head> direct(m.enc, make_adapter, make_head, o);
  direct.run(labelled, pool, test);
  peft::self_trainer<peft::bert, float, any_policy<float>, head> erased(
      m.enc, [&](std::uint64_t s) { return any_policy<float>(make_adapter(s)); }, make_head, o);
  erased.run(labelled, pool, test);
  const auto* student = erased.student_policy().get_if<adapter>();
  REQUIRE(student != nullptr);
  CHECK(student->parameters().values() == direct.student_policy().parameters().values());
  CHECK(erased.student_head().parameters().values() == direct.student_head().parameters().values());
}
