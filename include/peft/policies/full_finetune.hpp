// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_FULL_FINETUNE_HPP
#define PEFT_POLICIES_FULL_FINETUNE_HPP

/// @file full_finetune.hpp
/// The classic fine-tuning baseline, expressed as a policy so the shared weights stay
/// `const`: every linear map of every layer gets a trainable update `W + dW`, `b + db`
/// (zero-initialised, so training starts from the pretrained model).
///
/// Departure, stated: LayerNorm parameters and the embedding tables are not trained (the
/// encoder exposes no hook for them); these are 1-30% of a backbone's parameters (BERT-base
/// embeddings ~22%, USE-lite ~30%). Weight decay, when used, acts on the update dW rather than
/// on W.

#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "policy_traits.hpp"

namespace peft {

template <typename Scalar>
class full_finetune {
public:
  using scalar_type = Scalar;
  static constexpr const char* peft_type = "FULL_FINETUNE";
  struct tape_type {};

  explicit full_finetune(const encoder_shape& shape);

  /// What rebuilds it: the method and the encoder shape it was made for.
  nlohmann::json config_json() const {
    return {{"peft_type", peft_type}, {"model_type", m_shape.model_type}, {"num_layers", m_shape.num_layers},
            {"hidden_size", m_shape.hidden_size}, {"embedding_size", m_shape.embedding_size}};
  }
  /// @throws invalid_argument when `j` is for another method or encoder shape
  static full_finetune from_config(const nlohmann::json& j, const encoder_shape& shape);

  parameter_store<Scalar>& parameters() noexcept { return m_params; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_params; }
  index num_parameters() const noexcept { return m_params.size(); }

  bool transforms_weight(index, linear_id) const noexcept { return true; }
  void on_weight(index l, linear_id w, const matrix<Scalar>& W, matrix<Scalar>& W_eff, tape_type&) const {
    W_eff = W + m_params.value(block(l, w));
  }
  void on_weight_backward(index l, linear_id w, const matrix<Scalar>&, const matrix<Scalar>& dW, const tape_type&) {
    m_params.grad(block(l, w)) += dW;
  }
  void on_linear(index l, linear_id w, const matrix<Scalar>&, matrix<Scalar>& y, const hook_context&, tape_type&) const {
    y.rowwise() += m_params.value(block(l, w) + 1).col(0).transpose();
  }
  void on_linear_backward(index l, linear_id w, const matrix<Scalar>& dy, matrix<Scalar>&, const tape_type&) {
    m_params.grad(block(l, w) + 1) += dy.colwise().sum().transpose();
  }

private:
  index block(index l, linear_id w) const noexcept { return 2 * (l * num_linear_ids + static_cast<index>(w)); }

  encoder_shape m_shape;
  parameter_store<Scalar> m_params;
};

template <typename Scalar>
full_finetune<Scalar>::full_finetune(const encoder_shape& shape) : m_shape(shape) {
  static const char* names[num_linear_ids] = {"attention.self.query", "attention.self.key",
                                              "attention.self.value", "attention.output.dense",
                                              "intermediate.dense",   "output.dense"};
  for (index l = 0; l < shape.num_layers; ++l)
    for (int w = 0; w < num_linear_ids; ++w) {
      const auto [out, in] = shape.linear_shape(l, w);
      const std::string base = "encoder.layer." + std::to_string(l) + "." + names[w];
      m_params.add(base + ".weight", out, in, param_group::weight);
      m_params.add(base + ".bias", out, 1, param_group::bias);
    }
}

template <typename Scalar>
full_finetune<Scalar> full_finetune<Scalar>::from_config(const nlohmann::json& j,
                                                         const encoder_shape& shape) {
  auto check = [&](const char* key, const nlohmann::json& want) {
    if (!j.contains(key) || j.at(key) != want)
      throw invalid_argument(std::string("full_finetune::from_config: '") + key + "' expected " +
                             want.dump() + ", got " +
                             (j.contains(key) ? j.at(key).dump() : std::string("nothing")));
  };
  check("peft_type", peft_type);
  check("model_type", shape.model_type);
  check("num_layers", shape.num_layers);
  check("hidden_size", shape.hidden_size);
  check("embedding_size", shape.embedding_size);
  return full_finetune(shape);
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_FULL_FINETUNE
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_FULL_FINETUNE_HPP
