// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_METHODS_HPP
#define PEFT_METHODS_HPP

/// @file methods.hpp
/// The method registry, `any_policy` and `load_any_policy`.
///
/// Every PEFT method peft knows is listed here once: its command-line name, the policy class
/// that implements it, the `peft_type` its checkpoints carry, the learning rate it defaults
/// to and how a fresh policy is built. Programs, fuzzers, the serving layer and checkpoint
/// loading read this list; adding a method is one alternative in `policy_variant` plus one
/// row in `methods()` (and the method's own header). A test scans `policies/` and fails when
/// a class with a `peft_type` is missing here.
///
/// `any_policy<Scalar>` holds a policy of any registered class by value (copyable, movable).
/// It is a closed set, a `std::variant` over the registered classes, so `visit` reaches the
/// compile-time path of the policy it holds: the encoder runs the same code, bit for bit, as
/// for the concrete class. `task_model`, `fit`, `evaluate`, `predict_classes` and
/// `multi_task_server::add_task` accept it. An `any_policy` has no hooks of its own: the
/// encoder refuses it at compile time (visit it instead).
///
/// `load_any_policy(dir, shape)` reads the folder's `adapter_config.json` and loads the class
/// its `peft_type` names. A `compose<...>` checkpoint lists member types the registry cannot
/// know in general; it is refused with a message saying to name them (`load_policy<compose<...>>`).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/encoder_shape.hpp"
#include "core/parameter.hpp"
#include "error.hpp"
#include "io/adapter_checkpoint.hpp"
#include "io/adapterhub.hpp"
#include "policies/adapter_fusion.hpp"
#include "policies/bitfit.hpp"
#include "policies/bottleneck_adapter.hpp"
#include "policies/full_finetune.hpp"
#include "policies/ia3.hpp"
#include "policies/lora.hpp"
#include "policies/mask_tuning.hpp"
#include "policies/modular_prompt.hpp"
#include "policies/policy_config.hpp"
#include "policies/policy_tensors.hpp"
#include "policies/policy_traits.hpp"
#include "policies/prefix_tuning.hpp"
#include "policies/prompt_tuning.hpp"
#include "policies/side_tuning.hpp"

namespace peft {

/// Every registered policy class for scalar @p S; `no_policy` (the head alone) comes first.
/// Adding a method: its class goes here, its row into `methods()`.
template <typename S>
using policy_variant =
    std::variant<no_policy<S>, full_finetune<S>, bottleneck_adapter<S>, prefix_tuning<S>, mask_tuning<S>,
                 side_tuning<S>, lora<S>, adapter_fusion<S>, modular_prompt<S>, ia3<S>,
                 prompt_tuning<S>, bitfit<S>>;

namespace detail {
template <typename P, typename V>
struct is_alternative;
template <typename P, typename... T>
struct is_alternative<P, std::variant<T...>> : std::bool_constant<(std::is_same_v<P, T> || ...)> {};

/// `P::peft_type`, or "" for `no_policy` (nothing to save).
template <typename P, typename = void>
struct peft_type_of {
  static constexpr const char* value = "";
};
template <typename P>
struct peft_type_of<P, std::void_t<decltype(P::peft_type)>> {
  static constexpr const char* value = P::peft_type;
};

/// A type carried as a value.
template <typename T>
struct type_tag {
  using type = T;
};
/// Calls `f(type_tag<T>{})` for every alternative T of variant V, in order.
template <typename V, typename F, std::size_t... I>
void for_each_alternative(F&& f, std::index_sequence<I...>) {
  (f(type_tag<std::variant_alternative_t<I, V>>{}), ...);
}
template <typename V, typename F>
void for_each_alternative(F&& f) {
  for_each_alternative<V>(std::forward<F>(f), std::make_index_sequence<std::variant_size_v<V>>{});
}

/// Index of alternative P in variant V (V's size when P is not one).
template <typename P, typename V, std::size_t I = 0>
constexpr std::size_t variant_index() {
  if constexpr (I == std::variant_size_v<V>) {
    return I;
  } else if constexpr (std::is_same_v<std::variant_alternative_t<I, V>, P>) {
    return I;
  } else {
    return variant_index<P, V, I + 1>();
  }
}
}  // namespace detail

/// True when @p P is one of the registered policy classes for its scalar.
template <typename P>
inline constexpr bool is_registered_policy_v =
    detail::is_alternative<P, policy_variant<typename P::scalar_type>>::value;

/// A policy of any registered class, held by value. Default-constructed it holds
/// `no_policy` (the head alone).
template <typename Scalar>
class any_policy {
public:
  using scalar_type = Scalar;
  using variant_type = policy_variant<Scalar>;

