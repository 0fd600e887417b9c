// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_POLICIES_PROMPT_TUNING_HPP
#define PEFT_POLICIES_PROMPT_TUNING_HPP

/// @file prompt_tuning.hpp
/// Prompt tuning: a trained soft prompt in front of the input. Lester et al., "The Power of
/// Scale for Parameter-Efficient Prompt Tuning", EMNLP 2021; the placement, config fields,
/// initialisations and checkpoint key as huggingface/peft (`tuners/prompt_tuning/`,
/// `PeftModelForSequenceClassification.forward`).
///
/// The prompt `P` (`[n x E]`, E the embedding width) takes the place of the word embeddings of
/// n virtual tokens at the front of every sequence: the encoder then adds their positions
/// (0..n-1, the text following at n..) and token type 0, and normalises, as Hugging Face PEFT
/// does when it concatenates the prompt to `inputs_embeds`. The virtual tokens are real
/// positions of the batch: each sequence starts with n ids `virtual_token_id` (batch.hpp;
/// `prepend_virtual_tokens` puts them there) whose mask is 1, so every head sees them, as Hugging
/// Face's does: a BERT pooler reads the first virtual token. The encoder supplies nothing for a
/// `virtual_token_id` itself; this policy's `on_input_embeddings` hook does, and refuses a batch
/// whose first n ids are not virtual.
///
/// Initialisation (`prompt_tuning_init`): "RANDOM" draws N(0, 1), as the `nn.Embedding` Hugging
/// Face PEFT creates; "TEXT" and "SAMPLE_VOCAB" copy rows of the frozen word embeddings
/// (`init_from_embeddings`: the ids of `prompt_tuning_init_text` tokenised with the model's
/// special tokens, repeated or cut to n; or n ids drawn uniformly from the vocabulary). The
/// policy itself holds no tokenizer or embeddings, so the caller does those two (the task
/// layer does).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/batch.hpp"
#include "../core/encoder_shape.hpp"
#include "../core/parameter.hpp"
#include "../core/random.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "linear_targets.hpp"
#include "policy_config.hpp"
#include "policy_traits.hpp"

namespace peft {

/// Hyper-parameters of `prompt_tuning`.
struct prompt_tuning_config {
  index num_virtual_tokens = 20;              ///< n (Hugging Face PEFT has no default; Lester et al. 100)
  std::string prompt_tuning_init = "RANDOM";  ///< "RANDOM", "TEXT" or "SAMPLE_VOCAB"
  std::string prompt_tuning_init_text;        ///< for "TEXT"
};

/// Prompt tuning over a frozen encoder.
/// @tparam Scalar float or double
template <typename Scalar = float>
class prompt_tuning {
  static_assert(is_supported_scalar_v<Scalar>, "peft::prompt_tuning: Scalar must be float or double");

public:
  using scalar_type = Scalar;
  using mat = matrix<Scalar>;
  static constexpr const char* peft_type = "PROMPT_TUNING";

  /// What a forward pass records: the batch's shape, for the backward pass.
  struct tape_type {
    index batch_size = 0;
    index time = 0;
  };

  /// A prompt of n rows for an encoder of shape @p shape, drawn N(0, 1) from @p seed (for
  /// "TEXT" and "SAMPLE_VOCAB" too, until `init_from_embeddings` overwrites it).
  /// @throws peft::invalid_argument naming the bad field (n < 1, an unknown initialisation,
  ///   "TEXT" without a text)
  prompt_tuning(const encoder_shape& shape, const prompt_tuning_config& config, std::uint64_t seed = 0)
      : m_shape(shape), m_config(config) {
    const std::string where = "prompt_tuning::prompt_tuning";
    detail::check_encoder_shape(shape, where);
    if (config.num_virtual_tokens < 1)
      throw invalid_argument(where + ": num_virtual_tokens expected >= 1, got " +
                             std::to_string(config.num_virtual_tokens));
    const auto& init = config.prompt_tuning_init;
    if (init != "RANDOM" && init != "TEXT" && init != "SAMPLE_VOCAB")
      throw invalid_argument(where + ": prompt_tuning_init expected \"RANDOM\", \"TEXT\" or \"SAMPLE_VOCAB\", got \"" +
                             init + "\"");
    if (init == "TEXT" && config.prompt_tuning_init_text.empty())
      throw invalid_argument(where + ": prompt_tuning_init \"TEXT\" expected a prompt_tuning_init_text, got none");
    m_store.add("prompt_embeddings", config.num_virtual_tokens, shape.word_width(), param_group::weight);
    rng gen(seed);
    auto P = m_store.value(0);
    for (index k = 0; k < P.size(); ++k) P.data()[k] = static_cast<Scalar>(gen.normal());
  }

  const prompt_tuning_config& config() const noexcept { return m_config; }
  const encoder_shape& shape() const noexcept { return m_shape; }
  index num_virtual_tokens() const noexcept { return m_config.num_virtual_tokens; }
  parameter_store<Scalar>& parameters() noexcept { return m_store; }
  const parameter_store<Scalar>& parameters() const noexcept { return m_store; }
  index num_parameters() const noexcept { return m_store.size(); }

  /// Sets the prompt to @p rows (`[n x E]`, rows of the frozen word embeddings): the "TEXT"
  /// and "SAMPLE_VOCAB" initialisations.
  /// @throws peft::invalid_argument for another shape
  void init_from_embeddings(const mat& rows) {
    auto P = m_store.value(0);
    if (rows.rows() != P.rows() || rows.cols() != P.cols())
      throw invalid_argument("prompt_tuning::init_from_embeddings: rows expected [" + std::to_string(P.rows()) +
                             ", " + std::to_string(P.cols()) + "], got [" + std::to_string(rows.rows()) + ", " +
                             std::to_string(rows.cols()) + "]");
    P = rows;
  }

