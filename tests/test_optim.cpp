// SPDX-License-Identifier: Apache-2.0
// Optimizers, schedules and clipping: hand-computed steps, PyTorch reference steps
// (tests/reference/torch_optim.py), layout checks, state export/import and NaN handling.
#include <peft/optim/optim.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "test_common.hpp"

namespace {

using peft::param_group;

/// Store 0: a.weight [2x3], a.bias [3]. Store 1: b.norm [2], b.weight [1x2] (as torch_optim.py).
template <typename S>
struct tiny_set {
  peft::parameter_store<S> a, b;
  peft::parameter_set<S> set;
  tiny_set() {
    a.add("a.weight", 2, 3, param_group::weight);
    a.add("a.bias", 3, 1, param_group::bias);
    b.add("b.norm", 2, 1, param_group::norm);
    b.add("b.weight", 1, 2, param_group::weight);
    set.add(a);
    set.add(b);
    peft::vector<S> v(set.size());
    for (peft::index j = 0; j < v.size(); ++j)
      v[j] = static_cast<S>(std::sin(0.7 * static_cast<double>(j) + 0.3));
    set.set_flat(v);
  }
  tiny_set(const tiny_set&) = delete;
  /// Gradient of step t (1-based): cos(1.3 j + 0.5 t) (1 + 0.1 t).
  void set_grads(int t) {
    peft::index j = 0;
    for (auto* st : {&a, &b})
      for (peft::index k = 0; k < st->size(); ++k, ++j)
        st->grads()[k] = static_cast<S>(std::cos(1.3 * static_cast<double>(j) + 0.5 * t) * (1 + 0.1 * t));
  }
};

/// One scalar block in its own store, with a chosen group.
template <typename S>
struct scalar_set {
  peft::parameter_store<S> st;
  peft::parameter_set<S> set;
  explicit scalar_set(S value, param_group g = param_group::weight) {
    st.add("p", 1, 1, g);
    st.values()[0] = value;
    set.add(st);
  }
  S& value() { return st.values()[0]; }
  S& grad() { return st.grads()[0]; }
};

bool have_reference() {
  const bool ok = std::filesystem::exists(peft_test::reference_dir() + "/optim.json");
  if (!ok)
    FAIL_CHECK("reference_optim fixture output missing (no /usr/bin/python3 with torch?): torch parity not checked");
  return ok;
}

nlohmann::json reference() {
  return nlohmann::json::parse(peft_test::read_text(peft_test::reference_dir() + "/optim.json"));
}

template <typename S, typename Opt>
std::vector<std::vector<double>> run3(Opt& opt, tiny_set<S>& ts, const peft::lr_schedule* sched = nullptr) {
  std::vector<std::vector<double>> trace;
  opt.init(ts.set);
  for (int t = 1; t <= 3; ++t) {
    ts.set_grads(t);
    if (sched)
      opt.step(ts.set, sched->lr_at(t - 1));
    else
      opt.step(ts.set);
    const auto v = ts.set.get_flat();
    trace.emplace_back(v.data(), v.data() + v.size());
  }
  return trace;
}

void compare_trace(const std::vector<std::vector<double>>& got, const nlohmann::json& want, double tol) {
  REQUIRE(want.size() == got.size());
  double worst = 0;
  for (std::size_t t = 0; t < got.size(); ++t) {
    REQUIRE(want[t].size() == got[t].size());
    for (std::size_t j = 0; j < got[t].size(); ++j) {
      const double w = want[t][j].get<double>();
      worst = std::max(worst, std::abs(got[t][j] - w));
      INFO("step " << t + 1 << " entry " << j);
      CHECK(got[t][j] == Approx(w).margin(tol).epsilon(tol));
    }
  }
  INFO("max |peft - torch| = " << worst);
  CHECK(worst <= tol);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Hand-computed steps.

TEMPLATE_TEST_CASE("sgd: hand-computed steps", "[optim][sgd]", float, double) {
  using S = TestType;
  const double tol = std::is_same_v<S, float> ? 1e-6 : 1e-14;
  SECTION("plain: p -= lr g") {
    scalar_set<S> s(S(1));
    peft::sgd<S> opt({0.1});
    opt.init(s.set);
    s.grad() = S(0.5);
    opt.step(s.set);
    CHECK(s.value() == Approx(0.95).margin(tol));
    opt.step(s.set, 0.2);  // explicit rate
    CHECK(s.value() == Approx(0.85).margin(tol));
    CHECK(opt.step_count(0) == 2);
  }
  SECTION("momentum 0.9, g = 1: buffers 1, 1.9, 2.71") {
    scalar_set<S> s(S(1));
    peft::sgd_hyper h;
    h.lr = 0.1;
    h.momentum = 0.9;
    peft::sgd<S> opt(h);
    opt.init(s.set);
    const double want[] = {0.9, 0.71, 0.439};
    for (double w : want) {
      s.grad() = S(1);
      opt.step(s.set);
      CHECK(s.value() == Approx(w).margin(tol));
    }
  }
  SECTION("nesterov 0.9, g = 1: steps 1.9, 2.71") {
    scalar_set<S> s(S(1));
    peft::sgd_hyper h;
    h.lr = 0.1;
    h.momentum = 0.9;
    h.nesterov = true;
    peft::sgd<S> opt(h);
    opt.init(s.set);
    s.grad() = S(1);
    opt.step(s.set);
    CHECK(s.value() == Approx(0.81).margin(tol));
    opt.step(s.set);
    CHECK(s.value() == Approx(0.539).margin(tol));
  }
  SECTION("weight decay (L2) on weights only") {
    peft::parameter_store<S> st;
    st.add("w", 1, 1, param_group::weight);
    st.add("b", 1, 1, param_group::bias);
    st.add("ln", 1, 1, param_group::norm);
    st.values().setConstant(S(2));
    peft::parameter_set<S> set(st);
    peft::sgd_hyper h;
    h.lr = 0.5;
    h.weight_decay = 0.1;
    peft::sgd<S> opt(h);
    opt.init(set);
    opt.step(set);  // zero gradient: only the decay moves the weight, 2 - 0.5 * 0.1 * 2
    CHECK(st.values()[0] == Approx(1.9).margin(tol));
    CHECK(st.values()[1] == S(2));
    CHECK(st.values()[2] == S(2));
  }
}

TEMPLATE_TEST_CASE("adam / adamw: hand-computed steps", "[optim][adam]", float, double) {
  using S = TestType;
  const double tol = std::is_same_v<S, float> ? 2e-6 : 1e-13;
  SECTION("adam with a constant gradient moves lr * g / (|g| + eps) per step (bias correction)") {
    scalar_set<S> s(S(1));
    peft::adam_hyper h;
    h.lr = 0.01;
    peft::adam<S> opt(h);
    opt.init(s.set);
    const double d = 0.01 * 0.5 / (0.5 + 1e-8);
    for (int t = 1; t <= 3; ++t) {
      s.grad() = S(0.5);
      opt.step(s.set);
      CHECK(s.value() == Approx(1 - t * d).margin(tol));
    }
  }
  SECTION("adam, first step with a negative gradient") {
    scalar_set<S> s(S(0));
    peft::adam<S> opt(peft::adam_hyper{0.1});
    opt.init(s.set);
    s.grad() = S(-3);
    opt.step(s.set);
    CHECK(s.value() == Approx(0.1 * 3 / (3 + 1e-8)).margin(tol));
  }
  SECTION("adamw decays decoupled from the gradient; adam + L2 does not") {
    // p = 2, g = 0.5, lr = 0.01, wd = 0.1.
    // AdamW: p = 2 (1 - 0.001) - 0.01 * 0.5 / (0.5 + 1e-8) = 1.988 (+1e-10)
    // Adam+L2: g' = 0.5 + 0.1 * 2 = 0.7, p = 2 - 0.01 * 0.7 / (0.7 + 1e-8) = 1.99 (+1.4e-10)
    peft::adamw_hyper hw;
    hw.lr = 0.01;
    hw.weight_decay = 0.1;
    peft::adam_hyper ha;
    ha.lr = 0.01;
    ha.weight_decay = 0.1;
    scalar_set<S> w(S(2)), l2(S(2)), bias(S(2), param_group::bias);
    peft::adamw<S> opt_w(hw), opt_b(hw);
    peft::adam<S> opt_l2(ha);
    opt_w.init(w.set);
    opt_b.init(bias.set);
    opt_l2.init(l2.set);
    w.grad() = l2.grad() = bias.grad() = S(0.5);
    opt_w.step(w.set);
    opt_l2.step(l2.set);
    opt_b.step(bias.set);
    CHECK(w.value() == Approx(1.998 - 0.01 * 0.5 / (0.5 + 1e-8)).margin(tol));
    CHECK(l2.value() == Approx(2 - 0.01 * 0.7 / (0.7 + 1e-8)).margin(tol));
    CHECK(std::abs(static_cast<double>(w.value() - l2.value())) > 1.9e-3);
    // No decay on a bias block: the plain Adam step.
    CHECK(bias.value() == Approx(2 - 0.01 * 0.5 / (0.5 + 1e-8)).margin(tol));
    // Second step, zero gradient: AdamW still decays (and the momentum keeps moving it).
    w.grad() = S(0);
    opt_w.step(w.set);
    const double p1 = 1.998 - 0.01 * 0.5 / (0.5 + 1e-8);
    const double m = 0.09 * 0.5 / (1 - 0.81), v = 0.999 * 0.001 * 0.25 / (1 - 0.999 * 0.999);
    CHECK(w.value() == Approx(p1 * (1 - 0.001) - 0.01 * m / (std::sqrt(v) + 1e-8)).margin(tol));
  }
  SECTION("adamw default hyper-parameters are torch's") {
    peft::adamw<S> opt;
    CHECK(opt.lr() == 1e-3);
    CHECK(opt.beta1() == 0.9);
    CHECK(opt.beta2() == 0.999);
    CHECK(opt.eps() == 1e-8);
    CHECK(opt.weight_decay() == 0.01);
  }
}

TEST_CASE("optimizers: no decay on bias and norm blocks and per-store or per-group overrides", "[optim]") {
  using S = double;
  peft::parameter_store<S> a, b;
  a.add("w", 1, 1, param_group::weight);
  a.add("bias", 1, 1, param_group::bias);
  a.add("ln", 1, 1, param_group::norm);
  b.add("w", 1, 1, param_group::weight);
  a.values().setConstant(1.0);
  b.values().setConstant(1.0);
  peft::parameter_set<S> set(a, b);
  peft::sgd_hyper h;
  h.lr = 0.1;
  h.weight_decay = 0.5;

  SECTION("defaults: only weights decay") {
    peft::sgd<S> opt(h);
    opt.init(set);
    opt.step(set);
    CHECK(a.values()[0] == Approx(0.95));
    CHECK(a.values()[1] == 1.0);
    CHECK(a.values()[2] == 1.0);
    CHECK(b.values()[0] == Approx(0.95));
  }
  SECTION("store override of lr scale and decay; group override for norm") {
    peft::sgd<S> opt(h);
    peft::param_options ob;
    ob.lr_scale = 2.0;
    ob.weight_decay = 0.25;
    opt.set_store_options(1, ob);
    peft::param_options on;
    on.weight_decay = 1.0;
    opt.set_group_options(param_group::norm, on);
    opt.init(set);
    opt.step(set);
    CHECK(a.values()[0] == Approx(0.95));  // 1 - 0.1 * 0.5
    CHECK(a.values()[1] == 1.0);           // bias: never decayed by default
    CHECK(a.values()[2] == Approx(0.9));   // norm: group override 1.0
    CHECK(b.values()[0] == Approx(1 - 0.2 * 0.25));
    CHECK(opt.block_lr(1, b.block(0), 0.1) == Approx(0.2));
    CHECK(opt.block_weight_decay(0, a.block(1)) == 0.0);
  }
  SECTION("a frozen store keeps its values, state and step count") {
    peft::adamw<S> opt(peft::adamw_hyper{0.1});
    opt.set_store_frozen(1, true);
    opt.init(set);
    a.grads().setConstant(1.0);
    b.grads().setConstant(1.0);
    opt.step(set);
    CHECK(b.values()[0] == 1.0);
    CHECK(a.values()[0] < 1.0);
    CHECK(opt.step_count(0) == 1);
    CHECK(opt.step_count(1) == 0);
    CHECK(opt.state().buffers[0][3] == 0.0);
    // Unfreeze (MPMP stage 2): store 1's first step uses its own bias correction (t = 1).
    opt.set_store_frozen(1, false);
    opt.set_store_frozen(0, true);
    opt.step(set);
    CHECK(b.values()[0] == Approx(1.0 * (1 - 0.1 * 0.01) - 0.1 * 1.0 / (1.0 + 1e-8)).epsilon(1e-12));
    CHECK(opt.step_count(0) == 1);
    CHECK(opt.step_count(1) == 1);
  }
  SECTION("bad options") {
    peft::sgd<S> opt(h);
    peft::param_options bad;
    bad.lr_scale = -1;
    CHECK_THROWS_AS(opt.set_store_options(0, bad), peft::invalid_argument);
    bad.lr_scale = 1;
    bad.weight_decay = std::nan("");
    CHECK_THROWS_AS(opt.set_group_options(param_group::bias, bad), peft::invalid_argument);
    CHECK_THROWS_AS(opt.set_store_options(-1, {}), peft::invalid_argument);
    opt.set_store_lr_scale(5, 0.5);  // the set has 2 stores
    CHECK_THROWS_WITH(opt.init(set), Catch::Contains("options were set for store 5"));
  }
}

// ---------------------------------------------------------------------------------------------
// Against torch.optim.

TEST_CASE("optimizers: three steps equal torch.optim (float64)", "[optim][torch]") {
  if (!have_reference()) return;
  const auto ref = reference();
  const auto& cases = ref.at("cases");
  const double tol = 1e-12;
  SECTION("sgd") {
    tiny_set<double> ts;
    peft::sgd<double> opt(peft::sgd_hyper{0.1});
    compare_trace(run3(opt, ts), cases.at("sgd_plain"), tol);
  }
  SECTION("sgd momentum + dampening + decay") {
    tiny_set<double> ts;
    peft::sgd_hyper h;
    h.lr = 0.1;
    h.momentum = 0.9;
    h.dampening = 0.1;
    h.weight_decay = 0.01;
    peft::sgd<double> opt(h);
    compare_trace(run3(opt, ts), cases.at("sgd_momentum"), tol);
  }
  SECTION("sgd nesterov + decay") {
    tiny_set<double> ts;
    peft::sgd_hyper h;
    h.lr = 0.05;
    h.momentum = 0.8;
    h.nesterov = true;
    h.weight_decay = 0.05;
    peft::sgd<double> opt(h);
    compare_trace(run3(opt, ts), cases.at("sgd_nesterov"), tol);
  }
  SECTION("adam") {
    tiny_set<double> ts;
    peft::adam<double> opt(peft::adam_hyper{0.01});
    compare_trace(run3(opt, ts), cases.at("adam"), tol);
  }
  SECTION("adam + L2") {
    tiny_set<double> ts;
    peft::adam_hyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    peft::adam<double> opt(h);
    compare_trace(run3(opt, ts), cases.at("adam_l2"), tol);
  }
  SECTION("adamw (no decay on bias / norm)") {
    tiny_set<double> ts;
    peft::adamw_hyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    peft::adamw<double> opt(h);
    compare_trace(run3(opt, ts), cases.at("adamw"), tol);
  }
  SECTION("adamw with store 1 at half LR and its own decay") {
    tiny_set<double> ts;
    peft::adamw_hyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    peft::adamw<double> opt(h);
    peft::param_options o;
    o.lr_scale = 0.5;
    o.weight_decay = 0.3;
    opt.set_store_options(1, o);
    compare_trace(run3(opt, ts), cases.at("adamw_store_options"), tol);
  }
  SECTION("adamw under a linear warm-up/decay schedule (LambdaLR)") {
    tiny_set<double> ts;
    peft::adamw_hyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    peft::adamw<double> opt(h);
    const auto sched = peft::lr_schedule::linear(0.01, 1, 3);
    compare_trace(run3(opt, ts, &sched), cases.at("adamw_linear_schedule"), tol);
  }
  SECTION("adam and adamw differ on this set") {
    CHECK(cases.at("adam_l2")[2][0].get<double>() !=
          Approx(cases.at("adamw")[2][0].get<double>()).epsilon(1e-6));
  }
}

TEST_CASE("optimizers: three steps equal torch.optim (float32)", "[optim][torch]") {
  if (!have_reference()) return;
  const auto ref = reference();
  const auto& cases = ref.at("cases_f32");
  const double tol = 2e-6;
  SECTION("sgd momentum") {
    tiny_set<float> ts;
    peft::sgd_hyper h;
    h.lr = 0.1;
    h.momentum = 0.9;
    h.dampening = 0.1;
    h.weight_decay = 0.01;
    peft::sgd<float> opt(h);
    compare_trace(run3(opt, ts), cases.at("sgd_momentum"), tol);
  }
  SECTION("adamw") {
    tiny_set<float> ts;
    peft::adamw_hyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    peft::adamw<float> opt(h);
    compare_trace(run3(opt, ts), cases.at("adamw"), tol);
  }
  SECTION("adamw store options") {
    tiny_set<float> ts;
    peft::adamw_hyper h;
    h.lr = 0.01;
    h.weight_decay = 0.1;
    peft::adamw<float> opt(h);
    peft::param_options o;
    o.lr_scale = 0.5;
    o.weight_decay = 0.3;
    opt.set_store_options(1, o);
    compare_trace(run3(opt, ts), cases.at("adamw_store_options"), tol);
  }
}

// ---------------------------------------------------------------------------------------------
// State: sized from the set, indexed by position, rejected when the set changes.

TEMPLATE_TEST_CASE("optimizers: state sized from the set and layout changes rejected", "[optim][state]",
                   float, double) {
  using S = TestType;
  tiny_set<S> ts;
  peft::adamw<S> opt;
  CHECK_FALSE(opt.initialized());
  CHECK_THROWS_WITH(opt.step(ts.set), Catch::Contains("adamw::step: init(set) must be called"));
  CHECK_THROWS_AS(opt.state(), peft::error);
  opt.init(ts.set);
  const auto st = opt.state();
  CHECK(st.kind == "adamw");
  CHECK(st.store_sizes == std::vector<peft::index>{9, 4});
  REQUIRE(st.buffers.size() == 2);
  CHECK(st.buffer_names == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
  CHECK(st.buffers[0].size() == 13);
  CHECK(st.buffers[1].size() == 13);
  CHECK(st.steps == std::vector<std::int64_t>{0, 0});

  SECTION("a block added to a store") {
    ts.b.add("b.extra", 2, 2, param_group::weight);
    const auto before = ts.set.get_flat();
    CHECK_THROWS_WITH(opt.step(ts.set),
                      Catch::Contains("adamw::step: parameter set layout expected 2 stores of sizes "
                                      "[9, 4]") &&
                          Catch::Contains("got 2 stores of sizes [9, 8]"));
    CHECK(ts.set.get_flat() == before);
    opt.init(ts.set);  // re-init accepts the new layout
    CHECK(opt.state().buffers[0].size() == 17);
    CHECK_NOTHROW(opt.step(ts.set));
  }
  SECTION("a store added to the set") {
    peft::parameter_store<S> c;
    c.add("c", 1, 1, param_group::weight);
    ts.set.add(c);
    CHECK_THROWS_AS(opt.step(ts.set), peft::invalid_argument);
  }
  SECTION("a different set with the same total size but other stores") {
    peft::parameter_store<S> one;
    one.add("x", 13, 1, param_group::weight);
    peft::parameter_set<S> other(one);
    CHECK_THROWS_AS(opt.step(other), peft::invalid_argument);
  }
  SECTION("copies of the optimizer are independent (state by value, not by address)") {
    ts.set_grads(1);
    peft::adamw<S> copy = opt;
    opt.step(ts.set);
    CHECK(copy.step_count(0) == 0);
    CHECK(copy.state().buffers[0].isZero());
    CHECK_FALSE(opt.state().buffers[0].isZero());
  }
}

TEMPLATE_TEST_CASE("optimizers: export / import of state resumes exactly", "[optim][state]", float, double) {
  using S = TestType;
  auto check_resume = [](auto make) {
    tiny_set<S> straight, resumed;
    auto o1 = make();
    o1.init(straight.set);
    for (int t = 1; t <= 3; ++t) {
      straight.set_grads(t);
      o1.step(straight.set);
    }
    auto o2 = make();
    o2.init(resumed.set);
    resumed.set_grads(1);
    o2.step(resumed.set);
    const auto saved = o2.state();
    auto o3 = make();  // a fresh optimizer, as after a restart
    o3.load_state(resumed.set, saved);
    CHECK(o3.step_count(0) == 1);
    for (int t = 2; t <= 3; ++t) {
      resumed.set_grads(t);
      o3.step(resumed.set);
    }
    CHECK(resumed.set.get_flat() == straight.set.get_flat());
  };
  peft::sgd_hyper hs;
  hs.lr = 0.1;
  hs.momentum = 0.9;
  check_resume([&] { return peft::sgd<S>(hs); });
  check_resume([] { return peft::adam<S>(peft::adam_hyper{0.01}); });
  check_resume([] { return peft::adamw<S>(peft::adamw_hyper{0.01}); });

  SECTION("mismatched state is rejected") {
    tiny_set<S> ts;
    peft::adamw<S> opt;
    opt.init(ts.set);
    auto st = opt.state();
    peft::adam<S> other;
    CHECK_THROWS_WITH(other.load_state(ts.set, st), Catch::Contains("state kind expected adam, got adamw"));
    auto bad = st;
    bad.store_sizes = {9, 5};
    CHECK_THROWS_WITH(opt.load_state(ts.set, bad), Catch::Contains("state store sizes expected [9, 4]"));
    bad = st;
    bad.buffers[1].resize(3);
    CHECK_THROWS_WITH(opt.load_state(ts.set, bad),
                      Catch::Contains("buffer 'exp_avg_sq' size expected 13, got 3"));
    bad = st;
    bad.buffers[0][2] = std::numeric_limits<S>::quiet_NaN();
    CHECK_THROWS_AS(opt.load_state(ts.set, bad), peft::invalid_argument);
    bad = st;
    bad.buffer_names = {"exp_avg"};
    bad.buffers.pop_back();
    CHECK_THROWS_AS(opt.load_state(ts.set, bad), peft::invalid_argument);
    bad = st;
    bad.steps = {1};
    CHECK_THROWS_AS(opt.load_state(ts.set, bad), peft::invalid_argument);
  }
}

// ---------------------------------------------------------------------------------------------
// Non-finite gradients.

TEMPLATE_TEST_CASE("optimizers: a NaN/Inf gradient throws and leaves the parameters untouched",
                   "[optim][nan]", float, double) {
  using S = TestType;
  tiny_set<S> ts;
  peft::adamw<S> adamw;
  peft::sgd<S> sgd(peft::sgd_hyper{0.1, 0.9});
  adamw.init(ts.set);
  sgd.init(ts.set);
  ts.set_grads(1);
  adamw.step(ts.set);
  sgd.step(ts.set);
  const auto values = ts.set.get_flat();
  const auto adam_state = adamw.state();
  ts.b.grads()[3] = std::numeric_limits<S>::quiet_NaN();
  CHECK_THROWS_WITH(adamw.step(ts.set), Catch::Contains("adamw::step: gradient expected finite") &&
                                            Catch::Contains("store 1 block 'b.weight' entry 1 (nan)"));
  CHECK_THROWS_AS(sgd.step(ts.set), peft::numeric_error);
  CHECK(ts.set.get_flat() == values);
  CHECK(adamw.state().buffers[0] == adam_state.buffers[0]);
  CHECK(adamw.step_count(0) == 1);
  ts.a.grads()[0] = std::numeric_limits<S>::infinity();
  ts.b.grads()[3] = 0;
  CHECK_THROWS_WITH(adamw.step(ts.set), Catch::Contains("store 0 block 'a.weight' entry 0 (inf)"));
  CHECK(ts.set.get_flat() == values);
}

// ---------------------------------------------------------------------------------------------
// Clipping.

TEMPLATE_TEST_CASE("clip_grad_norm: torch semantics by hand", "[optim][clip]", float, double) {
  using S = TestType;
  peft::parameter_store<S> a, b;
  a.add("x", 1, 1, param_group::weight);
  b.add("y", 1, 1, param_group::bias);
  peft::parameter_set<S> set(a, b);
  a.grads()[0] = S(3);
  b.grads()[0] = S(4);
  SECTION("above max_norm: scaled by max_norm / (norm + 1e-6)") {
    const double n = peft::clip_grad_norm(set, 1.0);
    CHECK(n == Approx(5.0));
    CHECK(a.grads()[0] == Approx(3 / (5 + 1e-6)));
    CHECK(b.grads()[0] == Approx(4 / (5 + 1e-6)));
    CHECK(peft::grad_norm(set) == Approx(1.0).epsilon(1e-6));
  }
  SECTION("below max_norm: unchanged") {
    CHECK(peft::clip_grad_norm(set, 10.0) == Approx(5.0));
    CHECK(a.grads()[0] == S(3));
    CHECK(b.grads()[0] == S(4));
  }
  SECTION("NaN / Inf: numeric_error naming the entry, gradients untouched (not zeroed)") {
    b.grads()[0] = std::numeric_limits<S>::quiet_NaN();
    CHECK_THROWS_WITH(peft::clip_grad_norm(set, 1.0),
                      Catch::Contains("clip_grad_norm: gradient norm expected "
                                      "finite, got nan") &&
                          Catch::Contains("store 1 block 'y' entry 0"));
    CHECK(a.grads()[0] == S(3));
    CHECK(std::isnan(b.grads()[0]));
    b.grads()[0] = -std::numeric_limits<S>::infinity();
    CHECK_THROWS_AS(peft::clip_grad_norm(set, 1.0), peft::numeric_error);
    CHECK(a.grads()[0] == S(3));
  }
  SECTION("bad max_norm") {
    CHECK_THROWS_AS(peft::clip_grad_norm(set, 0.0), peft::invalid_argument);
    CHECK_THROWS_AS(peft::clip_grad_norm(set, -1.0), peft::invalid_argument);
    CHECK_THROWS_AS(peft::clip_grad_norm(set, std::nan("")), peft::invalid_argument);
  }
}

TEST_CASE("clip_grad_norm: equals torch.nn.utils.clip_grad_norm_", "[optim][clip][torch]") {
  if (!have_reference()) return;
  const auto ref = reference();
  for (const auto& c : ref.at("clip")) {
    tiny_set<double> ts;
    ts.set_grads(1);
    for (auto* st : {&ts.a, &ts.b}) st->grads() *= c.at("scale").get<double>();
    const double n = peft::clip_grad_norm(ts.set, c.at("max_norm").get<double>());
    INFO("scale " << c.at("scale").get<double>() << " max_norm " << c.at("max_norm").get<double>());
    CHECK(n == Approx(c.at("norm").get<double>()).epsilon(1e-14));
    const auto g = ts.set.get_flat_grad();
    const auto want = c.at("grads").get<std::vector<double>>();
    REQUIRE(static_cast<std::size_t>(g.size()) == want.size());
    for (std::size_t j = 0; j < want.size(); ++j)
      CHECK(g[static_cast<peft::index>(j)] == Approx(want[j]).epsilon(1e-14));
  }
}

// ---------------------------------------------------------------------------------------------
// Schedules.

TEST_CASE("lr_schedule: boundary steps (HF semantics)", "[optim][schedule]") {
  SECTION("constant") {
    const auto s = peft::lr_schedule::constant(0.5);
    CHECK(s.lr_at(0) == 0.5);
    CHECK(s(1000000) == 0.5);
    CHECK(s.name() == "constant");
  }
  SECTION("linear warm-up then linear decay to 0") {
    const auto s = peft::lr_schedule::linear(1.0, 10, 110);
    CHECK(s.lr_at(0) == 0.0);  // the first step has lr 0 when there is warm-up (HF)
    CHECK(s.lr_at(1) == Approx(0.1));
    CHECK(s.lr_at(5) == Approx(0.5));
    CHECK(s.lr_at(9) == Approx(0.9));
    CHECK(s.lr_at(10) == 1.0);  // peak
    CHECK(s.lr_at(11) == Approx(0.99));
    CHECK(s.lr_at(60) == Approx(0.5));
    CHECK(s.lr_at(109) == Approx(0.01));
    CHECK(s.lr_at(110) == 0.0);
    CHECK(s.lr_at(500) == 0.0);  // clamped, never negative
    CHECK(s.warmup_steps() == 10);
    CHECK(s.total_steps() == 110);
  }
  SECTION("linear without warm-up (LiST's student: warm-up 0)") {
    const auto s = peft::lr_schedule::linear(1e-4, 0, 400);
    CHECK(s.lr_at(0) == 1e-4);
    CHECK(s.lr_at(200) == Approx(5e-5));
    CHECK(s.lr_at(399) == Approx(1e-4 / 400));
    CHECK(s.lr_at(400) == 0.0);
  }
  SECTION("linear with warm-up == total") {
    const auto s = peft::lr_schedule::linear(2.0, 4, 4);
    CHECK(s.lr_at(3) == Approx(1.5));
    CHECK(s.lr_at(4) == 0.0);  // (total - step) / max(1, 0)
  }
  SECTION("constant with warm-up") {
    const auto s = peft::lr_schedule::constant_with_warmup(2.0, 4);
    CHECK(s.lr_at(0) == 0.0);
    CHECK(s.lr_at(2) == Approx(1.0));
    CHECK(s.lr_at(3) == Approx(1.5));
    CHECK(s.lr_at(4) == 2.0);
    CHECK(s.lr_at(1000) == 2.0);
    CHECK(peft::lr_schedule::constant_with_warmup(2.0, 0).lr_at(0) == 2.0);
  }
  SECTION("step decay (StepLR)") {
    const auto s = peft::lr_schedule::step(1.0, 2, 0.5);
    CHECK(s.lr_at(0) == 1.0);
    CHECK(s.lr_at(1) == 1.0);
    CHECK(s.lr_at(2) == 0.5);
    CHECK(s.lr_at(5) == 0.25);
  }
  SECTION("bad arguments") {
    CHECK_THROWS_WITH(
        peft::lr_schedule::linear(1.0, 11, 10),
        Catch::Contains("lr_schedule::linear: warmup steps expected <= total steps (10), got 11"));
    CHECK_THROWS_AS(peft::lr_schedule::linear(1.0, 0, 0), peft::invalid_argument);
    CHECK_THROWS_AS(peft::lr_schedule::linear(-1.0, 0, 10), peft::invalid_argument);
    CHECK_THROWS_AS(peft::lr_schedule::constant_with_warmup(1.0, -1), peft::invalid_argument);
    CHECK_THROWS_AS(peft::lr_schedule::constant(std::nan("")), peft::invalid_argument);
    CHECK_THROWS_AS(peft::lr_schedule::step(1.0, 0, 0.5), peft::invalid_argument);
    CHECK_THROWS_WITH(peft::lr_schedule::constant(1.0).lr_at(-1),
                      Catch::Contains("step expected >= 0, got -1"));
  }
}

// ---------------------------------------------------------------------------------------------
// Hyper-parameter validation.

TEST_CASE("optimizers: bad hyper-parameters are rejected", "[optim]") {
  peft::sgd_hyper s;
  s.nesterov = true;
  CHECK_THROWS_WITH(peft::sgd<float>(s), Catch::Contains("sgd::sgd: nesterov expected momentum > 0"));
  s = {};
  s.momentum = 1.0;
  CHECK_THROWS_AS(peft::sgd<float>(s), peft::invalid_argument);
  s = {};
  s.lr = -0.1;
  CHECK_THROWS_WITH(peft::sgd<float>(s), Catch::Contains("sgd::sgd: lr expected finite and >= 0"));
  peft::adam_hyper a;
  a.beta1 = 1.0;
  CHECK_THROWS_WITH(peft::adam<float>(a), Catch::Contains("adam::adam: beta1 expected in [0, 1), got 1"));
  a = {};
  a.eps = 0;
  CHECK_THROWS_AS(peft::adam<float>(a), peft::invalid_argument);
  peft::adamw_hyper w;
  w.weight_decay = -1;
  CHECK_THROWS_WITH(peft::adamw<double>(w),
                    Catch::Contains("adamw::adamw: weight_decay expected finite and >= 0"));
  w = {};
  w.beta2 = std::nan("");
  CHECK_THROWS_AS(peft::adamw<double>(w), peft::invalid_argument);

  scalar_set<double> ss(1.0);
  peft::adamw<double> opt;
  opt.init(ss.set);
  CHECK_THROWS_WITH(opt.step(ss.set, -1.0),
                    Catch::Contains("adamw::step: learning rate expected finite and >= 0"));
  CHECK_THROWS_AS(opt.step(ss.set, std::numeric_limits<double>::infinity()), peft::invalid_argument);
  CHECK_THROWS_AS(opt.step_count(3), peft::invalid_argument);
}
