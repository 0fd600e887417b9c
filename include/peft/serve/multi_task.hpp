// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_SERVE_MULTI_TASK_HPP
#define PEFT_SERVE_MULTI_TASK_HPP

/// @file multi_task.hpp
/// Serving many tasks over one frozen encoder (issue 7, "scale out").
///
/// `multi_task_server<Arch, Scalar>` refers to one `const encoder<Arch, Scalar>` and owns any
/// number of named tasks, each a policy of any type (any PEFT method, `no_policy`, `compose`)
/// plus its head (`classification_head` or `prompt_head`). The backbone is held once; a task
/// costs only its policy and head. `predict` takes a batch whose rows belong to different
/// tasks, groups the rows by task, runs each group through the shared encoder with that
/// task's policy in one forward call, and returns the results in request order.
///
/// A group's forward is the one `task_model::predict` does (encoder forward in evaluation
/// mode, then the head), on the group's rows padded together: a row's logits equal those of
/// the task run alone on the same row set.

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/parameter.hpp"
#include "../error.hpp"
#include "../model/encoder.hpp"
#include "../ops/losses.hpp"
#include "../task/heads.hpp"
#include "../task/task_model.hpp"

namespace peft {

/// One row of a mixed-task batch: the task's name and the encoded input.
struct serve_request {
  std::string task;
  encoded_example example;
};

/// The result for one request.
template <typename Scalar>
struct serve_prediction {
  index label = -1;                   ///< argmax class
  std::vector<Scalar> logits;         ///< one per class of the request's task
  std::vector<double> probabilities;  ///< softmax of the logits
};

/// Named tasks (policy + head, any types) over one shared, frozen encoder.
///
/// @tparam Arch   architecture traits of the encoder (`bert`, `roberta`, `use_lite`)
/// @tparam Scalar the encoder's scalar type; every policy and head must use it
///
/// A task costs its parameters once: the server frees the gradient buffers of the policies
/// and heads it takes (it never trains them). The encoder must outlive the server.
/// `predict` is `const` and touches no mutable state, so several threads may call it at
/// once; `add_task` / `remove_task` must not run concurrently with anything else.
template <typename Arch, typename Scalar = float>
class multi_task_server {
public:
  using scalar_type = Scalar;
  using encoder_type = encoder<Arch, Scalar>;
  using prediction = serve_prediction<Scalar>;

  /// @param enc     the shared backbone (held by reference, never modified)
  /// @param pad_id  id that pads shorter rows of a group (the tokenizer's pad id)
  explicit multi_task_server(const encoder_type& enc, std::int32_t pad_id = 0) : m_enc(&enc), m_pad(pad_id) {}
  /// A temporary encoder would dangle: keep the encoder alive next to the server.
  explicit multi_task_server(const encoder_type&& enc, std::int32_t pad_id = 0) = delete;

  // The tasks are owned through unique_ptr: the server moves but does not copy.
  multi_task_server(const multi_task_server&) = delete;
  multi_task_server& operator=(const multi_task_server&) = delete;
  multi_task_server(multi_task_server&&) = default;
  multi_task_server& operator=(multi_task_server&&) = default;

  const encoder_type& encoder_ref() const noexcept { return *m_enc; }
  std::int32_t pad_id() const noexcept { return m_pad; }

