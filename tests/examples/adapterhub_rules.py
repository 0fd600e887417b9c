# SPDX-License-Identifier: Apache-2.0
"""What AdapterHub (`adapters` 1.2.0) requires of a bottleneck adapter, prediction head or
AdapterFusion folder when it loads one onto a BERT-family model, written from its source
(adapter-hub/adapters: loading.py AdapterLoader / AdapterFusionLoader / PredictionHeadLoader and
WeightsLoaderHelper, utils.py resolve_adapter_path and the file names, configuration/adapter_config.py
AdapterConfig.load / from_dict and BnConfig, configuration/adapter_fusion_config.py,
configuration/model_adapters_config.py match / common_config_value / build_full_config,
methods/bottleneck.py BottleneckLayer.add_adapter / add_fusion_layer, methods/modeling.py Adapter and
BertFusion, heads/base.py PredictionHead.build and ClassificationHead, heads/model_mixin.py
add_prediction_head), applied without torch or adapters installed.

problems(folder, model_config) returns the list of what AdapterHub would refuse, would load
differently from what the folder says (missing weights, which it only logs; unexpected keys, which it
ignores), or would not have written itself. `model_config` is the model's config.json, as a dict or
a path: its hidden_size, num_hidden_layers and model_type are what the folder must fit.

An adapter folder holds adapter_config.json and adapter.safetensors (F32, metadata may be absent:
save_file is called without it). A folder with only pytorch_adapter.bin (AdapterHub's default
torch.save format) is reported: this project reads safetensors only. adapter_config.json's top level
is config, hidden_size, model_class, model_name, model_type, name and version ("adapters.<version>";
without a version key AdapterHub renames non_linearity "gelu" to "gelu_new"), plus any extra keys
(save_adapter's meta_dict; "peft_cpp" must be an object). `config` is a BnConfig: no architecture (or
null), the four required fields (mh_adapter, output_adapter, reduction_factor, non_linearity; a
TypeError without them), every other dataclass field with a value AdapterHub accepts (scaling a JSON
float, "learned" or "channel": an int is a ValueError), and no other field (from_dict keeps it as an
attribute, asdict never writes it back). The weights are the keys
`[<prefix>]encoder.layer.<i>.<site>.adapters.<name>.adapter_down.0.weight` [d, H], `.adapter_down.0.bias`
[d], `.adapter_up.weight` [H, d], `.adapter_up.bias` [H] (d = max(1, int(H // reduction_factor)), the
factor of that layer when it is a map) for exactly the layers not in leave_out and the sites the
config selects (mh_adapter: attention.output, output_adapter: output), plus adapter_norm_after.*
(ln_after), gate.* (use_gating) and scaling ("learned" [1], "channel" [H]). `<prefix>` is the model's
base_model_prefix ("bert.") unless model_class is the bare model (BertModel). ln_before cannot be
saved as safetensors (its LayerNorm is registered twice and the two keys share storage); phm_layer
and inv_adapter add keys this checker does not model, so both are reported.

An optional head: head_config.json with model_head.safetensors, from the same model class. A flex
head (an ...AdapterModel) has `config` {activation_function, bias, dropout_prob, head_type
"classification", label2id, layers, num_labels, use_pooler} and the keys heads.<name>.<i>.weight /
.bias of PredictionHead.build's linears (i = 1, 4 for two layers with an activation); a static head
(BertForSequenceClassification after adapters.init) has `config` null, name null, label2id and
num_labels at the top level and the keys classifier.weight [labels, H] and classifier.bias.

An AdapterFusion folder holds adapter_fusion_config.json (the same top level plus adapter_names,
`config` every AdapterFusionConfig field: the base class has no defaults, so a missing one is a
TypeError) and model_adapter_fusion.safetensors with, at every layer (leave_out is not consulted) and
every site whose location key all fused adapters set, `adapter_fusion_layer.<name>.query.weight`
[H, H], `.query.bias`, `.key.weight`, `.key.bias`, `.value.weight` (no bias) as the config's query /
key / value select (`dense.weight` [1, H] and `.dense.bias` when none is). The fused adapters are
read from the sibling folders named after them (save_all_adapters' layout): AdapterHub needs them
loaded first.

Usage: python3 adapterhub_rules.py FOLDER MODEL_CONFIG_JSON  (prints the problems; exit status 1
when there are any).
"""
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_peft_rules import read_header  # noqa: E402  (the safetensors header, read the same way)

