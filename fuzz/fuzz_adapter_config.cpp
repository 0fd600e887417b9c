// SPDX-License-Identifier: Apache-2.0
// Fuzz target: adapter checkpoints. The input is adapter_config.json; the harness puts it in a
// folder next to a valid adapter_model.safetensors for the method its "peft_type" names (saved
// once per process from a small default policy of that method, for a 2-layer hidden-16 BERT),
// then loads the folder the way a program that does not know the method does:
// peft::load_any_policy (a composition, whose member types the folder cannot name, as the one
// composed type the harness knows). Then, independently of peft_type, every method's
// from_config parses the same JSON. A policy that loads must save and load again (round trip).
// AdapterHub's adapter_config.json (seed adapterhub_seq_bn.json) goes through the same
// load_any_policy, which reads it with io/adapterhub.hpp.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/methods.hpp>
#include <peft/policies/adapter_fusion.hpp>
#include <peft/policies/bitfit.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/compose.hpp>
#include <peft/policies/full_finetune.hpp>
#include <peft/policies/ia3.hpp>
#include <peft/policies/lora.hpp>
#include <peft/policies/mask_tuning.hpp>
#include <peft/policies/modular_prompt.hpp>
#include <peft/policies/prefix_tuning.hpp>
#include <peft/policies/prompt_tuning.hpp>
#include <peft/policies/side_tuning.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <type_traits>

#include "fuzz_common.hpp"
#include "fuzz_models.hpp"

namespace {

namespace fs = std::filesystem;
using bottleneck = peft::bottleneck_adapter<float>;
using lora = peft::lora<float>;
using composed = peft::compose<peft::bottleneck_adapter<float>, peft::lora<float>>;
/// Calls `f(tag)` with `typename decltype(tag)::type` = every registered policy class (the
/// registry's list) and then one representative composition.
template <typename F>
void for_each_method(F&& f) {
  peft::detail::for_each_alternative<peft::policy_variant<float>>([&](auto t) {
    if constexpr (!std::is_same_v<typename decltype(t)::type, peft::no_policy<float>>) f(t);
  });
  f(peft::detail::type_tag<composed>{});
}

/// A small default policy of each method (the seeds' adapter_config.json files are theirs).
template <typename P>
P small_policy(const peft::encoder_shape& s);
template <>
bottleneck small_policy<bottleneck>(const peft::encoder_shape& s) {
  return bottleneck(s, peft::bottleneck_config::houlsby(2), 1);
}
template <>
lora small_policy<lora>(const peft::encoder_shape& s) {
  peft::lora_config c;
  c.r = 2;
  return lora(s, c, 1);
}
template <>
peft::prefix_tuning<float> small_policy<peft::prefix_tuning<float>>(const peft::encoder_shape& s) {
  peft::prefix_tuning_config c;
  c.num_virtual_tokens = 2;
  c.prefix_projection = false;
  return peft::prefix_tuning<float>(s, c, 1);
}
template <>
peft::mask_tuning<float> small_policy<peft::mask_tuning<float>>(const peft::encoder_shape& s) {
  return peft::mask_tuning<float>(s, peft::mask_tuning_config{}, 1);
}
template <>
peft::side_tuning<float> small_policy<peft::side_tuning<float>>(const peft::encoder_shape& s) {
  peft::side_tuning_config c;
  c.side_hidden = 4;
  return peft::side_tuning<float>(s, c, 1);
}
template <>
peft::full_finetune<float> small_policy<peft::full_finetune<float>>(const peft::encoder_shape& s) {
  return peft::full_finetune<float>(s);
}
template <>
peft::modular_prompt<float> small_policy<peft::modular_prompt<float>>(const peft::encoder_shape& s) {
  peft::modular_prompt_config c;
  c.num_modules = 2;
  c.num_prompt_tokens = 2;
  c.intrinsic_dim = 3;
  c.num_tasks = 2;
  return peft::modular_prompt<float>(s, c, 1);
}
template <>
peft::adapter_fusion<float> small_policy<peft::adapter_fusion<float>>(const peft::encoder_shape& s) {
  auto a = peft::bottleneck_config::pfeiffer(2);
  a.adapter_name = "a";
  auto b = a;
  b.adapter_name = "b";
  std::vector<std::shared_ptr<const bottleneck>> ads{std::make_shared<const bottleneck>(s, a, 1),
                                                     std::make_shared<const bottleneck>(s, b, 2)};
  return peft::adapter_fusion<float>(s, std::move(ads), peft::adapter_fusion_config{}, 1);
}
template <>
peft::ia3<float> small_policy<peft::ia3<float>>(const peft::encoder_shape& s) {
  return peft::ia3<float>(s, peft::ia3_config{}, 1);
}
template <>
peft::prompt_tuning<float> small_policy<peft::prompt_tuning<float>>(const peft::encoder_shape& s) {
  peft::prompt_tuning_config c;
  c.num_virtual_tokens = 2;
  return peft::prompt_tuning<float>(s, c, 1);
}
template <>
peft::bitfit<float> small_policy<peft::bitfit<float>>(const peft::encoder_shape& s) {
  return peft::bitfit<float>(s, peft::bitfit_config{}, 1);
}
template <>
composed small_policy<composed>(const peft::encoder_shape& s) {
  return composed(small_policy<bottleneck>(s), small_policy<lora>(s));
}

/// The adapter_model.safetensors bytes of each method's small policy, by peft_type.
const std::map<std::string, std::string>& weights_by_type() {
  static const std::map<std::string, std::string> bytes = [] {
    std::map<std::string, std::string> out;
    const auto& shape = peft_fuzz::small_shape();
    for_each_method([&](auto t) {
      using P = typename decltype(t)::type;
      const fs::path dir = peft_fuzz::fresh_scratch_dir(std::string("adapter_reference_") + P::peft_type);
      peft::save_policy(dir.string(), small_policy<P>(shape));
      std::ifstream in(dir / peft::adapter_weights_file, std::ios::binary);
      out[P::peft_type] = std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    });
    return out;
  }();
  return bytes;
}

/// A policy that loaded must save, and load again with the same tensors.
template <typename P>
void check_round_trip(const P& p, const peft::encoder_shape& shape) {
  const fs::path dir = peft_fuzz::fresh_scratch_dir("adapter_round_trip");
  try {
    peft::save_policy(dir.string(), p);
    const P q = peft::load_policy<P>(dir.string(), shape);
    const auto before = peft::policy_tensors(p), after = peft::policy_tensors(q);
    peft_fuzz::check(before.size() == after.size(),
                     std::string(P::peft_type) + " round trip changed the tensor set");
    for (const auto& kv : before) {
      const auto it = after.find(kv.first);
      peft_fuzz::check(it != after.end() && it->second.shape == kv.second.shape,
                       std::string(P::peft_type) + " round trip lost or reshaped tensor '" + kv.first + "'");
    }
  } catch (const peft::error& e) {
    throw peft_fuzz::check_failed(std::string("peft_fuzz: check failed: a loaded ") + P::peft_type +
                                  " policy does not survive save_policy + load_policy: " + e.what());
  }
}

/// Loads the checkpoint in @p dir as whatever method its config names.
void load_unknown(const std::string& dir, const peft::encoder_shape& shape) {
  const nlohmann::json cfg = peft::read_adapter_config(dir);
  const auto type = cfg.find("peft_type");
  if (type != cfg.end() && type->is_string() && type->get<std::string>() == composed::peft_type) {
    check_round_trip(peft::load_policy<composed>(dir, shape), shape);
    return;
  }
  const auto p = peft::load_any_policy<float>(dir, shape);
  p.visit([&](const auto& q) {
    if constexpr (!std::is_same_v<std::decay_t<decltype(q)>, peft::no_policy<float>>)
      check_round_trip(q, shape);
  });
}

}  // namespace

