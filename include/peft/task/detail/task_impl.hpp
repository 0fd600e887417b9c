// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TASK_DETAIL_TASK_IMPL_HPP
#define PEFT_TASK_DETAIL_TASK_IMPL_HPP

/// @file task_impl.hpp
/// The definitions of task.hpp's functions: included by task.hpp (header-only use), or, with
/// PEFT_TASK_SEPARATE defined, in exactly one file of a program that compiles them once.

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <tuple>

#include "../../io/adapter_checkpoint.hpp"
#include "../../io/atomic_folder.hpp"
#include "../../core/file_util.hpp"
#include "../../io/hf_checkpoint.hpp"
#include "../../io/use_lite.hpp"
#include "../../model/encoder.hpp"
#include "../../text/label_options.hpp"
#include "../prompt_placeholders.hpp"
#include "../task.hpp"

namespace peft::task {


PEFT_TASK_API model_files load_model(const std::string& dir) {
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
  m.tokenizer = peft::load_hf_tokenizer(dir);
  if (m.tokenizer->vocab_size() > m.weights->config.vocab_size)
    throw peft::io_error("'" + dir + "': the tokenizer's vocabulary (" + std::to_string(m.tokenizer->vocab_size()) +
                         " tokens) expected to fit the model's embeddings (vocab_size " +
                         std::to_string(m.weights->config.vocab_size) + ")");
  if (m.tokenizer->pad_id() < 0)
    throw peft::io_error("'" + dir + "': the tokenizer expected a padding token, got none");
  m.pad_id = m.tokenizer->pad_id();
  return m;
}

PEFT_TASK_API std::vector<peft::encoded_example> encode(const model_files& m, const task_settings& s,
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
  if (!s.choices.empty() && (tmpl || static_cast<peft::index>(s.choices.size()) != labels.size()))
    throw peft::invalid_argument(tmpl ? std::string("label options (a span head) do not go with a prompt template")
                                      : "label options: one per class expected (" + std::to_string(labels.size()) +
                                            "), got " + std::to_string(s.choices.size()));
  // The tokenizer's pair layout, probed once for every row's options.
  std::optional<peft::detail::special_frame> frame;
  if (!s.choices.empty() && !m.unigram) frame = peft::option_frame(*m.tokenizer);
  for (const auto& e : data) {
    peft::encoded_example x;
    if (!s.choices.empty()) {
      const std::string* b = e.text_b ? &*e.text_b : nullptr;
      peft::option_encoding enc;
      try {
        enc = m.unigram ? peft::encode_with_options(*m.unigram, e.text, b, s.choices, max_len)
                        : peft::encode_with_options(*m.tokenizer, *frame, e.text, b, s.choices, max_len);
      } catch (const peft::invalid_argument& err) {
        throw peft::invalid_argument("line " + std::to_string(e.line) + ": " + err.what());
      }
      x.ids = std::move(enc.ids);
      x.segments = std::move(enc.segments);
      x.choices = std::move(enc.spans);
    } else if (tmpl) {
      const auto enc = e.text_b ? tmpl->apply(*m.tokenizer, e.text, *e.text_b, max_len)
                                : tmpl->apply(*m.tokenizer, e.text, max_len);
      x.ids = enc.ids;
      x.segments = enc.segments;
      x.mask_pos = enc.mask_position;
    } else if (m.unigram) {
      x.ids = m.unigram->encode(e.text, max_len);
      if (x.ids.empty())
        throw peft::invalid_argument("line " + std::to_string(e.line) + ": text has no tokens");
    } else if (e.text_b) {
      x.ids = m.tokenizer->encode_pair(e.text, *e.text_b, max_len, &x.segments);
    } else {
      x.ids = m.tokenizer->encode(e.text, max_len);
    }
    // A model with one token type or none (RoBERTa, DistilBERT, MPNet) reads every token as
    // type 0, as its transformers model does, whatever layout the tokenizer gave the pair.
    if (m.weights && m.weights->config.type_vocab_size <= 1) x.segments.clear();
    if (s.prompt_tokens > 0) peft::insert_prompt_placeholders(x, s.prompt_tokens, s.placeholder_id);
    if (e.label) {
      x.label = labels.id(*e.label);
      if (!x.choices.empty()) std::tie(x.start, x.end) = x.choices[static_cast<std::size_t>(x.label)];
    } else if (require_labels) {
      throw peft::invalid_argument("line " + std::to_string(e.line) + ": example has no label");
    }
    out.push_back(std::move(x));
  }
  return out;
}

PEFT_TASK_API task_data read_task_data(const std::string& path, peft::task_kind kind) {
  task_data d;
  d.kind = kind;
  switch (kind) {
    case peft::task_kind::classification: d.rows = peft::read_dataset(path); break;
    case peft::task_kind::regression:
    case peft::task_kind::multi_label: d.rows = peft::read_task_jsonl(path, kind); break;
    case peft::task_kind::token_classification: d.tokens = peft::read_token_data(path); break;
    case peft::task_kind::extractive_qa: d.questions = peft::read_qa_data(path); break;
  }
  return d;
}

PEFT_TASK_API peft::label_map task_labels(const task_data& d) {
  const std::string where = std::string("task_labels (") + peft::task_kind_name(d.kind) + "): ";
  switch (d.kind) {
    case peft::task_kind::classification: return peft::label_map::from_dataset(d.rows);
    case peft::task_kind::regression: {
      for (const auto& e : d.rows) {
        if (e.values.empty()) continue;
        if (e.values.size() == 1) return peft::label_map({"target"});
        std::vector<std::string> names;
        for (std::size_t k = 0; k < e.values.size(); ++k) names.push_back("target_" + std::to_string(k));
        return peft::label_map(names);
      }
      throw peft::invalid_argument(where + "at least one row with targets expected, got none");
    }
    case peft::task_kind::multi_label: {
      std::set<std::string> names;
      for (const auto& e : d.rows)
        if (e.label_set) names.insert(e.label_set->begin(), e.label_set->end());
      if (names.empty()) throw peft::invalid_argument(where + "at least one label in the rows expected, got none");
      return peft::label_map(std::vector<std::string>(names.begin(), names.end()));
    }
    case peft::task_kind::token_classification: {
      std::set<std::string> names;
      for (const auto& e : d.tokens) names.insert(e.tags.begin(), e.tags.end());
      if (names.size() < 2)
        throw peft::invalid_argument(where + "at least 2 tags in the sentences expected, got " + std::to_string(names.size()));
      return peft::label_map(std::vector<std::string>(names.begin(), names.end()));
    }
    case peft::task_kind::extractive_qa: return peft::label_map({"start", "end"});
  }
  return {};
}

PEFT_TASK_API std::vector<peft::encoded_example> encode_task(const model_files& m, const task_settings& s,
                                                             const task_data& d, const peft::label_map& labels,
                                                             const std::optional<peft::prompt_template>& tmpl,
                                                             bool require_labels) {
  using peft::task_kind;
  if (d.kind != s.kind)
    throw peft::invalid_argument(std::string("encode_task: data of kind ") + peft::task_kind_name(d.kind) +
                                 " for a task of kind " + peft::task_kind_name(s.kind));
  if (tmpl && s.kind != task_kind::classification)
    throw peft::invalid_argument(std::string("a prompt template goes with classification tasks, not ") +
                                 peft::task_kind_name(s.kind));
  if (s.prompt_tokens > 0 && s.kind != task_kind::classification)
    throw peft::invalid_argument(std::string("MPMP placeholders go with classification tasks, not ") +
                                 peft::task_kind_name(s.kind));
  const peft::index max_len = std::min<peft::index>(s.max_length, m.weights->config.max_sequence_length());
  // A model with one token type or none reads every token as type 0 (see encode).
  const bool one_type = m.weights && m.weights->config.type_vocab_size <= 1;
  std::vector<peft::encoded_example> out;
  switch (s.kind) {
    case task_kind::classification: return encode(m, s, d.rows, labels, tmpl, require_labels);
    case task_kind::regression:
    case task_kind::multi_label: {
      out = encode(m, s, d.rows, labels, tmpl, false);
      const auto K = static_cast<std::size_t>(labels.size());
      for (std::size_t i = 0; i < out.size(); ++i) {
        const auto& e = d.rows[i];
        auto& x = out[i];
        const std::string at = "line " + std::to_string(e.line) + ": ";
        if (s.kind == task_kind::regression && !e.values.empty()) {
          if (e.values.size() != K)
            throw peft::invalid_argument(at + std::to_string(K) + " regression targets expected (" +
                                         labels.labels().front() + (K > 1 ? ".." : "") + "), got " +
                                         std::to_string(e.values.size()));
          for (double v : e.values) x.targets.push_back(static_cast<float>(v));
        } else if (s.kind == task_kind::multi_label && e.label_set) {
          x.targets.assign(K, 0.0f);
          for (const auto& name : *e.label_set) x.targets[static_cast<std::size_t>(labels.id(name))] = 1.0f;
        } else if (require_labels) {
          throw peft::invalid_argument(at + "example has no " +
                                       (s.kind == task_kind::regression ? "targets" : "label set"));
        }
      }
      return out;
    }
    case task_kind::token_classification: {
      for (const auto& e : d.tokens) {
        const std::string at = "line " + std::to_string(e.line) + ": ";
        const auto w = m.unigram ? peft::encode_words(*m.unigram, e.words, max_len)
                                 : peft::encode_words(*m.tokenizer, e.words, max_len);
        peft::encoded_example x;
        x.ids = w.ids;
        if (!one_type) x.segments = w.segments;
        x.word_ids = w.word_of_token;
        if (!e.tags.empty()) {
          std::vector<int> tag_ids;
          for (const auto& t : e.tags) {
            try {
              tag_ids.push_back(labels.id(t));
            } catch (const peft::invalid_argument& err) {
              throw peft::invalid_argument(at + err.what());
            }
          }
          x.token_labels = peft::align_word_labels(w, tag_ids);
        } else if (require_labels) {
          throw peft::invalid_argument(at + "sentence has no tags");
        }
        out.push_back(std::move(x));
      }
      return out;
    }
    case task_kind::extractive_qa: {
      if (!m.tokenizer)
        throw peft::invalid_argument("reading comprehension needs a model whose tokenizer has a pair layout (got " +
                                     m.model_type + ")");
      std::vector<std::shared_ptr<const peft::qa_example>> questions;
      for (const auto& q : d.questions) {
        if (require_labels && q.answers.empty() && !q.impossible)
          throw peft::invalid_argument("question " + std::to_string(q.line) + " ('" + q.id + "'): no answer");
        questions.push_back(std::make_shared<const peft::qa_example>(q));
      }
      const auto windows = peft::qa_windows(*m.tokenizer, d.questions, max_len, s.doc_stride, s.max_query_length);
      for (const auto& w : windows) {
        const auto& q = *questions.at(w.example);
        peft::encoded_example x;
        x.ids = w.ids;
        if (!one_type) x.segments = w.segments;
        if (!q.answers.empty() || q.impossible) {
          x.start = w.start;
          x.end = w.end;
        }
        x.qa = std::make_shared<const peft::qa_row>(peft::qa_row{w, questions[w.example]});
        out.push_back(std::move(x));
      }
      return out;
    }
  }
  return out;
}

PEFT_TASK_API bool has_saved_task(const std::string& dir) {
  try {
    (void)peft::resolve_saved_folder(dir, "task.json");
    return true;
  } catch (const peft::io_error&) {
    return false;
  }
}

PEFT_TASK_API saved_task read_saved_task(const model_files& m, const std::string& saved_dir, const std::string& where) {
  std::string dir;
  try {
    dir = peft::resolve_saved_folder(saved_dir, "task.json");
  } catch (const peft::io_error&) {
    throw peft::io_error(where + "'" + saved_dir + "' is not a peft-train checkpoint (no task.json)");
  }
  const std::string file = task_file(dir);
  nlohmann::json j;
  try {
    j = peft::detail::parse_json_limited(peft::detail::read_file(file, "read_saved_task"), "'" + file + "'");
  } catch (const nlohmann::json::exception& e) {
    throw peft::io_error(where + "'" + file + "' is not valid JSON: " + e.what());
  }
  saved_task t{task_settings::from_json(j), peft::label_map::load(labels_file(dir)), {}, {}, dir, head_file(dir)};
  if (t.settings.model_type != m.model_type)
    throw peft::invalid_argument(where + "the checkpoint was trained on a '" + t.settings.model_type +
                                 "' model, but '" + m.dir + "' is '" + m.model_type + "'");
  if (!t.settings.template_spec.empty()) {
    t.tmpl.emplace(t.settings.template_spec);
    t.verb.emplace(peft::verbalizer::parse(*m.tokenizer, t.settings.verbalizer_spec, t.labels.labels()));
  }
  return t;
}

PEFT_TASK_API peft::any_policy<float> task_policy(const std::string& method, const peft::encoder_shape& shape,
                                                  std::uint64_t seed, const std::string& load_dir,
                                                  const peft::method_options& options) {
  const auto& m = peft::find_method<float>(method);
  if (m.peft_type.empty()) return {};  // the head alone
  if (load_dir.empty()) {
    if (method == "mpmp")
      throw peft::invalid_argument(
          "method mpmp: task_policy only loads saved prompts (fresh ones start from a library or a config, "
          "train/mpmp.hpp)");
    return peft::make_policy<float>(method, shape, seed, options);
  }
  auto p = peft::load_any_policy<float>(load_dir, shape);
  if (m.peft_type != p.peft_type())
    throw peft::invalid_argument("task_policy: method '" + method + "' expects a " + m.peft_type +
                                 " checkpoint in '" + load_dir + "', got " + p.peft_type());
  return p;
}

PEFT_TASK_API peft::encoder_shape model_shape(const model_files& m) {
  return with_arch(m.model_type, [&](auto arch) { return peft::encoder<decltype(arch), float>(m.weights).shape(); });
}

PEFT_TASK_API std::string method_of_peft_type(const std::string& peft_type) {
  for (const auto& m : peft::methods())
    if (!peft_type.empty() && m.peft_type == peft_type) return m.name;
  throw peft::invalid_argument("no registered method saves peft_type '" + peft_type + "' (known: " +
                               peft::known_peft_types() + ")");
}

PEFT_TASK_API std::optional<folder_head> read_folder_head(const std::string& dir) {
  if (peft::is_adapterhub_fusion_folder(dir) && !fs::exists(fs::path(dir) / peft::adapter_config_file))
    return std::nullopt;  // an AdapterFusion folder: heads live with adapters
  const auto cfg = peft::read_adapter_config(dir);
  if (peft::is_adapterhub_config(cfg)) {
    auto h = peft::read_adapterhub_head(dir);
    if (!h) return std::nullopt;
    return folder_head{std::move(h->tensors), h->pooling, std::move(h->labels)};
  }
  auto modules = peft::read_saved_modules(dir);
  if (modules.empty()) return std::nullopt;
  // BERT's classifier reads the pooler; RoBERTa's (dense, tanh, out_proj) reads token 0.
  const bool roberta = modules.count("classifier.dense.weight") > 0;
  return folder_head{std::move(modules), roberta ? "cls" : "pooler", {}};
}

PEFT_TASK_API saved_task read_bare_task(const model_files& m, const std::string& dir, const bare_task_options& o,
                                        const std::string& where) {
  if (!fs::is_directory(dir)) throw peft::io_error(where + "adapter folder '" + dir + "' does not exist");
  saved_task t;
  if (peft::is_adapterhub_fusion_folder(dir) && !fs::exists(fs::path(dir) / peft::adapter_config_file)) {
    t.settings.method = method_of_peft_type("ADAPTER_FUSION");
  } else {
    const auto cfg = peft::read_adapter_config(dir);
    const auto type = cfg.find("peft_type");
    t.settings.method = peft::is_adapterhub_config(cfg) ? method_of_peft_type("BOTTLENECK_ADAPTER")
                        : method_of_peft_type(type != cfg.end() && type->is_string() ? type->get<std::string>() : "");
  }
  t.settings.model_type = m.model_type;
  // A Hugging Face sequence classifier saves its head in the adapter (modules_to_save) and
  // reads it from BERT's pooler; an AdapterHub folder may save one (head_config.json).
  const auto folder = o.head.empty() ? read_folder_head(dir) : std::nullopt;
  const bool saved_head = folder.has_value();
  if (o.head.empty() && !saved_head)
    throw peft::invalid_argument(where + "'" + dir +
                                 "' has no task.json and saves no classifier (modules_to_save or head_config.json): "
                                 "a bare adapter folder needs a head file");
  t.settings.pooling = !o.pooling.empty() ? o.pooling : saved_head ? folder->pooling : "cls";
  (void)peft::parse_pool_kind(t.settings.pooling);  // names the accepted values
  if (o.max_length > 0) t.settings.max_length = o.max_length;
  if (!o.labels.empty()) {
    const bool file = o.labels.size() > 5 && o.labels.compare(o.labels.size() - 5, 5, ".json") == 0;
    t.labels = file ? peft::label_map::load(o.labels) : peft::label_map(split_list(o.labels));
  } else if (folder && !folder->labels.empty()) {
    t.labels = peft::label_map(folder->labels);
  } else {
    t.labels = peft::label_map(model_labels(m, where + "'" + dir + "' has no task.json and no labels were given: "));
  }
  t.dir = dir;
  t.head_path = saved_head ? dir : o.head;
  return t;
}

PEFT_TASK_API std::vector<std::string> model_labels(const model_files& m, const std::string& where) {
  const std::string path = (fs::path(m.dir) / "config.json").string();
  nlohmann::json cfg;
  if (fs::exists(path)) try {
      cfg = peft::detail::parse_json_limited(peft::detail::read_file(path, "model_labels"), path);
    } catch (const nlohmann::json::exception& e) {
      throw peft::io_error(where + "'" + path + "' is not valid JSON: " + e.what());
    }
  const auto it = cfg.is_object() ? cfg.find("id2label") : cfg.end();
  if (!cfg.is_object() || it == cfg.end() || !it->is_object() || it->empty())
    throw peft::invalid_argument(where + "'" + path + "' has no id2label to name the classes (give the labels)");
  std::vector<std::string> names(it->size());
  for (const auto& kv : it->items()) {
    std::size_t i = 0;
    const std::string& k = kv.key();
    const bool digits = !k.empty() && k.size() < 10 && k.find_first_not_of("0123456789") == std::string::npos;
    if (digits) i = std::stoul(k);
    if (!digits || i >= names.size() || !kv.value().is_string() || !names[i].empty())
      throw peft::invalid_argument(where + "'" + path + "' field 'id2label' expected ids 0.." +
                                   std::to_string(names.size() - 1) + " with names, got " + it->dump().substr(0, 120));
    names[i] = kv.value().get<std::string>();
  }
  return names;
}

PEFT_TASK_API void save_task(const std::string& dir, const task_settings& settings, const peft::label_map& labels,
                             const peft::any_policy<float>& policy, const std::map<std::string, peft::tensor>& head) {
  peft::save_folder_atomically(dir, "task.json", [&](const std::string& stage) {
    if (policy.has_policy()) peft::save_policy(stage, policy, {settings.base_model, ""});
    peft::save_safetensors(head_file(stage), head, {{"format", "pt"}});
    labels.save(labels_file(stage));
    peft::atomic_write(task_file(stage), settings.to_json().dump(2) + "\n");
  });
}

}  // namespace peft::task

#endif  // PEFT_TASK_DETAIL_TASK_IMPL_HPP