VERSION_RE = re.compile(r"^adapters\.\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?$")
TOP_LEVEL = ("config", "hidden_size", "model_class", "model_name", "model_type", "name", "version")
REQUIRED_BN = ("mh_adapter", "output_adapter", "reduction_factor", "non_linearity")
# BnConfig's other dataclass fields and the check each value must pass.
BOOL = (lambda v: isinstance(v, bool), "a boolean")
OPT_BOOL = (lambda v: v is None or isinstance(v, bool), "a boolean or null")
NUMBER = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
OPT_NUMBER = (lambda v: v is None or NUMBER[0](v), "a number or null")
OPT_INT = (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer or null")
OPT_STR = (lambda v: v is None or isinstance(v, str), "a string or null")
BN_FIELDS = {
    "original_ln_before": BOOL, "original_ln_after": BOOL, "ln_before": BOOL, "ln_after": BOOL,
    "init_weights": (lambda v: v in ("bert", "mam_adapter", "houlsby"), '"bert", "mam_adapter" or "houlsby" '
                     "(Adapter raises ValueError otherwise)"),
    "init_weights_seed": OPT_INT, "is_parallel": BOOL,
    "scaling": (lambda v: isinstance(v, float) or v in ("learned", "channel"),
                'a JSON float, "learned" or "channel" (Adapter raises ValueError otherwise; 1 is not 1.0)'),
    "use_gating": BOOL,
    "residual_before_ln": (lambda v: isinstance(v, bool) or v == "post_add", 'a boolean or "post_add"'),
    "adapter_residual_before_ln": BOOL,
    "inv_adapter": (lambda v: v in (None, "nice", "glow"), 'null, "nice" or "glow"'),
    "inv_adapter_reduction_factor": OPT_NUMBER, "cross_adapter": BOOL,
    "leave_out": (lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
                  "a list of layer indices"),
    "dropout": (lambda v: NUMBER[0](v) and 0 <= v <= 1, "a number in [0, 1] (nn.Dropout)"),
    "phm_layer": BOOL, "phm_dim": OPT_INT, "factorized_phm_W": OPT_BOOL, "shared_W_phm": OPT_BOOL,
    "shared_phm_rule": OPT_BOOL, "factorized_phm_rule": OPT_BOOL,
    "phm_c_init": (lambda v: v is None or v in ("normal", "uniform"), 'null, "normal" or "uniform"'),
    "phm_init_range": OPT_NUMBER, "learn_phm": OPT_BOOL,
    "hypercomplex_nonlinearity": (lambda v: v is None or v in ("phm", "glorot-normal", "glorot-uniform", "normal"),
                                  'null, "phm", "glorot-normal", "glorot-uniform" or "normal"'),
    "phm_rank": OPT_INT, "phm_bias": OPT_BOOL,
    "stochastic_depth": (lambda v: v is None or (NUMBER[0](v) and v >= 0), "a number >= 0 or null"),
}
# AdapterFusionConfig's fields (no defaults in the base class: every one must be present).
FUSION_FIELDS = {
    "key": BOOL, "query": BOOL, "value": BOOL, "query_before_ln": BOOL, "regularization": BOOL,
    "residual_before": BOOL, "temperature": BOOL, "value_before_softmax": BOOL,
    "value_initialized": (lambda v: isinstance(v, (bool, str)), "a boolean or a string"),
    "dropout_prob": (lambda v: v is None or (NUMBER[0](v) and 0 <= v <= 1), "null or a number in [0, 1]"),
}
# Names transformers' get_activation resolves (ACT2CLS of the transformers 4.57 AdapterHub 1.2.0
# requires), after AdapterHub lower-cases them, plus AdapterHub's own "leakyrelu". "prelu" is left
# out: its nn.PReLU adds a learned parameter (adapter_down.1.weight) this checker does not model.
ACTIVATIONS = {"gelu", "gelu_10", "gelu_fast", "gelu_new", "gelu_python", "gelu_pytorch_tanh", "gelu_python_tanh",
               "gelu_accurate", "laplace", "leaky_relu", "linear", "mish", "quick_gelu", "relu", "relu2", "relu6",
               "sigmoid", "silu", "swish", "tanh", "xielu", "leakyrelu"}
# The defaults BnConfig gives the fields that shape the weights.
BN_DEFAULTS = {"leave_out": [], "ln_after": False, "use_gating": False, "scaling": 1.0}
SITES = (("mh_adapter", "attention.output"), ("output_adapter", "output"))
BASE_PREFIX = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "electra": "electra"}  # base_model_prefix
BARE_MODEL = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
              "electra": "ElectraModel"}