PEFT_FUZZ_TARGET(adapter_config) {
  const auto& shape = peft_fuzz::small_shape();
  const auto& weights = weights_by_type();
  const nlohmann::json cfg = peft_fuzz::parse_json_quietly(peft_fuzz::as_text(data, size));
  std::string type = "BOTTLENECK_ADAPTER";
  if (cfg.is_object() && cfg.contains("peft_type") && cfg["peft_type"].is_string() &&
      weights.count(cfg["peft_type"].get<std::string>()))
    type = cfg["peft_type"].get<std::string>();

  const fs::path dir = peft_fuzz::fresh_scratch_dir("adapter");
  peft_fuzz::write_bytes(dir / peft::adapter_config_file, data, size);
  peft_fuzz::write_bytes(dir / peft::adapter_weights_file, weights.at(type));
  // An AdapterHub config (a nested "config", no peft_type) reads its weights from adapter.safetensors:
  // the bottleneck weights (their keys are AdapterHub's, adapter name "default").
  peft_fuzz::write_bytes(dir / peft::adapterhub_weights_file, weights.at("BOTTLENECK_ADAPTER"));
  peft_fuzz::expect_only_peft_errors([&] { (void)peft::read_adapter_tensors(dir.string()); });
  peft_fuzz::expect_only_peft_errors([&] { load_unknown(dir.string(), shape); });

  // Every method's from_config on the same JSON (most reject it by peft_type at once).
  if (cfg.is_discarded()) return;
  for_each_method([&](auto t) {
    using P = typename decltype(t)::type;
    peft_fuzz::expect_only_peft_errors([&] {
      const P p = P::from_config(cfg, shape);
      check_round_trip(p, shape);
    });
  });
}