  /// The ids whose word embeddings initialise the prompt: for "TEXT" the tokenised init text
  /// @p text_ids (with its special tokens) repeated and cut to n; for "SAMPLE_VOCAB" n ids drawn
  /// uniformly from [0, vocab_size) with @p seed. Empty for "RANDOM".
  std::vector<std::int32_t> init_ids(const std::vector<std::int32_t>& text_ids, index vocab_size,
                                     std::uint64_t seed) const {
    const auto n = static_cast<std::size_t>(m_config.num_virtual_tokens);
    std::vector<std::int32_t> out;
    if (m_config.prompt_tuning_init == "TEXT") {
      if (text_ids.empty())
        throw invalid_argument("prompt_tuning::init_ids: prompt_tuning_init_text expected >= 1 token, got 0");
      while (out.size() < n) out.insert(out.end(), text_ids.begin(), text_ids.end());
      out.resize(n);
    } else if (m_config.prompt_tuning_init == "SAMPLE_VOCAB") {
      rng gen(seed);
      for (std::size_t i = 0; i < n; ++i)
        out.push_back(static_cast<std::int32_t>(
            std::min<index>(vocab_size - 1, static_cast<index>(gen.uniform() * static_cast<double>(vocab_size)))));
    }
    return out;
  }

  // --- hooks ---------------------------------------------------------------------------

  /// Puts the prompt in place of the word embeddings of each sequence's n virtual tokens.
  /// @throws peft::invalid_argument when a sequence does not start with n virtual tokens
  void on_input_embeddings(const batch& b, mat& e, const hook_context& ctx, tape_type& t) const {
    const index n = m_config.num_virtual_tokens, T = b.time();
    const auto P = m_store.value(0);
    for (index i = 0; i < b.size(); ++i)
      for (index s = 0; s < n; ++s) {
        if (s >= T || b.ids(i, s) != virtual_token_id || !b.mask(i, s))
          throw invalid_argument("prompt_tuning: sequence " + std::to_string(i) + " expected " + std::to_string(n) +
                                 " virtual tokens (id " + std::to_string(virtual_token_id) +
                                 ", mask 1) at positions 0.." + std::to_string(n - 1) + ", got " +
                                 (s >= T ? std::string("a sequence of ") + std::to_string(T) + " positions"
                                         : "id " + std::to_string(b.ids(i, s)) + " at position " + std::to_string(s)) +
                                 " (prepend_virtual_tokens puts them in)");
        e.row(i * T + s) = P.row(s);
      }
    if (ctx.record) {
      t.batch_size = b.size();
      t.time = T;
    }
  }

  /// Accumulates the prompt's gradient from that of the word embeddings.
  void on_input_embeddings_backward(const mat& de, const tape_type& t) {
    const index n = m_config.num_virtual_tokens;
    if (t.batch_size * t.time != de.rows() || t.time < n)
      throw invalid_argument("prompt_tuning::on_input_embeddings_backward: no record for a batch of " +
                             std::to_string(de.rows()) + " rows (was forward called with a tape and this policy?)");
    auto G = m_store.grad(0);
    for (index i = 0; i < t.batch_size; ++i) G += de.middleRows(i * t.time, n);
  }

  // --- checkpoints ---------------------------------------------------------------------

  /// huggingface/peft's `PromptTuningConfig` fields that apply, plus the encoder shape.
  nlohmann::json config_json() const {
    nlohmann::json j;
    j["peft_type"] = peft_type;
    j["num_virtual_tokens"] = m_config.num_virtual_tokens;
    j["token_dim"] = m_shape.word_width();
    j["num_transformer_submodules"] = 1;
    j["num_attention_heads"] = m_shape.num_heads;
    j["num_layers"] = m_shape.num_layers;
    j["prompt_tuning_init"] = m_config.prompt_tuning_init;
    j["prompt_tuning_init_text"] =
        m_config.prompt_tuning_init_text.empty() ? nlohmann::json(nullptr) : nlohmann::json(m_config.prompt_tuning_init_text);
    write_shape_fields(j, m_shape);
    return j;
  }

  /// Rebuilds a (freshly initialised) policy from `config_json()` output.
  /// @throws peft::invalid_argument naming the field when the method or encoder shape differs
  static prompt_tuning from_config(const nlohmann::json& j, const encoder_shape& shape) {
    const std::string where = "prompt_tuning::from_config";
    check_config_header(j, peft_type, shape, where);
    prompt_tuning_config c;
    c.num_virtual_tokens = config_field<index>(j, "num_virtual_tokens", where);
    c.prompt_tuning_init = config_field_or<std::string>(j, "prompt_tuning_init", "RANDOM", where);
    const auto text = j.find("prompt_tuning_init_text");
    if (text != j.end() && !text->is_null()) c.prompt_tuning_init_text = config_field<std::string>(j, "prompt_tuning_init_text", where);
    const index dim = config_field_or<index>(j, "token_dim", shape.word_width(), where);
    if (dim != shape.word_width())
      throw invalid_argument(where + ": field 'token_dim' expected " + std::to_string(shape.word_width()) +
                             " (the encoder's embedding width), got " + std::to_string(dim));
    return prompt_tuning(shape, c, 0);
  }

private:
  encoder_shape m_shape;
  prompt_tuning_config m_config;
  parameter_store<Scalar> m_store;
};

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_POLICIES_PROMPT_TUNING
#include "../detail/instances.hpp"

#endif  // PEFT_POLICIES_PROMPT_TUNING_HPP