HEAD_FIELDS = {"activation_function", "bias", "dropout_prob", "head_type", "label2id", "layers", "num_labels",
               "use_pooler"}


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def load_json(path, out):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        out.append("%s: not readable JSON (%s)" % (os.path.basename(path), e))
        return None


def key_prefix(model_class, model_type):
    """The prefix AdapterHub's state dict gives the base model's keys: none for the bare model,
    base_model_prefix + "." for a model with a head (flex ...AdapterModel or a static head model)."""
    bare = BARE_MODEL.get(model_type)
    if model_class == bare:
        return ""
    return BASE_PREFIX.get(model_type, model_type) + "."


def top_level_problems(doc, what, model, out, name_may_be_null=False):
    """The keys build_full_config and the loaders write around a config. Returns False when the
    ones the loaders read (config, name, model_class) are missing."""
    if not isinstance(doc, dict):
        out.append("%s: not a JSON object" % what)
        return False
    missing = [k for k in TOP_LEVEL if k not in doc]
    if missing:
        out.append("%s: missing top-level keys %s" % (what, missing))
    if "peft_cpp" in doc and not isinstance(doc["peft_cpp"], dict):
        out.append("%s: peft_cpp is not an object" % what)
    v = doc.get("version")
    if "version" in doc and not (isinstance(v, str) and VERSION_RE.match(v)):
        # _fix_backward_compat: a string starting "adapters." must parse as a version after it,
        # anything but a string is an AttributeError.
        out.append("%s: version %r is not \"adapters.<version>\" as adapters writes it" % (what, v))
    if "hidden_size" in doc and doc["hidden_size"] != model["hidden_size"]:
        out.append("%s: hidden_size %r is not the model's %d" % (what, doc["hidden_size"], model["hidden_size"]))
    if "model_type" in doc and doc["model_type"] != model["model_type"]:
        out.append("%s: model_type %r is not the model's %r" % (what, doc["model_type"], model["model_type"]))
    if "model_class" in doc and not (isinstance(doc["model_class"], str) and doc["model_class"]):
        out.append("%s: model_class %r is not a class name" % (what, doc["model_class"]))
    if "model_name" in doc and not isinstance(doc["model_name"], (str, type(None))):
        out.append("%s: model_name %r is not a string" % (what, doc["model_name"]))
    name = doc.get("name")
    if "name" in doc and not (name_may_be_null and name is None):
        if not isinstance(name, str) or not name or "." in name:
            out.append("%s: name %r is not a usable module name (a non-empty string without dots)" % (what, name))
    return all(k in doc for k in ("config", "name", "model_class"))


