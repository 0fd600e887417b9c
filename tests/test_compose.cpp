// SPDX-License-Identifier: Apache-2.0
// compose<...>: hooks in order (backward reversed), FD-checked inside the encoder with a LiST
// adapter plus a policy using every hook; parameter concatenation (members with several
// stores and nested compositions included) and training; checkpoints.
#include <peft/io/adapter_checkpoint.hpp>
#include <peft/optim/adam.hpp>
#include <peft/policies/bottleneck_adapter.hpp>
#include <peft/policies/compose.hpp>
#include <peft/policies/modular_prompt.hpp>
#include <peft/train/trainer.hpp>

#include <filesystem>

#include "small_model.hpp"
#include "probe_policy.hpp"

using peft::bottleneck_adapter;
using peft::bottleneck_config;
using peft::compose;
using namespace peft_test;

namespace {

template <typename Arch>
void fd_list_plus_probe(const std::string& type) {
  small_model<Arch> m(type);
  bottleneck_adapter<double> a(m.enc.shape(), bottleneck_config::list(4), 1);
  randomise(a.parameters().values(), 0.3, 2);
  compose<bottleneck_adapter<double>, probe_policy<double>> c(a, make_probe<double>(m.enc.shape(), 2, 3));
  auto& av = c.get<0>().parameters();
  auto r1 = check_policy_in_encoder(m.enc, m.b, c, av.values(), av.grads());
  // (The probe's encoder-output side path reads the embeddings without passing a gradient
  // back, as side-tuning does, so the input gradient is checked in the next test case.)
  INFO(type << " adapter: abs " << r1.params.max_abs_err);
  CHECK(r1.params.max_abs_err < 1e-7);
  CHECK(r1.max_param_grad > 1e-3);
  auto r2 = check_policy_in_encoder(m.enc, m.b, c, c.get<1>().theta(), c.get<1>().grad());
  INFO(type << " probe: abs " << r2.params.max_abs_err);
  CHECK(r2.params.max_abs_err < 1e-7);
  CHECK(r2.max_param_grad > 1e-3);
}

}  // namespace

TEST_CASE("compose exposes exactly the hooks its members have", "[compose][traits]") {
  using A = bottleneck_adapter<double>;
  using AA = compose<A, A>;
  STATIC_REQUIRE(peft::has_on_sublayer_output_v<AA>);
  STATIC_REQUIRE_FALSE(peft::has_kv_prefix_v<AA>);
  STATIC_REQUIRE_FALSE(peft::has_on_weight_v<AA>);
  STATIC_REQUIRE_FALSE(peft::has_on_embeddings_v<AA>);
  STATIC_REQUIRE(peft::has_lowest_layer_v<AA>);
  using AP = compose<A, probe_policy<double>>;
  STATIC_REQUIRE(peft::has_kv_prefix_v<AP>);
  STATIC_REQUIRE(peft::has_on_weight_v<AP>);
  STATIC_REQUIRE(peft::has_on_linear_v<AP>);
  STATIC_REQUIRE(peft::has_on_encoder_output_v<AP>);
  STATIC_REQUIRE(std::is_same_v<peft::policy_tape_t<AA>, std::tuple<A::tape_type, A::tape_type>>);
}

TEST_CASE("LiST adapter + every-hook policy in one encoder: gradients match finite differences",
          "[compose][grad]") {
  SECTION("bert") { fd_list_plus_probe<peft::bert>("bert"); }
  SECTION("use_lite") { fd_list_plus_probe<peft::use_lite>("use_lite"); }
}

