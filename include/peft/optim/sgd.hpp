// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_SGD_HPP
#define PEFT_OPTIM_SGD_HPP

/// @file sgd.hpp
/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and (coupled, L2)
/// weight decay, with the update rule of `torch.optim.SGD`.

#include <string>

#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "optimizer.hpp"

namespace peft {

/// Hyper-parameters of `sgd` (defaults as `torch.optim.SGD`, except that lr has one).
struct sgd_hyper {
  double lr = 1e-3;           ///< learning rate used by `step(set)`
  double momentum = 0.0;      ///< in [0, 1)
  double dampening = 0.0;     ///< in [0, 1]
  bool nesterov = false;      ///< needs momentum > 0 and dampening = 0
  double weight_decay = 0.0;  ///< L2 term added to the gradient of `weight` blocks
  bool check_finite = true;   ///< throw `numeric_error` on NaN/Inf gradients before updating
};

/// SGD over a `parameter_set`. Per block, with `g` its gradient, `t` the store's step count:
/// ```
/// g = g + wd * p                                  (wd of the block: 0 for bias / norm)
/// if momentum: buf = (t == 1) ? g : momentum * buf + (1 - dampening) * g
///              g   = nesterov ? g + momentum * buf : buf
/// p = p - lr * g
/// ```
/// Usage: `peft::sgd<float> opt({0.1, 0.9}); opt.init(set); ... opt.step(set, lr);`
/// @tparam Scalar float or double
template <typename Scalar = float>
class sgd : public optimizer_base<Scalar> {
  using base = optimizer_base<Scalar>;

public:
  /// @throws invalid_argument for a negative or non-finite rate, momentum outside [0, 1),
  ///         dampening outside [0, 1], or Nesterov without momentum / with dampening
  explicit sgd(const sgd_hyper& h = {})
      : base("sgd", h.lr, h.weight_decay, h.check_finite, {"momentum_buffer"}), m_hyper(h) {
    if (!(h.momentum >= 0 && h.momentum < 1))
      throw invalid_argument("sgd::sgd: momentum expected in [0, 1), got " + std::to_string(h.momentum));
    if (!(h.dampening >= 0 && h.dampening <= 1))
      throw invalid_argument("sgd::sgd: dampening expected in [0, 1], got " + std::to_string(h.dampening));
    if (h.nesterov && (h.momentum <= 0 || h.dampening != 0))
      throw invalid_argument("sgd::sgd: nesterov expected momentum > 0 and dampening 0, got momentum " +
                             std::to_string(h.momentum) + " and dampening " + std::to_string(h.dampening));
  }

  const sgd_hyper& hyper() const noexcept { return m_hyper; }

  /// One update at the default learning rate.
  void step(parameter_set<Scalar>& set) { step(set, m_hyper.lr); }

  /// One update at learning rate `lr` (e.g. `schedule.lr_at(k)`), per-store/group scales applied.
  /// @throws error before `init`; invalid_argument if the set's layout changed since `init`;
  ///         numeric_error on a non-finite gradient (nothing is modified then)
  void step(parameter_set<Scalar>& set, double lr) {
    auto& buf = this->buffer(0);
    const double mu = m_hyper.momentum, damp = m_hyper.dampening;
    const bool nesterov = m_hyper.nesterov;
    this->for_each_block(
        set, lr,
        [&](index, const param_block&, auto p, auto g, index off, double blr, double wd, std::int64_t t) {
          vector<Scalar> d = g;
          if (wd != 0) d += static_cast<Scalar>(wd) * p;
          if (mu != 0) {
            auto b = buf.segment(off, d.size());
            if (t == 1)
              b = d;
            else
              b = static_cast<Scalar>(mu) * b + static_cast<Scalar>(1 - damp) * d;
            if (nesterov)
              d += static_cast<Scalar>(mu) * b;
            else
              d = b;
          }
          p -= static_cast<Scalar>(blr) * d;
        });
  }

private:
  sgd_hyper m_hyper;
};

}  // namespace peft

#endif  // PEFT_OPTIM_SGD_HPP