def saved_prefix(path, prefix, model_type, model_class, what, out):
    """The prefix the file's keys carry: the loader adds or strips base_model_prefix as the model
    needs (load_weights_from_state_dict), but AdapterHub saves them as `model_class` has them."""
    try:
        keys = [k for k in read_header(path) if k != "__metadata__"]
    except (OSError, ValueError, struct.error):
        return prefix  # reported by tensor_problems
    base = BASE_PREFIX.get(model_type, model_type) + "."
    if keys and not prefix and all(k.startswith(base) for k in keys):
        out.append("%s: keys start with %r, but %s saves them without it (the loader strips it)"
                   % (what, base, model_class))
        return base
    if keys and prefix and not any(k.startswith(prefix) for k in keys):
        out.append("%s: keys lack %r, but %s saves them with it (the loader adds it)" % (what, prefix, model_class))
        return ""
    return prefix


def check_value(field, v, rule, what, out):
    ok, text = rule
    if not ok(v):
        out.append("%s: %s %r is not %s" % (what, field, v, text))
        return False
    return True


def bn_config_problems(cfg, has_version, out):
    """A BnConfig as AdapterConfig.load and Adapter.__init__ take it; returns True when its
    structural fields are usable."""
    what = "adapter_config.json config"
    if not isinstance(cfg, dict):
        out.append("%s: not an object" % what)
        return False
    arch = cfg.get("architecture")
    if arch is not None:
        out.append("%s: architecture %r is not a bottleneck adapter (this checker covers BnConfig, which has none)"
                   % (what, arch))
        return False
    missing = [k for k in REQUIRED_BN if k not in cfg]
    if missing:
        out.append("%s: missing required fields %s (BnConfig raises TypeError)" % (what, missing))
        return False
    ok = True
    for k in ("mh_adapter", "output_adapter"):
        ok &= check_value(k, cfg[k], BOOL, what, out)
    rf = cfg["reduction_factor"]
    if isinstance(rf, dict):
        bad = {k: v for k, v in rf.items() if not (NUMBER[0](v) and v > 0)}
        if bad:
            out.append("%s: reduction_factor map values %s are not positive numbers" % (what, bad))
            ok = False
    elif not (NUMBER[0](rf) and rf > 0):
        out.append("%s: reduction_factor %r is neither a positive number nor a map" % (what, rf))
        ok = False
    act = cfg["non_linearity"]
    if not isinstance(act, str):
        out.append("%s: non_linearity %r is not a string (Adapter lower-cases it)" % (what, act))
    else:
        if not has_version and act in ("gelu", "gelu_orig"):
            out.append("%s: no version key, so AdapterHub reads non_linearity %r as %r" %
                       (what, act, {"gelu": "gelu_new", "gelu_orig": "gelu"}[act]))
        if act.lower() not in ACTIVATIONS:
            out.append("%s: non_linearity %r is not an activation transformers' get_activation knows (KeyError)"
                       % (what, act))
    for field, rule in BN_FIELDS.items():
        if field not in cfg:
            out.append("%s: missing field %s (asdict writes every BnConfig field)" % (what, field))
            continue
        # A bad value of a field that shapes the weights stops the weight checks.
        ok &= check_value(field, cfg[field], rule, what, out) or field not in BN_DEFAULTS
    unknown = sorted(set(cfg) - set(REQUIRED_BN) - set(BN_FIELDS) - {"architecture"})
    if unknown:
        out.append("%s: fields BnConfig does not have %s (kept as attributes, never written back)" % (what, unknown))
    if cfg.get("residual_before_ln") == "post_add" and not cfg.get("original_ln_before"):
        out.append("%s: residual_before_ln \"post_add\" without original_ln_before leaves pre_forward without a "
                   "residual (UnboundLocalError)" % what)
    if cfg.get("ln_before") is True:
        out.append("%s: ln_before true cannot be saved as safetensors (adapter_down.0 and adapter_norm_before are the "
                   "same LayerNorm: shared tensors)" % what)
    if cfg.get("phm_layer") is True:
        out.append("%s: phm_layer true: PHM (Compacter) weights are not modelled by this checker" % what)
    if cfg.get("inv_adapter") is not None:
        out.append("%s: inv_adapter %r: invertible adapter weights are not modelled by this checker"
                   % (what, cfg.get("inv_adapter")))
    sd = cfg.get("stochastic_depth")
    if NUMBER[0](sd) and sd > 0:
        out.append("%s: stochastic_depth %r > 0 needs torchvision installed (ImportError otherwise)" % (what, sd))
    return ok