  any_policy() = default;
  /// Holds @p p (any registered class for this scalar).
  template <typename P,
            typename = std::enable_if_t<detail::is_alternative<std::decay_t<P>, variant_type>::value>>
  any_policy(P&& p) : m_v(std::forward<P>(p)) {}  // NOLINT: implicit on purpose, like std::variant

  /// The held policy's `peft_type` ("" for the head alone).
  const char* peft_type() const {
    return std::visit([](const auto& p) { return detail::peft_type_of<std::decay_t<decltype(p)>>::value; },
                      m_v);
  }
  /// False for the head alone (`no_policy`).
  bool has_policy() const noexcept { return m_v.index() != 0; }

  /// Trainable parameters of the held policy.
  index num_parameters() const {
    return std::visit(
        [](const auto& p) -> index {
          if constexpr (detail::has_num_parameters<std::decay_t<decltype(p)>>::value) {
            return p.num_parameters();
          } else {
            return 0;
          }
        },
        m_v);
  }

  /// Every trainable store of the held policy (none for the head alone).
  std::vector<parameter_store<Scalar>*> stores() {
    return std::visit(
        [](auto& p) {
          using P = std::decay_t<decltype(p)>;
          std::vector<parameter_store<Scalar>*> out;
          if constexpr (detail::has_parameter_stores<P>::value) {
            out = p.stores();
          } else if constexpr (detail::has_parameter_store<P>::value) {
            out.push_back(&p.parameters());
          }
          return out;
        },
        m_v);
  }

  /// The held policy's checkpoint config.
  /// @throws invalid_argument for the head alone (it has no config)
  nlohmann::json config_json() const {
    return std::visit(
        [](const auto& p) -> nlohmann::json {
          using P = std::decay_t<decltype(p)>;
          if constexpr (std::is_same_v<P, no_policy<Scalar>>) {
            throw invalid_argument(
                "any_policy::config_json: expected a policy, got the head alone (no_policy)");
          } else {
            return p.config_json();
          }
        },
        m_v);
  }

  /// `f(policy)` with the held policy as its concrete class.
  template <typename F>
  decltype(auto) visit(F&& f) {
    return std::visit(std::forward<F>(f), m_v);
  }
  template <typename F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), m_v);
  }

  /// The held policy if it is a @p P, else null.
  template <typename P>
  P* get_if() noexcept {
    return std::get_if<P>(&m_v);
  }
  template <typename P>
  const P* get_if() const noexcept {
    return std::get_if<P>(&m_v);
  }

  const variant_type& variant() const noexcept { return m_v; }
  variant_type& variant() noexcept { return m_v; }

private:
  variant_type m_v;
};

/// Options of a fresh policy: fields of the method's `adapter_config.json`, under the names
/// its checkpoints use (`{"r": 16, "lora_alpha": 32, "target_modules": ["query", "value"]}`).
using method_options = nlohmann::json;

/// One registered method.
template <typename Scalar>
struct method {
  using make_fn = any_policy<Scalar> (*)(const encoder_shape& shape, std::uint64_t seed,
                                         const method_options& options);
  std::string name;              ///< command-line name ("lora", "houlsby", ...)
  std::string peft_type;         ///< the `peft_type` of its checkpoints ("" for the head alone)
  std::size_t policy_index = 0;  ///< its class: alternative `policy_index` of `policy_variant`
  double default_lr = 1e-3;      ///< learning rate of the policy's parameters by default
  std::string summary;           ///< one line for --help
  /// Builds a fresh policy: the method's default config with `options` applied; null for a
  /// method that is only loaded or built from other policies (AdapterFusion fuses trained
  /// adapters).
  make_fn make = nullptr;
};