  /// Takes ownership of a task's policy and head under `name`; an `any_policy` is added as
  /// the class it holds.
  /// @throws invalid_argument for an empty or already registered name
  template <typename Policy, typename Head>
  void add_task(const std::string& name, Policy policy, Head head) {
    using P = std::decay_t<Policy>;
    if constexpr (is_any_policy_v<P>) {
      policy.visit([&](auto& p) { add_task(name, std::move(p), std::move(head)); });
      return;
    } else {
      add_concrete_task(name, std::move(policy), std::move(head));
    }
  }

private:
  template <typename P, typename H>
  void add_concrete_task(const std::string& name, P policy, H head) {
    static_assert(is_policy_v<P>,
                  "multi_task_server::add_task: Policy must be a peft policy (declare scalar_type)");
    static_assert(std::is_same_v<typename P::scalar_type, Scalar>,
                  "multi_task_server::add_task: the policy's scalar_type must equal the server's Scalar");
    static_assert(std::is_same_v<typename H::scalar_type, Scalar>,
                  "multi_task_server::add_task: the head's scalar_type must equal the server's Scalar");
    if (name.empty())
      throw invalid_argument("multi_task_server::add_task: task name expected non-empty, got ''");
    if (m_tasks.count(name))
      throw invalid_argument("multi_task_server::add_task: task name expected unique, got '" + name +
                             "' a second time");
    if (head.num_classes() < 1)
      throw invalid_argument("multi_task_server::add_task: task '" + name + "' head has no classes");
    m_tasks.emplace(name, std::make_unique<task_impl<P, H>>(std::move(policy), std::move(head)));
  }

public:
  /// Removes task `name`. @throws invalid_argument if there is no such task
  void remove_task(const std::string& name) {
    find(name, "multi_task_server::remove_task");
    m_tasks.erase(name);
  }

  bool has_task(const std::string& name) const { return m_tasks.count(name) != 0; }
  std::size_t num_tasks() const noexcept { return m_tasks.size(); }

  /// Registered names, sorted.
  std::vector<std::string> task_names() const {
    std::vector<std::string> out;
    for (const auto& t : m_tasks) out.push_back(t.first);
    return out;
  }

  /// Number of classes of task `name`. @throws invalid_argument if there is no such task
  index num_classes(const std::string& name) const {
    return find(name, "multi_task_server::num_classes").classes();
  }

  /// Trainable parameters (policy + head) of task `name`.
  index num_parameters(const std::string& name) const {
    return find(name, "multi_task_server::num_parameters").parameters();
  }

  /// Bytes of the shared backbone (held once, whatever the number of tasks).
  std::size_t backbone_bytes() const noexcept { return m_enc->weights().bytes(); }

  /// Bytes of every task's policy and head parameters together.
  std::size_t task_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& t : m_tasks) n += static_cast<std::size_t>(t.second->parameters());
    return n * sizeof(Scalar);
  }

  /// Predicts a mixed-task batch: rows grouped by task, one encoder call per task present,
  /// results in request order.
  /// @throws invalid_argument for an empty batch, an unknown task name (naming the request
  ///         index), or a malformed example (from the encoder: empty, too long, ids out of range)
  std::vector<prediction> predict(const std::vector<serve_request>& requests) const {
    if (requests.empty())
      throw invalid_argument("multi_task_server::predict: requests expected non-empty, got 0");
    // Group request indices by task, in the order tasks first appear.
    std::vector<std::pair<const task_base*, std::vector<std::size_t>>> groups;
    std::map<std::string, std::size_t> group_of;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto& name = requests[i].task;
      auto g = group_of.find(name);
      if (g == group_of.end()) {
        const auto t = m_tasks.find(name);
        if (t == m_tasks.end())
          throw invalid_argument("multi_task_server::predict: request " + std::to_string(i) +
                                 " names task '" + name + "', which is not loaded (" + known_names() + ")");
        g = group_of.emplace(name, groups.size()).first;
        groups.emplace_back(t->second.get(), std::vector<std::size_t>{});
      }
      groups[g->second].second.push_back(i);
    }
    std::vector<prediction> out(requests.size());
    std::vector<encoded_example> rows;
    std::vector<std::size_t> picks;
    for (const auto& [task, members] : groups) {
      rows.clear();
      picks.clear();
      for (auto i : members) {
        picks.push_back(rows.size());
        rows.push_back(requests[i].example);
      }
      const matrix<Scalar> logits = task->logits(*m_enc, make_task_batch(rows, picks, m_pad));
      const auto labels = argmax_rows(logits);
      const matrix<Scalar> p = softmax(logits);
      for (std::size_t r = 0; r < members.size(); ++r) {
        auto& pr = out[members[r]];
        const auto row = static_cast<index>(r);
        pr.label = labels[r];
        pr.logits.resize(static_cast<std::size_t>(logits.cols()));
        pr.probabilities.resize(static_cast<std::size_t>(logits.cols()));
        for (index c = 0; c < logits.cols(); ++c) {
          pr.logits[static_cast<std::size_t>(c)] = logits(row, c);
          pr.probabilities[static_cast<std::size_t>(c)] = static_cast<double>(p(row, c));
        }
      }
    }
    return out;
  }

  /// Class logits `[rows x C]` of task `name` alone on `rows` (one encoder call, rows in order).
  /// @throws invalid_argument for an unknown task or empty `rows`
  matrix<Scalar> task_logits(const std::string& name, const std::vector<encoded_example>& rows) const {
    const auto& t = find(name, "multi_task_server::task_logits");
    if (rows.empty())
      throw invalid_argument("multi_task_server::task_logits: rows expected non-empty, got 0");
    std::vector<std::size_t> picks(rows.size());
    for (std::size_t i = 0; i < picks.size(); ++i) picks[i] = i;
    return t.logits(*m_enc, make_task_batch(rows, picks, m_pad));
  }