def reduction_factor(cfg, layer):
    """BottleneckLayer.add_adapter: a map gives str(layer) or "default" (KeyError without either)."""
    rf = cfg["reduction_factor"]
    if isinstance(rf, dict):
        return rf.get(str(layer), rf.get("default"))
    return rf


def expected_adapter_keys(cfg, name, prefix, hidden, num_layers, out):
    """{key: shape} of every parameter the config creates (ModelAdaptersConfig.match: layers not in
    leave_out, sites whose location key is true)."""
    keys = {}
    for layer in range(num_layers):
        if layer in cfg["leave_out"]:
            continue
        rf = reduction_factor(cfg, layer)
        if rf is None:
            out.append("adapter_config.json config: reduction_factor map has neither %r nor \"default\" "
                       "(KeyError)" % str(layer))
            continue
        d = max(1, int(hidden // rf))
        for loc, site in SITES:
            if not cfg[loc]:
                continue
            p = "%sencoder.layer.%d.%s.adapters.%s." % (prefix, layer, site, name)
            keys.update({p + "adapter_down.0.weight": [d, hidden], p + "adapter_down.0.bias": [d],
                         p + "adapter_up.weight": [hidden, d], p + "adapter_up.bias": [hidden]})
            if cfg["ln_after"]:
                keys.update({p + "adapter_norm_after.weight": [hidden], p + "adapter_norm_after.bias": [hidden]})
            if cfg["use_gating"]:
                keys.update({p + "gate.weight": [1, hidden], p + "gate.bias": [1]})
            if cfg["scaling"] == "learned":
                keys[p + "scaling"] = [1]
            elif cfg["scaling"] == "channel":
                keys[p + "scaling"] = [hidden]
    return keys


def tensor_problems(path, expected, must_contain, what, out):
    """A safetensors file's keys and shapes against `expected`; every key must contain one of
    `must_contain` (the loader's filter)."""
    try:
        header = read_header(path)
    except (OSError, ValueError, struct.error) as e:
        out.append("%s: not a readable safetensors file (%s)" % (what, e))
        return
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        out.append("%s: __metadata__ %r is not a map of strings" % (what, meta))
    for k in sorted(header):
        if not any(m in k for m in must_contain):
            out.append("%s: key %s is not one the loader selects (it must contain %s)"
                       % (what, k, " or ".join(must_contain)))
    for k, shape in sorted(expected.items()):
        t = header.get(k)
        if t is None:
            out.append("%s: missing %s (the module keeps its initial weights; AdapterHub only logs it)" % (what, k))
        elif t.get("shape") != shape:
            out.append("%s: %s has shape %s, the module needs %s (RuntimeError on load)"
                       % (what, k, t.get("shape"), shape))
        elif t.get("dtype") != "F32":
            out.append("%s: %s is %s, not F32" % (what, k, t.get("dtype")))
    for k in sorted(set(header) - set(expected)):
        if any(m in k for m in must_contain):
            out.append("%s: unexpected key %s (no such module: ignored on load)" % (what, k))


def head_problems(folder, doc_class, name, model, out):
    """head_config.json + model_head.safetensors, when either is there."""
    cfg_path = os.path.join(folder, "head_config.json")
    wts_path = os.path.join(folder, "model_head.safetensors")
    has_cfg, has_wts = os.path.exists(cfg_path), os.path.exists(wts_path)
    if not has_cfg and not has_wts:
        if os.path.exists(os.path.join(folder, "pytorch_model_head.bin")):
            out.append("pytorch_model_head.bin without model_head.safetensors (a torch pickle: not read here)")
        return
    if not has_wts:
        out.append("head_config.json without model_head.safetensors (PredictionHeadLoader skips the head)")
        return
    if not has_cfg:
        out.append("model_head.safetensors without head_config.json (loaded blindly, under no head name)")
        return
    doc = load_json(cfg_path, out)
    H = model["hidden_size"]
    static = isinstance(doc, dict) and doc.get("config") is None
    if not top_level_problems(doc, "head_config.json", model, out, name_may_be_null=static):
        return
    if doc["model_class"] != doc_class:
        out.append("head_config.json: model_class %r, the adapter's is %r (a head loads only onto its own class)"
                   % (doc["model_class"], doc_class))
    prefix = BASE_PREFIX.get(model["model_type"], model["model_type"])
    if static:
        # PredictionHeadLoader.save for a model without flex heads: no name, the model config's
        # label2id and num_labels, every weight outside the base model.
        if doc["name"] is not None:
            out.append("head_config.json: a static head is saved with name null, not %r" % (doc["name"],))
        n = doc.get("num_labels")
        if not is_int(n) or n < 1:
            out.append("head_config.json: num_labels %r is not a positive integer" % (n,))
            return
        label_problems(doc.get("label2id"), n, "head_config.json label2id", out)
        if doc["model_class"] == "BertForSequenceClassification":
            expected = {"classifier.weight": [n, H], "classifier.bias": [n]}
        elif doc["model_class"] in ("RobertaForSequenceClassification", "XLMRobertaForSequenceClassification"):
            expected = {"classifier.dense.weight": [H, H], "classifier.dense.bias": [H],
                        "classifier.out_proj.weight": [n, H], "classifier.out_proj.bias": [n]}
        else:
            out.append("head_config.json: static head of %r: not modelled by this checker" % doc["model_class"])
            return
        header = read_header(wts_path)
        header.pop("__metadata__", None)
        bad = [k for k in header if k.startswith(prefix)]
        if bad:
            out.append("model_head.safetensors: keys of the base model %s (a head file holds only keys outside %r)"
                       % (bad, prefix))
        tensor_problems(wts_path, expected, [""], "model_head.safetensors", out)
        return
    # A flex head (heads/base.py ClassificationHead, heads/model_mixin.py add_prediction_head).
    if not (doc["model_class"].endswith("AdapterModel") or doc["model_class"].endswith("ModelWithHeads")):
        out.append("head_config.json: a head config on %r, which has no flex heads" % doc["model_class"])
    if doc["name"] != name:
        out.append("head_config.json: name %r is not the adapter's %r (save_adapter saves the head of its name)"
                   % (doc["name"], name))
    hc = doc["config"]
    if not isinstance(hc, dict):
        out.append("head_config.json: config %r is neither an object nor null" % (hc,))
        return
    if hc.get("head_type") != "classification":
        out.append("head_config.json: head_type %r: this checker covers classification heads" % hc.get("head_type"))
        return
    missing = sorted(HEAD_FIELDS - set(hc))
    if missing:
        out.append("head_config.json config: missing %s (ClassificationHead writes them all)" % missing)
        return
    unknown = sorted(set(hc) - HEAD_FIELDS - {"id2label"})
    if unknown:
        out.append("head_config.json config: fields ClassificationHead does not write %s" % unknown)
    n, layers, act = hc["num_labels"], hc["layers"], hc["activation_function"]
    if not is_int(n) or n < 1:
        out.append("head_config.json config: num_labels %r is not a positive integer" % (n,))
        return
    if not is_int(layers) or layers < 1:
        out.append("head_config.json config: layers %r is not a positive integer" % (layers,))
        return
    if act is not None and not (isinstance(act, str) and act.lower() in ACTIVATIONS):
        out.append("head_config.json config: activation_function %r is not one get_activation knows" % (act,))
    for k in ("use_pooler", "bias"):
        if not isinstance(hc[k], bool):
            out.append("head_config.json config: %s %r is not a boolean" % (k, hc[k]))
    dp = hc["dropout_prob"]
    if dp is not None and not (NUMBER[0](dp) and 0 <= dp <= 1):
        out.append("head_config.json config: dropout_prob %r is neither null nor a probability" % (dp,))
    label_problems(hc["label2id"], n, "head_config.json config label2id", out)
    # PredictionHead.build: per layer a Dropout, then a Linear, then the activation when one is set
    # (the last layer: a Linear to num_labels, with a bias only when `bias`).
    expected, i = {}, 0
    for l in range(layers):
        i += 1  # Dropout
        last = l == layers - 1
        p = "heads.%s.%d." % (name, i)
        expected[p + "weight"] = [n if last else H, H]
        if not last or hc["bias"] is not False:
            expected[p + "bias"] = [n if last else H]
        i += 1
        if not last and act:
            i += 1
    tensor_problems(wts_path, expected, ["heads.%s." % name], "model_head.safetensors", out)


def label_problems(label2id, n, what, out):
    if not isinstance(label2id, dict) or not all(is_int(v) for v in label2id.values()):
        out.append("%s %r is not a map of label names to class indices" % (what, label2id))
    elif sorted(label2id.values()) != list(range(n)):
        out.append("%s %r does not number the %d classes 0..%d once each" % (what, label2id, n, n - 1))


def adapter_problems(folder, model, out):
    cfg_path = os.path.join(folder, "adapter_config.json")
    wts_path = os.path.join(folder, "adapter.safetensors")
    if not os.path.exists(wts_path):
        if os.path.exists(os.path.join(folder, "pytorch_adapter.bin")):
            out.append("missing adapter.safetensors: the weights are in pytorch_adapter.bin, a torch pickle this "
                       "project does not read")
        else:
            out.append("missing adapter.safetensors (and pytorch_adapter.bin: resolve_adapter_path raises "
                       "EnvironmentError)")
        return
    doc = load_json(cfg_path, out)
    if not top_level_problems(doc, "adapter_config.json", model, out):
        return
    cfg, name = doc["config"], doc["name"]
    if not bn_config_problems(cfg, "version" in doc, out) or not isinstance(name, str):
        return
    prefix = saved_prefix(wts_path, key_prefix(doc["model_class"], model["model_type"]), model["model_type"],
                          doc["model_class"], "adapter.safetensors", out)
    cfg = dict(BN_DEFAULTS, **cfg)  # a missing field (reported above) takes its default
    expected = expected_adapter_keys(cfg, name, prefix, model["hidden_size"], model["num_hidden_layers"], out)
    if not expected:
        out.append("adapter_config.json config: no layer and site is adapted (leave_out and the location keys "
                   "leave nothing)")
    tensor_problems(wts_path, expected, [".adapters.%s." % name], "adapter.safetensors", out)
    head_problems(folder, doc["model_class"], name, model, out)


def fusion_problems(folder, model, out):
    cfg_path = os.path.join(folder, "adapter_fusion_config.json")
    wts_path = os.path.join(folder, "model_adapter_fusion.safetensors")
    if not os.path.exists(wts_path):
        extra = " (pytorch_model_adapter_fusion.bin is a torch pickle this project does not read)" if os.path.exists(
            os.path.join(folder, "pytorch_model_adapter_fusion.bin")) else ""
        out.append("missing model_adapter_fusion.safetensors" + extra)
        return
    doc = load_json(cfg_path, out)
    if not top_level_problems(doc, "adapter_fusion_config.json", model, out):
        return
    name = doc["name"]
    names = doc.get("adapter_names", name.split(",") if isinstance(name, str) else None)
    if not (isinstance(names, list) and names and all(isinstance(a, str) and a for a in names)):
        out.append("adapter_fusion_config.json: adapter_names %r is not a list of adapter names" % (names,))
        return
    if "adapter_names" not in doc:
        out.append("adapter_fusion_config.json: no adapter_names (AdapterFusionLoader.save writes it)")
    cfg = doc["config"]
    if not isinstance(cfg, dict):
        out.append("adapter_fusion_config.json: config %r is not an object" % (cfg,))
        return
    missing = [k for k in FUSION_FIELDS if k not in cfg]
    if missing:
        out.append("adapter_fusion_config.json config: missing %s (AdapterFusionConfig has no defaults: TypeError)"
                   % missing)
        return
    unknown = sorted(set(cfg) - set(FUSION_FIELDS))
    if unknown:
        out.append("adapter_fusion_config.json config: fields AdapterFusionConfig does not have %s" % unknown)
    for field, rule in FUSION_FIELDS.items():
        check_value(field, cfg[field], rule, "adapter_fusion_config.json config", out)
    # The fused adapters, from their sibling folders: add_fusion_layer needs each one's location keys.
    adapters = []
    for a in names:
        sub = os.path.join(os.path.dirname(os.path.abspath(folder)), a, "adapter_config.json")
        if not os.path.exists(sub):
            out.append("adapter %r: no %s next to the fusion folder (load_adapter_fusion needs the adapter loaded "
                       "first: ValueError)" % (a, os.path.join(a, "adapter_config.json")))
            return
        sdoc = load_json(sub, out)
        if not isinstance(sdoc, dict) or not isinstance(sdoc.get("config"), dict):
            out.append("adapter %r: its adapter_config.json has no config object" % a)
            return
        if sdoc.get("name") != a:
            out.append("adapter %r: its folder's adapter_config.json names it %r (it loads under that name)"
                       % (a, sdoc.get("name")))
        if sdoc.get("model_class") != doc["model_class"]:
            out.append("adapter %r: saved from %r, the fusion from %r"
                       % (a, sdoc.get("model_class"), doc["model_class"]))
        adapters.append(sdoc["config"])
    H = model["hidden_size"]
    prefix = saved_prefix(wts_path, key_prefix(doc["model_class"], model["model_type"]), model["model_type"],
                          doc["model_class"], "model_adapter_fusion.safetensors", out)
    expected = {}
    for loc, site in SITES:
        values = [c.get(loc, False) for c in adapters]
        if any(v != values[0] for v in values):
            out.append("the fused adapters set %s differently %s (common_config_value raises ValueError)"
                       % (loc, values))
            continue
        if not values[0]:
            continue
        for layer in range(model["num_hidden_layers"]):  # every layer: leave_out is not consulted
            p = "%sencoder.layer.%d.%s.adapter_fusion_layer.%s." % (prefix, layer, site, name)
            if cfg["query"]:
                expected.update({p + "query.weight": [H, H], p + "query.bias": [H]})
            if cfg["key"]:
                expected.update({p + "key.weight": [H, H], p + "key.bias": [H]})
            if cfg["value"]:
                expected[p + "value.weight"] = [H, H]
            if not (cfg["query"] or cfg["key"] or cfg["value"]):
                expected.update({p + "dense.weight": [1, H], p + "dense.bias": [1]})
    if not expected:
        out.append("the fused adapters share no site: there is no fusion layer")
    tensor_problems(wts_path, expected, ["adapter_fusion_layer.%s." % name], "model_adapter_fusion.safetensors", out)
    head_problems(folder, doc["model_class"], name, model, out)


def problems(folder, model_config):
    if isinstance(model_config, str):
        with open(model_config) as f:
            model_config = json.load(f)
    model = {"hidden_size": model_config["hidden_size"], "num_hidden_layers": model_config["num_hidden_layers"],
             "model_type": model_config["model_type"]}
    out = []
    has_adapter = os.path.exists(os.path.join(folder, "adapter_config.json"))
    has_fusion = os.path.exists(os.path.join(folder, "adapter_fusion_config.json"))
    if not has_adapter and not has_fusion:
        return ["neither adapter_config.json nor adapter_fusion_config.json"]
    if has_adapter:
        adapter_problems(folder, model, out)
    if has_fusion:
        fusion_problems(folder, model, out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: adapterhub_rules.py FOLDER MODEL_CONFIG_JSON")
    found = problems(sys.argv[1], sys.argv[2])
    for p in found:
        print(p)
    if not found:
        print("no problems")
    sys.exit(1 if found else 0)