namespace detail {
template <typename P, typename Scalar>
method<Scalar> method_row(std::string name, double lr, std::string summary,
                          typename method<Scalar>::make_fn make) {
  method<Scalar> m;
  m.name = std::move(name);
  m.peft_type = peft_type_of<P>::value;
  m.policy_index = variant_index<P, policy_variant<Scalar>>();
  m.default_lr = lr;
  m.summary = std::move(summary);
  m.make = make;
  return m;
}

template <typename P, typename = void>
struct has_config : std::false_type {};
template <typename P>
struct has_config<P, std::void_t<decltype(std::declval<const P&>().config())>> : std::true_type {};

/// @p fresh (a policy with the method's default config) rebuilt with @p options applied to its
/// config: the options overwrite fields of `fresh.config_json()`, `P::from_config` checks the
/// result (naming a bad field), and a policy of that config is initialised with @p seed.
/// The encoder-shape fields and `peft_type` are not options.
template <typename P>
P with_options(P fresh, const encoder_shape& shape, std::uint64_t seed, const method_options& options,
               const std::string& method) {
  if (options.is_null() || (options.is_object() && options.empty())) return fresh;
  const std::string where = "make_policy: method '" + method + "'";
  if (!options.is_object())
    throw invalid_argument(where + " options expected a JSON object, got " +
                           std::string(options.type_name()));
  if constexpr (!has_config<P>::value) {
    throw invalid_argument(where + " takes no options, got " + options.dump().substr(0, 80));
  } else {
    nlohmann::json j = fresh.config_json();
    nlohmann::json fixed;
    write_shape_fields(fixed, shape);
    fixed["peft_type"] = P::peft_type;
    std::string known;
    for (const auto& kv : j.items())
      if (!fixed.contains(kv.key())) known += (known.empty() ? "" : ", ") + kv.key();
    for (const auto& kv : options.items()) {
      if (!j.contains(kv.key()) || fixed.contains(kv.key()))
        throw invalid_argument(where + " has no option '" + kv.key() + "' (options: " + known + ")");
      j[kv.key()] = kv.value();
    }
    const P shaped = P::from_config(j, shape);
    return P(shape, shaped.config(), seed);
  }
}
}  // namespace detail