TEST_CASE("the same adapter type at two placements composes; parameters concatenate", "[compose][params]") {
  small_model<peft::bert> m("bert");
  const auto shape = m.enc.shape();
  auto lc = bottleneck_config::list(4);
  lc.adapter_name = "list";
  auto hc = bottleneck_config::houlsby(3);
  hc.adapter_name = "houlsby";
  hc.layers = {1};
  using A = bottleneck_adapter<double>;
  compose<A, A> c(A(shape, lc, 1), A(shape, hc, 2));
  randomise(c.get<0>().parameters().values(), 0.3, 3);
  randomise(c.get<1>().parameters().values(), 0.3, 4);
  CHECK(c.lowest_layer(2) == 0);
  CHECK(compose<A>(A(shape, hc, 2)).lowest_layer(2) == 1);
  auto stores = c.stores();
  REQUIRE(stores.size() == 2);
  CHECK(stores[0] == &c.get<0>().parameters());
  auto set = c.parameters();
  CHECK(set.num_stores() == 2);
  CHECK(set.size() == c.get<0>().num_parameters() + c.get<1>().num_parameters());
  CHECK(c.num_parameters() == set.size());
  CHECK(c.num_parameters() == 2 * 2 * 2 * 16 * 4 + 2 * (2 * 16 * 3 + 3 + 16));
  // FD over the flat concatenation.
  peft::vector<double> flat = set.get_flat();
  const auto R = loss_weights<double>(m.b, 16, 5);
  auto loss = [&] {
    set.set_flat(flat);
    peft::rng gen(9);
    return dot_loss(m.enc.forward(m.b, c, peft::mode::train, nullptr, &gen), R);
  };
  peft::encoder_tape<double, compose<A, A>> tape;
  peft::rng gen(9);
  m.enc.forward(m.b, c, peft::mode::train, &tape, &gen);
  set.zero_grad();
  m.enc.backward(R, c, tape);
  const peft::vector<double> g = set.get_flat_grad();
  auto r = check_gradient(flat.data(), flat.size(), g.data(), loss, 1e-6, 300);
  INFO("flat abs err " << r.max_abs_err);
  CHECK(r.max_abs_err < 1e-7);
  // Input gradient through both members.
  auto r2 = check_policy_in_encoder(m.enc, m.b, c, c.get<1>().parameters().values(), c.get<1>().parameters().grads());
  INFO("member 1 abs err " << r2.params.max_abs_err << "; input abs err " << r2.input.max_abs_err);
  CHECK(r2.params.max_abs_err < 1e-7);
  CHECK(r2.input.max_abs_err < 1e-7);
  CHECK(r2.max_input_grad > 1e-3);
  // A single-member composition is the member.
  A alone(shape, lc, 1);
  compose<A> one(alone);
  CHECK(m.enc.forward(m.b, one) == m.enc.forward(m.b, alone));
}

