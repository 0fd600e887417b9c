// SPDX-License-Identifier: Apache-2.0
// The non-template parts of task_common.hpp that pull in the tokenizers, the JSON reader and
// the loaders: compiled once here (in peft_task_runtime) instead of in every program.
#include "task_common.hpp"

namespace task {

model_files load_model(const std::string& dir) {
  if (!fs::is_directory(dir)) throw peft::io_error("model folder '" + dir + "' does not exist");
  model_files m;
  m.dir = dir;
  const fs::path p(dir);
  if (fs::exists(p / "model.json")) {
    m.model_type = "use_lite";
    m.weights = peft::load_use_lite<float>(dir);
    m.unigram = std::make_shared<peft::unigram_tokenizer>(
        peft::unigram_tokenizer::from_vocab_json((p / "vocab.json").string()));
    return m;
  }
  if (!fs::exists(p / "config.json"))
    throw peft::io_error("'" + dir + "' has neither config.json (Hugging Face) nor model.json (USE-lite)");
  m.weights = peft::load_hf_encoder<float>(dir);
  m.model_type = m.weights->config.model_type;
  if (fs::exists(p / "tokenizer.json"))
    m.wordpiece = std::make_shared<peft::wordpiece_tokenizer>(
        peft::wordpiece_tokenizer::from_tokenizer_json((p / "tokenizer.json").string()));
  else if (fs::exists(p / "vocab.txt"))
    m.wordpiece = std::make_shared<peft::wordpiece_tokenizer>(
        peft::wordpiece_tokenizer::from_vocab_txt((p / "vocab.txt").string()));
  else
    throw peft::io_error("'" + dir +
                         "' has no vocab.txt or tokenizer.json (a WordPiece tokenizer is needed)");
  m.pad_id = m.wordpiece->pad_id();
  return m;
}

std::vector<peft::encoded_example> encode(const model_files& m, const task_settings& s,
                                          const peft::dataset& data, const peft::label_map& labels,
                                          const std::optional<peft::prompt_template>& tmpl,
                                          bool require_labels) {
  std::vector<peft::encoded_example> out;
  // MPMP placeholders take n of the positions; the text keeps the rest.
  const peft::index max_len =
      std::min<peft::index>(s.max_length, m.weights->config.max_sequence_length()) - s.prompt_tokens;
  if (max_len < 2)
    throw peft::invalid_argument("max_length " + std::to_string(s.max_length) +
                                 " leaves no room for text after " + std::to_string(s.prompt_tokens) +
                                 " prompt placeholders");
  for (const auto& e : data) {
    peft::encoded_example x;
    if (tmpl) {
      const auto enc = e.text_b ? tmpl->apply(*m.wordpiece, e.text, *e.text_b, max_len)
                                : tmpl->apply(*m.wordpiece, e.text, max_len);
      x.ids = enc.ids;
      x.segments = enc.segments;
      x.mask_pos = enc.mask_position;
    } else if (m.unigram) {
      x.ids = m.unigram->encode(e.text, max_len);
      if (x.ids.empty())
        throw peft::invalid_argument("line " + std::to_string(e.line) + ": text has no tokens");
    } else if (e.text_b) {
      x.ids = m.wordpiece->encode_pair(e.text, *e.text_b, max_len, &x.segments);
    } else {
      x.ids = m.wordpiece->encode(e.text, max_len);
    }
    if (s.prompt_tokens > 0) peft::insert_prompt_placeholders(x, s.prompt_tokens, s.placeholder_id);
    if (e.label) {
      x.label = labels.id(*e.label);
    } else if (require_labels) {
      throw peft::invalid_argument("line " + std::to_string(e.line) + ": example has no label");
    }
    out.push_back(std::move(x));
  }
  return out;
}

saved_task read_saved_task(const model_files& m, const std::string& dir, const std::string& where) {
  const std::string file = task_file(dir);
  if (!fs::exists(file))
    throw peft::io_error(where + "'" + dir + "' is not a peft-train checkpoint (no task.json)");
  nlohmann::json j;
  try {
    j = peft::detail::parse_json_limited(peft::detail::read_file(file, "read_saved_task"), "'" + file + "'");
  } catch (const nlohmann::json::exception& e) {
    throw peft::io_error(where + "'" + file + "' is not valid JSON: " + e.what());
  }
  saved_task t{task_settings::from_json(j), peft::label_map::load(labels_file(dir)), {}, {}};
  if (t.settings.model_type != m.model_type)
    throw peft::invalid_argument(where + "the checkpoint was trained on a '" + t.settings.model_type +
                                 "' model, but '" + m.dir + "' is '" + m.model_type + "'");
  if (!t.settings.template_spec.empty()) {
    t.tmpl.emplace(t.settings.template_spec);
    t.verb.emplace(peft::verbalizer::parse(*m.wordpiece, t.settings.verbalizer_spec, t.labels.labels()));
  }
  return t;
}

}  // namespace task