/// The registry: every method, in the order `--help` lists them.
template <typename Scalar = float>
const std::vector<method<Scalar>>& methods() {
  using S = Scalar;
  using A = any_policy<S>;
  using O = method_options;
  using detail::method_row;
  using detail::with_options;
  static const std::vector<method<S>> table = {
      method_row<no_policy<S>, S>("head", 3e-2, "the task head alone over the frozen encoder",
                                  [](const encoder_shape&, std::uint64_t, const O& o) {
                                    return A(with_options(no_policy<S>(), {}, 0, o, "head"));
                                  }),
      method_row<full_finetune<S>, S>("full", 1e-4, "every encoder weight (the baseline PEFT avoids)",
                                      [](const encoder_shape& s, std::uint64_t seed, const O& o) {
                                        return A(with_options(full_finetune<S>(s), s, seed, o, "full"));
                                      }),
      method_row<bottleneck_adapter<S>, S>(
          "houlsby", 1e-3, "Houlsby adapters after attention and FFN (m = 64)",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(bottleneck_adapter<S>(s, bottleneck_config::houlsby(), seed), s, seed, o,
                                  "houlsby"));
          }),
      method_row<bottleneck_adapter<S>, S>(
          "pfeiffer", 1e-3, "Pfeiffer adapter after the FFN (reduction 16)",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(bottleneck_adapter<S>(s, bottleneck_config::pfeiffer(), seed), s, seed, o,
                                  "pfeiffer"));
          }),
      method_row<bottleneck_adapter<S>, S>(
          "list-adapter", 1e-3, "LiST's adapters, trained supervised (m = 128)",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(bottleneck_adapter<S>(s, bottleneck_config::list(), seed), s, seed, o,
                                  "list-adapter"));
          }),
      method_row<bottleneck_adapter<S>, S>(
          "list", 5e-6, "LiST self-training: LiST adapters, teacher and student (needs unlabelled data)",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(
                with_options(bottleneck_adapter<S>(s, bottleneck_config::list(), seed), s, seed, o, "list"));
          }),
      method_row<prefix_tuning<S>, S>(
          "prefix", 3e-3, "prefix-tuning: K/V prefixes in every layer (MLP-reparametrised, 10 tokens)",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(prefix_tuning<S>(s, prefix_tuning_config{}, seed), s, seed, o, "prefix"));
          }),
      method_row<mask_tuning<S>, S>("mask", 1e-2, "mask-tuning: learned binary masks over frozen weights",
                                    [](const encoder_shape& s, std::uint64_t seed, const O& o) {
                                      return A(with_options(mask_tuning<S>(s, mask_tuning_config{}, seed), s,
                                                            seed, o, "mask"));
                                    }),
      method_row<side_tuning<S>, S>(
          "side", 1e-3, "side-tuning: a small side network blended with the encoder",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(side_tuning<S>(s, side_tuning_config{}, seed), s, seed, o, "side"));
          }),
      method_row<lora<S>, S>("lora", 1e-3, "LoRA on query and value (r = 8, alpha = 8)",
                             [](const encoder_shape& s, std::uint64_t seed, const O& o) {
                               return A(with_options(lora<S>(s, lora_config{}, seed), s, seed, o, "lora"));
                             }),
      method_row<ia3<S>, S>("ia3", 3e-3, "(IA)3: learned scales of keys, values and the FFN activation",
                            [](const encoder_shape& s, std::uint64_t seed, const O& o) {
                              return A(with_options(ia3<S>(s, ia3_config{}, seed), s, seed, o, "ia3"));
                            }),
      method_row<prompt_tuning<S>, S>(
          "prompt-tuning", 3e-2, "prompt tuning: a soft prompt of 20 virtual tokens before the input",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(prompt_tuning<S>(s, prompt_tuning_config{}, seed), s, seed, o, "prompt-tuning"));
          }),
      method_row<bitfit<S>, S>("bitfit", 1e-3, "BitFit: every bias term (linears and LayerNorms) trains",
                               [](const encoder_shape& s, std::uint64_t seed, const O& o) {
                                 return A(with_options(bitfit<S>(s, bitfit_config{}, seed), s, seed, o, "bitfit"));
                               }),
      method_row<adapter_fusion<S>, S>(
          "fusion", 5e-5, "AdapterFusion over trained adapters (built from them, or loaded)", nullptr),
      method_row<modular_prompt<S>, S>(
          "mpmp", 3e-3, "MPMP modular prompts with a router",
          [](const encoder_shape& s, std::uint64_t seed, const O& o) {
            return A(with_options(modular_prompt<S>(s, modular_prompt_config{}, seed), s, seed, o, "mpmp"));
          }),
  };
  return table;
}

/// The registered method called @p name.
/// @throws invalid_argument naming the method and listing the known ones
template <typename Scalar = float>
const method<Scalar>& find_method(const std::string& name) {
  for (const auto& m : methods<Scalar>())
    if (m.name == name) return m;
  std::string known;
  for (const auto& m : methods<Scalar>()) known += (known.empty() ? "" : ", ") + m.name;
  throw invalid_argument("unknown method '" + name + "' (expected one of " + known + ")");
}

/// The learning rate method @p name defaults to. @throws invalid_argument for an unknown name
inline double default_lr(const std::string& name) { return find_method<float>(name).default_lr; }