TEST_CASE("compose trains every member: a modular prompt and a nested composition included",
          "[compose][params]") {
  small_model<peft::bert> m("bert");
  const auto shape = m.enc.shape();
  const auto weights_before = m.enc.weights();
  using A = bottleneck_adapter<double>;
  using MP = peft::modular_prompt<double>;
  using inner = compose<A, A>;
  peft::modular_prompt_config mc;
  mc.num_prompt_tokens = 2;
  mc.num_modules = 3;
  mc.intrinsic_dim = 4;
  compose<inner, MP> c(inner(A(shape, bottleneck_config::list(4), 1), A(shape, bottleneck_config::houlsby(3), 2)),
                       MP(shape, mc, 3));
  auto& list = c.get<0>().get<0>();
  auto& houlsby = c.get<0>().get<1>();
  auto& mp = c.get<1>();
  REQUIRE(mp.stores().size() == 3);  // router, z, A

  // Every store of every member, in member order; the counts add up.
  const auto stores = c.stores();
  REQUIRE(stores.size() == 5);
  CHECK(stores[0] == &list.parameters());
  CHECK(stores[1] == &houlsby.parameters());
  CHECK(stores[2] == &mp.router_parameters());
  CHECK(stores[3] == &mp.prompt_parameters());
  CHECK(stores[4] == &mp.projection_parameters());
  const peft::index total = list.num_parameters() + houlsby.num_parameters() + mp.num_parameters();
  CHECK(mp.num_parameters() == 2 * 3 + 2 * 3 * 4 + 2 * 4 * 2 * 16);  // L*M router, L*M*d z, L*d*n*H A
  CHECK(c.num_parameters() == total);
  peft::parameter_set<double> set;
  peft::add_policy_parameters(set, c);  // what fit does
  CHECK(set.size() == total);
  CHECK(set.num_stores() == 5);

  // AdamW steps over the composition move every store of every member; the encoder stays.
  std::vector<peft::vector<double>> before;
  for (auto* st : stores) before.push_back(st->values());
  peft::adamw_hyper hy;
  hy.lr = 0.02;
  peft::adamw<double> opt(hy);
  opt.init(set);
  const auto R = loss_weights<double>(m.b, m.enc.hidden_size(), 5);
  for (int step = 0; step < 3; ++step) {
    peft::rng gen(static_cast<std::uint64_t>(40 + step));
    peft::encoder_tape<double, compose<inner, MP>> tape;
    m.enc.forward(m.b, c, peft::mode::train, &tape, &gen);
    set.zero_grad();
    m.enc.backward(R, c, tape);
    opt.step(set);
  }
  for (std::size_t i = 0; i < stores.size(); ++i) {
    INFO("store " << i);
    CHECK((stores[i]->values() - before[i]).cwiseAbs().maxCoeff() > 1e-3);
  }
  CHECK(same_weights(weights_before, m.enc.weights()));

  // A member's own trainable selection carries through: router-only leaves one store of it.
  mp.set_trainable(peft::modular_prompt_parts::router_only());
  CHECK(c.stores().size() == 3);
  CHECK(c.num_parameters() == list.num_parameters() + houlsby.num_parameters() + 2 * 3);
}

TEST_CASE("two members transforming the same frozen weight are rejected", "[compose][errors]") {
  small_model<peft::bert> m("bert");
  compose<probe_policy<double>, probe_policy<double>> c(make_probe<double>(m.enc.shape(), 1, 3),
                                                       make_probe<double>(m.enc.shape(), 1, 3));
  CHECK_THROWS_WITH(m.enc.forward(m.b, c), Catch::Contains("2 members transform the query weight of layer 0"));
  c.get<1>().use_weight = false;
  CHECK_NOTHROW(m.enc.forward(m.b, c));
}

TEST_CASE("compose save/load round trip with prefixed keys", "[compose][io]") {
  small_model<peft::use_lite, float> m("use_lite");
  const auto shape = m.enc.shape();
  using A = bottleneck_adapter<float>;
  auto hc = bottleneck_config::houlsby(3);
  hc.layers = {1};
  compose<A, A> c(A(shape, bottleneck_config::list(4), 1), A(shape, hc, 2));
  peft::rng g(3);
  for (auto* s : c.stores())
    for (peft::index i = 0; i < s->size(); ++i) s->values()[i] = static_cast<float>(g.normal() * 0.2);
  const std::string dir = scratch_dir("compose_io");
  peft::save_policy(dir, c);
  const auto file = peft::safetensors_file::open(dir + "/adapter_model.safetensors");
  CHECK(file.contains("members.0.encoder.layer.0.attention.output.adapters.default.adapter_down.0.weight"));
  CHECK(file.contains("members.1.encoder.layer.1.output.adapters.default.adapter_up.bias"));
  CHECK(file.size() == 8 + 8);
  auto back = peft::load_policy<compose<A, A>>(dir, shape);
  CHECK(back.get<0>().parameters().values() == c.get<0>().parameters().values());
  CHECK(back.get<1>().parameters().values() == c.get<1>().parameters().values());
  CHECK(m.enc.forward(m.b, back) == m.enc.forward(m.b, c));
  const auto cfg = peft::read_adapter_config(dir);
  CHECK(cfg["members"].size() == 2);
  CHECK(cfg["members"][1]["layers"] == nlohmann::json::array({1}));
  CHECK_THROWS_WITH((peft::load_policy<compose<A>>(dir, shape)), Catch::Contains("'members' expected 1 entries, got 2"));
  std::filesystem::remove_all(dir);
}