private:
  /// What the server needs of a task, whatever its policy and head types.
  struct task_base {
    virtual ~task_base() = default;
    virtual matrix<Scalar> logits(const encoder_type& enc, const task_batch& tb) const = 0;
    virtual index classes() const = 0;
    virtual index parameters() const = 0;
  };

  template <typename Policy, typename Head>
  struct task_impl final : task_base {
    task_impl(Policy p, Head h) : policy(std::move(p)), head(std::move(h)) {
      parameter_set<Scalar> set;
      add_policy_parameters(set, policy);
      set.add(head.parameters());
      count = set.size();
      // Served tasks only run forward passes (and nothing outside the server can reach them
      // to train), so the gradient buffers, each as large as its store's values, are freed.
      for (std::size_t i = 0; i < set.num_stores(); ++i) set.store(i).grads() = vector<Scalar>();
    }
    // task_model::predict's forward, on const members: encoder in evaluation mode, then the head.
    matrix<Scalar> logits(const encoder_type& enc, const task_batch& rows) const override {
      return with_policy_input(policy, rows, [&](const task_batch& tb) -> matrix<Scalar> {
        const matrix<Scalar> h = enc.forward(tb.input, policy, mode::eval);
        if constexpr (is_prompt_head_v<Head>) {
          return head.forward(enc.weights(), h, tb.input, tb.mask_pos, nullptr);
        } else {
          return head.forward(enc.weights(), h, tb.input, mode::eval, nullptr, nullptr);
        }
      });
    }
    index classes() const override { return head.num_classes(); }
    index parameters() const override { return count; }

    Policy policy;
    Head head;
    index count = 0;
  };

  const task_base& find(const std::string& name, const char* where) const {
    const auto t = m_tasks.find(name);
    if (t == m_tasks.end())
      throw invalid_argument(std::string(where) + ": task '" + name + "' is not loaded (" + known_names() +
                             ")");
    return *t->second;
  }

  std::string known_names() const {
    if (m_tasks.empty()) return "no tasks loaded";
    std::string s = "loaded: ";
    bool first = true;
    for (const auto& t : m_tasks) {
      s += (first ? "" : ", ") + t.first;
      first = false;
    }
    return s;
  }

  const encoder_type* m_enc;
  std::int32_t m_pad;
  std::map<std::string, std::unique_ptr<task_base>> m_tasks;
};

}  // namespace peft

#endif  // PEFT_SERVE_MULTI_TASK_HPP
