// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_SCHEDULE_HPP
#define PEFT_OPTIM_SCHEDULE_HPP

/// @file schedule.hpp
/// Learning-rate schedules as values: `lr_at(k)` is the learning rate of the optimizer step
/// taken after `k` steps (k = 0 for the first step), with the semantics of Hugging Face's
/// `get_constant_schedule`, `get_constant_schedule_with_warmup`,
/// `get_linear_schedule_with_warmup` (a `LambdaLR` stepped once per optimizer step) and
/// PyTorch's `StepLR` (stepped once per epoch or step, as the caller counts).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "../error.hpp"

namespace peft {

/// One learning-rate schedule. Build with the named constructors.
class lr_schedule {
public:
  enum class kind { constant, constant_with_warmup, linear, step };

  /// lr for every step.
  static lr_schedule constant(double lr) {
    return {kind::constant, lr, 0, 0, 1, 1.0, "lr_schedule::constant"};
  }

  /// `lr * k / warmup` for k < warmup, then `lr`.
  static lr_schedule constant_with_warmup(double lr, std::int64_t warmup) {
    return {kind::constant_with_warmup, lr, warmup, 0, 1, 1.0, "lr_schedule::constant_with_warmup"};
  }

  /// `lr * k / max(1, warmup)` for k < warmup, then `lr * max(0, (total - k) / max(1, total - warmup))`:
  /// linear warm-up from 0, then linear decay to 0 at step `total`.
  /// @throws invalid_argument unless 0 <= warmup <= total and total > 0
  static lr_schedule linear(double lr, std::int64_t warmup, std::int64_t total) {
    return {kind::linear, lr, warmup, total, 1, 1.0, "lr_schedule::linear"};
  }

  /// `lr * gamma^floor(k / step_size)` (PyTorch `StepLR`).
  static lr_schedule step(double lr, std::int64_t step_size, double gamma) {
    return {kind::step, lr, 0, 0, step_size, gamma, "lr_schedule::step"};
  }

  /// Multiplier of the peak rate at step k (HF's lambda), in [0, 1] except for `step` with gamma > 1.
  /// @throws invalid_argument for k < 0
  double factor(std::int64_t k) const {
    if (k < 0) throw invalid_argument("lr_schedule::factor: step expected >= 0, got " + std::to_string(k));
    const auto d = [](std::int64_t v) { return static_cast<double>(v); };
    switch (m_kind) {
      case kind::constant: return 1.0;
      case kind::constant_with_warmup:
        if (k < m_warmup) return d(k) / std::max(1.0, d(m_warmup));
        return 1.0;
      case kind::linear:
        if (k < m_warmup) return d(k) / d(std::max<std::int64_t>(1, m_warmup));
        return std::max(0.0, d(m_total - k) / d(std::max<std::int64_t>(1, m_total - m_warmup)));
      case kind::step: return std::pow(m_gamma, d(k / m_step_size));
    }
    return 1.0;
  }

  /// Learning rate of the step taken after `k` steps.
  double lr_at(std::int64_t k) const { return m_lr * factor(k); }
  double operator()(std::int64_t k) const { return lr_at(k); }

  kind type() const noexcept { return m_kind; }
  double peak_lr() const noexcept { return m_lr; }
  std::int64_t warmup_steps() const noexcept { return m_warmup; }
  std::int64_t total_steps() const noexcept { return m_total; }

  /// "constant", "constant_with_warmup", "linear" or "step".
  std::string name() const {
    switch (m_kind) {
      case kind::constant: return "constant";
      case kind::constant_with_warmup: return "constant_with_warmup";
      case kind::linear: return "linear";
      case kind::step: return "step";
    }
    return "?";
  }

private:
  lr_schedule(kind k, double lr, std::int64_t warmup, std::int64_t total, std::int64_t step_size,
              double gamma, const char* where)
      : m_kind(k), m_lr(lr), m_warmup(warmup), m_total(total), m_step_size(step_size), m_gamma(gamma) {
    const std::string w = where;
    if (!std::isfinite(lr) || lr < 0)
      throw invalid_argument(w + ": lr expected finite and >= 0, got " + std::to_string(lr));
    if (warmup < 0) throw invalid_argument(w + ": warmup steps expected >= 0, got " + std::to_string(warmup));
    if (k == kind::linear) {
      if (total <= 0) throw invalid_argument(w + ": total steps expected > 0, got " + std::to_string(total));
      if (warmup > total)
        throw invalid_argument(w + ": warmup steps expected <= total steps (" + std::to_string(total) +
                               "), got " + std::to_string(warmup));
    }
    if (step_size <= 0)
      throw invalid_argument(w + ": step_size expected > 0, got " + std::to_string(step_size));
    if (!std::isfinite(gamma) || gamma < 0)
      throw invalid_argument(w + ": gamma expected finite and >= 0, got " + std::to_string(gamma));
  }

  kind m_kind;
  double m_lr;
  std::int64_t m_warmup, m_total, m_step_size;
  double m_gamma;
};

}  // namespace peft

#endif  // PEFT_OPTIM_SCHEDULE_HPP