/// A fresh policy of method @p name: its default config with @p options applied (fields of
/// its adapter_config.json, e.g. `{"r": 16}` for LoRA), initialised from @p seed.
/// @throws invalid_argument for an unknown name, a method that cannot be built fresh, or an
///   unknown or invalid option (naming it)
template <typename Scalar = float>
any_policy<Scalar> make_policy(const std::string& name, const encoder_shape& shape, std::uint64_t seed = 0,
                               const method_options& options = {}) {
  const auto& m = find_method<Scalar>(name);
  if (!m.make)
    throw invalid_argument("make_policy: method '" + name +
                           "' is not built from a config (AdapterFusion fuses trained adapters: build "
                           "adapter_fusion from them, or load a saved fusion with load_any_policy)");
  return m.make(shape, seed, options);
}

/// The `peft_type`s `load_any_policy` reads, comma-separated.
template <typename Scalar = float>
std::string known_peft_types() {
  std::string out;
  detail::for_each_alternative<policy_variant<Scalar>>([&](auto tag) {
    const std::string t = detail::peft_type_of<typename decltype(tag)::type>::value;
    if (!t.empty()) out += (out.empty() ? "" : ", ") + t;
  });
  return out;
}

/// Loads the policy saved in @p dir (by `save_policy`, or by another tool in the same layout)
/// as whatever registered class its `peft_type` names, or an AdapterHub bottleneck adapter or
/// AdapterFusion folder (io/adapterhub.hpp).
/// @throws io_error for a missing or malformed folder; invalid_argument for a `peft_type`
///   that is not registered (naming it and the known ones) and everything `load_policy` throws
template <typename Scalar = float>
any_policy<Scalar> load_any_policy(const std::string& dir, const encoder_shape& shape) {
  // AdapterHub's folders (io/adapterhub.hpp): a fusion has no adapter_config.json, an adapter
  // has one with a nested "config" and no peft_type.
  if (is_adapterhub_fusion_folder(dir) &&
      !std::filesystem::exists(std::filesystem::path(dir) / adapter_config_file))
    return any_policy<Scalar>(load_adapterhub_fusion<Scalar>(dir, shape));
  const nlohmann::json cfg = read_adapter_config(dir);
  if (is_adapterhub_config(cfg)) return any_policy<Scalar>(load_adapterhub_adapter<Scalar>(dir, shape));
  const std::string where =
      "load_any_policy: '" + (std::filesystem::path(dir) / adapter_config_file).string() + "'";
  const auto it = cfg.find("peft_type");
  if (it == cfg.end() || !it->is_string())
    throw invalid_argument(where + " field 'peft_type' expected a string (one of " +
                           known_peft_types<Scalar>() + "), got " +
                           (it == cfg.end() ? std::string("nothing") : it->dump()));
  const std::string type = it->get<std::string>();
  std::optional<any_policy<Scalar>> out;
  detail::for_each_alternative<policy_variant<Scalar>>([&](auto tag) {
    using P = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<P, no_policy<Scalar>>)
      if (!out && type == P::peft_type) out.emplace(load_policy<P>(dir, shape));
  });
  if (!out) {
    std::string msg =
        where + " field 'peft_type' expected one of " + known_peft_types<Scalar>() + ", got \"" + type + "\"";
    if (type == "COMPOSE")
      msg +=
          " (a composition: its member types are not recorded as classes; load it with "
          "load_policy<compose<...>> naming them)";
    throw invalid_argument(msg);
  }
  return std::move(*out);
}

/// Saves the held policy like `save_policy` does for its class.
/// @throws invalid_argument for the head alone (nothing to save)
template <typename Scalar>
void save_policy(const std::string& dir, const any_policy<Scalar>& p, const hf_save_info& info = {}) {
  p.visit([&](const auto& q) {
    using P = std::decay_t<decltype(q)>;
    if constexpr (std::is_same_v<P, no_policy<Scalar>>) {
      throw invalid_argument(
          "save_policy: expected a policy, got the head alone (no_policy): nothing to save in '" + dir + "'");
    } else {
      save_policy(dir, q, info);
    }
  });
}

}  // namespace peft

#endif  // PEFT_METHODS_HPP
