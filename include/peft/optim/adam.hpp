// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_OPTIM_ADAM_HPP
#define PEFT_OPTIM_ADAM_HPP

/// @file adam.hpp
/// Adam (Kingma & Ba, ICLR 2015) with coupled L2 weight decay, and AdamW (Loshchilov & Hutter,
/// ICLR 2019) with decoupled weight decay, both with the update rules of `torch.optim.Adam` /
/// `torch.optim.AdamW` (the optimizer the Hugging Face Trainer uses; LiST's AdamW).

#include <cmath>
#include <string>

#include "../core/parameter.hpp"
#include "../core/types.hpp"
#include "../error.hpp"
#include "optimizer.hpp"

namespace peft {

/// Hyper-parameters of `adam` (defaults as `torch.optim.Adam`).
struct adam_hyper {
  double lr = 1e-3;           ///< learning rate used by `step(set)`
  double beta1 = 0.9;         ///< in [0, 1)
  double beta2 = 0.999;       ///< in [0, 1)
  double eps = 1e-8;          ///< > 0
  double weight_decay = 0.0;  ///< L2 term added to the gradient of `weight` blocks
  bool check_finite = true;   ///< throw `numeric_error` on NaN/Inf gradients before updating
};

/// Hyper-parameters of `adamw` (defaults as `torch.optim.AdamW`: weight decay 0.01).
struct adamw_hyper {
  double lr = 1e-3;            ///< learning rate used by `step(set)`
  double beta1 = 0.9;          ///< in [0, 1)
  double beta2 = 0.999;        ///< in [0, 1)
  double eps = 1e-8;           ///< > 0
  double weight_decay = 0.01;  ///< decoupled decay of `weight` blocks (none on bias / norm)
  bool check_finite = true;    ///< throw `numeric_error` on NaN/Inf gradients before updating
};

namespace detail {

/// The Adam family; `Decoupled` selects AdamW's decay.
template <typename Scalar, bool Decoupled>
class adam_family : public optimizer_base<Scalar> {
  using base = optimizer_base<Scalar>;

public:
  /// One update at the default learning rate.
  void step(parameter_set<Scalar>& set) { step(set, this->m_lr); }

  /// One update at learning rate `lr` (e.g. `schedule.lr_at(k)`), per-store/group scales applied.
  /// @throws error before `init`; invalid_argument if the set's layout changed since `init`;
  ///         numeric_error on a non-finite gradient (nothing is modified then)
  void step(parameter_set<Scalar>& set, double lr) {
    auto& m = this->buffer(0);
    auto& v = this->buffer(1);
    const double b1 = m_beta1, b2 = m_beta2, eps = m_eps;
    this->for_each_block(
        set, lr,
        [&](index, const param_block&, auto p, auto g, index off, double blr, double wd, std::int64_t t) {
          const double tt = static_cast<double>(t);
          const Scalar step_size = static_cast<Scalar>(blr / (1 - std::pow(b1, tt)));
          const Scalar bc2_sqrt = static_cast<Scalar>(std::sqrt(1 - std::pow(b2, tt)));
          const Scalar sb1 = static_cast<Scalar>(b1), sb2 = static_cast<Scalar>(b2);
          const Scalar cb1 = static_cast<Scalar>(1 - b1), cb2 = static_cast<Scalar>(1 - b2);
          const Scalar decay = static_cast<Scalar>(Decoupled ? 1 - blr * wd : wd);
          const Scalar seps = static_cast<Scalar>(eps);
          // A scalar loop: IEEE sqrt as torch (Eigen's AVX-512 packet sqrt is approximate).
          for (index k = 0; k < p.size(); ++k) {
            Scalar gk = g[k];
            if constexpr (Decoupled) {
              if (wd != 0) p[k] *= decay;
            } else {
              if (wd != 0) gk += decay * p[k];
            }
            Scalar& mk = m[off + k];
            Scalar& vk = v[off + k];
            mk = sb1 * mk + cb1 * gk;
            vk = sb2 * vk + cb2 * gk * gk;
            p[k] -= step_size * mk / (std::sqrt(vk) / bc2_sqrt + seps);
          }
        });
  }

  double beta1() const noexcept { return m_beta1; }
  double beta2() const noexcept { return m_beta2; }
  double eps() const noexcept { return m_eps; }

protected:
  adam_family(const char* kind, double lr, double beta1, double beta2, double eps, double wd,
              bool check_finite)
      : base(kind, lr, wd, check_finite, {"exp_avg", "exp_avg_sq"}),
        m_beta1(beta1),
        m_beta2(beta2),
        m_eps(eps) {
    const std::string where = std::string(kind) + "::" + kind;
    if (!(beta1 >= 0 && beta1 < 1))
      throw invalid_argument(where + ": beta1 expected in [0, 1), got " + std::to_string(beta1));
    if (!(beta2 >= 0 && beta2 < 1))
      throw invalid_argument(where + ": beta2 expected in [0, 1), got " + std::to_string(beta2));
    if (!(eps > 0) || !std::isfinite(eps))
      throw invalid_argument(where + ": eps expected finite and > 0, got " + std::to_string(eps));
  }

private:
  double m_beta1, m_beta2, m_eps;
};

}  // namespace detail

/// Adam over a `parameter_set`. Per block, with `t` the store's step count:
/// ```
/// g = g + wd * p                    (coupled L2; wd of the block: 0 for bias / norm)
/// m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
/// p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
/// @tparam Scalar float or double
template <typename Scalar = float>
class adam : public detail::adam_family<Scalar, false> {
public:
  /// @throws invalid_argument for lr/wd < 0, betas outside [0, 1), eps <= 0
  explicit adam(const adam_hyper& h = {})
      : detail::adam_family<Scalar, false>("adam", h.lr, h.beta1, h.beta2, h.eps, h.weight_decay,
                                           h.check_finite),
        m_hyper(h) {}
  const adam_hyper& hyper() const noexcept { return m_hyper; }

private:
  adam_hyper m_hyper;
};

/// AdamW over a `parameter_set`: Adam with decoupled weight decay, as `torch.optim.AdamW`
/// (the Hugging Face Trainer's default optimizer; LiST: no decay on bias and LayerNorm):
/// ```
/// p = p - lr * wd * p               (wd of the block: 0 for bias / norm)
/// m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
/// p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
/// (The legacy `transformers.AdamW` decays after the update and adds eps before the bias
/// correction of v; the difference is O(lr^2 wd) and O(eps).)
/// @tparam Scalar float or double
template <typename Scalar = float>
class adamw : public detail::adam_family<Scalar, true> {
public:
  /// @throws invalid_argument for lr/wd < 0, betas outside [0, 1), eps <= 0
  explicit adamw(const adamw_hyper& h = {})
      : detail::adam_family<Scalar, true>("adamw", h.lr, h.beta1, h.beta2, h.eps, h.weight_decay,
                                          h.check_finite),
        m_hyper(h) {}
  const adamw_hyper& hyper() const noexcept { return m_hyper; }

private:
  adamw_hyper m_hyper;
};

}  // namespace peft

#endif  // PEFT_OPTIM_ADAM_HPP
