# SPDX-License-Identifier: Apache-2.0
"""What Hugging Face PEFT requires of a LoRA, (IA)^3, prompt tuning or prefix tuning adapter folder
when it loads one onto a BERT model, written from its source (huggingface/peft: config.py,
tuners/lora/config.py, tuners/ia3/config.py, tuners/ia3/model.py, tuners/ia3/layer.py,
tuners/prompt_tuning/config.py, tuners/prompt_tuning/model.py, tuners/prefix_tuning/config.py,
tuners/prefix_tuning/model.py, peft_model.py get_prompt, tuners/tuners_utils.py
check_target_module_exists, utils/other.py get_pattern_key and _prepare_prompt_learning_config,
utils/save_and_load.py set_peft_model_state_dict), applied without torch or peft installed.

problems(folder, num_layers, hidden, intermediate, prefix, heads=None) returns the list of what
PeftModel.from_pretrained would refuse, or would load differently from what the folder says
(missing adapter keys, which it only warns about; unexpected keys, which it drops silently).
`prefix` is what precedes "encoder." in the module names of the model it is loaded onto:
"bert." for a BertFor... model, "" for BertModel. `heads` is the model's attention head count, when
known (only a PREFIX_TUNING folder uses it).

An IA3 folder: target_modules and feedforward_modules null stand for IA3Model's BERT defaults
(["key", "value", "output.dense"] and ["output.dense"]); a feedforward_modules list entry matches
a targeted module whose path ends with it, with no dot boundary (so "output.dense" also makes
attention.output.dense feedforward), a string is re.fullmatch; each targeted module has one
`<module>.ia3_l` vector, (1, in) when feedforward and (out, 1) otherwise.

A PROMPT_TUNING folder: token_dim, num_layers and num_transformer_submodules null are filled in
from the model (hidden size, layer count, 1) when it loads, a value given must match the model;
prompt_tuning_init "TEXT" needs prompt_tuning_init_text and tokenizer_name_or_path
(PromptTuningConfig.__post_init__ raises ValueError otherwise, also when loading), and
tokenizer_kwargs is only allowed with TEXT. The file holds exactly `prompt_embeddings`
[num_virtual_tokens * num_transformer_submodules, token_dim] (no prefix; loaded with strict=True)
and the modules_to_save copies, which for prompt learning are under "base_model." (PeftModel's
base_model is the transformers model itself): base_model.classifier.weight and .bias, expected when
modules_to_save lists classifier or task_type is SEQ_CLS or TOKEN_CLS (whose PeftModel adds it),
refused otherwise; `prefix` does not apply to it.

A PREFIX_TUNING folder: token_dim, num_layers, num_attention_heads and num_transformer_submodules
null are filled in from the model when it loads (encoder_hidden_size from token_dim), a value given
must match the model (get_prompt views the table as [batch, n, 2 * num_layers, num_attention_heads,
token_dim // num_attention_heads] and hands layer l entries 2l and 2l + 1 as its past key and value);
prefix_projection is a boolean (either way the file holds the materialised table: PrefixEncoder
builds a plain [num_virtual_tokens, num_layers * 2 * token_dim] embedding in inference mode);
init_weights (0.19+) is null or "zero". The file holds exactly `prompt_embeddings`
[num_virtual_tokens, num_layers * 2 * token_dim] F32 (no prefix; strict=True) and the classifier
copies under the same rule as prompt tuning.
"""
import json
import os
import re
import struct

LINEARS = {  # sub-path: (in, out) in terms of hidden (H) and intermediate (I) widths
    "attention.self.query": ("H", "H"), "attention.self.key": ("H", "H"), "attention.self.value": ("H", "H"),
    "attention.output.dense": ("H", "H"), "intermediate.dense": ("H", "I"), "output.dense": ("I", "H"),
}
# LoraConfig's dataclass fields (every version up to 0.20; a loader older than the field drops or
# refuses it, see config.py) and the base PeftConfig's.
KNOWN = {
    "peft_type", "task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
    "r", "target_modules", "exclude_modules", "lora_alpha", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora",
    "modules_to_save", "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
    "megatron_config", "megatron_core", "trainable_token_indices", "loftq_config", "eva_config", "corda_config",
    "lora_ga_config", "use_dora", "velora_config", "alora_invocation_tokens", "use_qalora", "qalora_group_size",
    "monteclora_config", "layer_replication", "lora_bias", "target_parameters", "use_bdlora", "arrow_config",
    "kasa_config", "ensure_weight_tying",
}
# IA3Config's dataclass fields (exclude_modules since 0.14) and the base PeftConfig's.
KNOWN_IA3 = {
    "peft_type", "task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
    "target_modules", "exclude_modules", "feedforward_modules", "fan_in_fan_out", "modules_to_save", "init_ia3_weights",
}
# PromptTuningConfig's dataclass fields: PromptLearningConfig's (modules_to_save since 0.17) and the
# base PeftConfig's.
KNOWN_PROMPT_TUNING = {
    "peft_type", "task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
    "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
    "modules_to_save", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
}
# PrefixTuningConfig's dataclass fields (init_weights since 0.19): PromptLearningConfig's and the base
# PeftConfig's.
KNOWN_PREFIX_TUNING = {
    "peft_type", "task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode",
    "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
    "modules_to_save", "init_weights", "encoder_hidden_size", "prefix_projection",
}
PROMPT_TUNING_INITS = ("RANDOM", "TEXT", "SAMPLE_VOCAB")
IA3_BERT_TARGETS = ["key", "value", "output.dense"]  # constants.py, used when target_modules is null
IA3_BERT_FEEDFORWARD = ["output.dense"]  # used when feedforward_modules is null
TASK_TYPES = {None, "SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def read_f32_tensors(path):
    """Every tensor of a safetensors file of F32 tensors: {name: (shape, flat tuple of floats)}."""
    header = read_header(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(8 + n)
        data = f.read()
    out = {}
    for k, v in header.items():
        if k != "__metadata__":
            a, b = v["data_offsets"]
            out[k] = (v["shape"], struct.unpack("<%df" % ((b - a) // 4), data[a:b]))
    return out


def targeted(cfg, key, layer):
    """check_target_module_exists for a LoRA config and module name `key`."""
    ex = cfg.get("exclude_modules")
    if isinstance(ex, str) and re.fullmatch(ex, key):
        return False
    if isinstance(ex, list) and any(key == e or key.endswith("." + e) for e in ex):
        return False
    tm = cfg.get("target_modules")
    if isinstance(tm, str):
        return re.fullmatch(tm, key) is not None
    if key in tm:
        return True
    if not any(key.endswith("." + t) for t in tm):
        return False
    lt = cfg.get("layers_to_transform")
    if lt is None:
        return True
    return layer == lt if isinstance(lt, int) else layer in lt


def feedforward(cfg, key):
    """IA3Model._check_target_module_feedforward: a string is re.fullmatch; a list entry matches
    when `key` ends with it, with no dot boundary."""
    ff = cfg["feedforward_modules"]
    if isinstance(ff, str):
        return re.fullmatch(ff, key) is not None
    return any(key.endswith(f) for f in ff)


def names_or_regex(v):
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v))


def ia3_config_problems(cfg, out):
    """Appends what IA3Config would refuse; returns the config as IA3Model uses it on BERT (nulls
    replaced by the defaults, fields it does not know dropped), or None when the targets are
    unusable."""
    tm, ff = cfg.get("target_modules"), cfg.get("feedforward_modules")
    ok = True
    for name in ("target_modules", "feedforward_modules", "exclude_modules"):
        v = cfg.get(name)
        if v is not None and not names_or_regex(v):
            out.append("%s %r is neither a string nor a list of strings" % (name, v))
            ok = ok and name == "exclude_modules"
        elif isinstance(v, str):
            try:
                re.compile(v)
            except re.error as e:
                out.append("%s %r is not a regular expression: %s" % (name, v, e))
                ok = False
    if not ok:
        return None
    if isinstance(tm, list) and isinstance(ff, list) and not set(ff) <= set(tm):
        out.append("feedforward_modules %s is not a subset of target_modules %s (ValueError)" % (ff, tm))
    ms = cfg.get("modules_to_save")
    if ms is not None and not (isinstance(ms, list) and all(isinstance(m, str) for m in ms)):
        out.append("modules_to_save %r is not a list of strings" % (ms,))
    for k in ("fan_in_fan_out", "init_ia3_weights", "inference_mode"):
        if not isinstance(cfg.get(k, False), bool):
            out.append("%s %r is not a boolean" % (k, cfg.get(k)))
    used = {k: v for k, v in cfg.items() if k in KNOWN_IA3}
    used["target_modules"] = IA3_BERT_TARGETS if tm is None else tm
    used["feedforward_modules"] = IA3_BERT_FEEDFORWARD if ff is None else ff
    return used


def pattern(pat, key, default):
    for k in sorted(pat):  # a config read from a file iterates its keys in sorted order
        if re.match(r"(.*\.)?(%s)$" % k, key):
            return pat[k]
    return default


def problems(folder, num_layers, hidden, intermediate, prefix, heads=None):
    out = []
    cfg_path = os.path.join(folder, "adapter_config.json")
    wts_path = os.path.join(folder, "adapter_model.safetensors")
    for p in (cfg_path, wts_path):
        if not os.path.exists(p):
            return ["missing " + os.path.basename(p)]
    cfg = json.load(open(cfg_path))
    kind = cfg.get("peft_type")
    if kind not in ("LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING"):
        return ["peft_type %r: this checker knows LORA, IA3, PROMPT_TUNING and PREFIX_TUNING" % kind]
    known = {"LORA": KNOWN, "IA3": KNOWN_IA3, "PROMPT_TUNING": KNOWN_PROMPT_TUNING,
             "PREFIX_TUNING": KNOWN_PREFIX_TUNING}[kind]
    unknown = sorted(set(cfg) - known - {"peft_cpp"})
    if unknown:
        out.append("fields Hugging Face PEFT does not know (dropped with a warning, a TypeError before 0.14): %s" % unknown)
    if not isinstance(cfg.get("peft_cpp", {}), dict):
        out.append("peft_cpp is not an object")
    if cfg.get("task_type") not in TASK_TYPES:
        out.append("task_type %r is not a TaskType" % cfg.get("task_type"))
    if kind == "PROMPT_TUNING":
        return out + prompt_tuning_problems(cfg, wts_path, num_layers, hidden)
    if kind == "PREFIX_TUNING":
        return out + prefix_tuning_problems(cfg, wts_path, num_layers, hidden, heads)
    if kind == "IA3":
        cfg = ia3_config_problems(cfg, out)
        if cfg is None:
            return out
        return out + weight_problems(cfg, wts_path, num_layers, hidden, intermediate, prefix)
    if not isinstance(cfg.get("r"), int) or cfg["r"] <= 0:
        out.append("r %r is not a positive integer" % cfg.get("r"))
    if not isinstance(cfg.get("lora_alpha"), (int, float)):
        out.append("lora_alpha %r is not a number" % cfg.get("lora_alpha"))
    tm = cfg.get("target_modules")
    if not (isinstance(tm, str) or (isinstance(tm, list) and all(isinstance(t, str) for t in tm))):
        out.append("target_modules %r is neither a string nor a list of strings" % (tm,))
        return out
    if isinstance(tm, str) and (cfg.get("layers_to_transform") is not None or cfg.get("layers_pattern") is not None):
        out.append("a string target_modules with layers_to_transform or layers_pattern is a ValueError")
    if cfg.get("layers_pattern") is not None and cfg.get("layers_to_transform") is None:
        out.append("layers_pattern without layers_to_transform is a ValueError")
    if cfg.get("bias", "none") not in ("none", "all", "lora_only"):
        out.append("bias %r is not none/all/lora_only" % cfg.get("bias"))
    for k in ("rank_pattern", "alpha_pattern"):
        if not isinstance(cfg.get(k, {}), dict):
            out.append("%s is not an object" % k)
    for k in ("use_dora", "use_rslora", "fan_in_fan_out", "inference_mode"):
        if not isinstance(cfg.get(k, False), bool):
            out.append("%s %r is not a boolean" % (k, cfg.get(k)))
    return out + weight_problems(cfg, wts_path, num_layers, hidden, intermediate, prefix)


def weight_problems(cfg, wts_path, num_layers, hidden, intermediate, prefix):
    """The safetensors file against the modules `cfg` (a LORA or an IA3 config) targets."""
    out = []
    ia3 = cfg["peft_type"] == "IA3"
    header = read_header(wts_path)
    meta = header.pop("__metadata__", None)
    # A model the adapter was injected into directly (transformers' own adapter support) has no
    # base_model.model. prefix; the loader then strips it from the file's keys (save_and_load.py).
    if header and not any(k.startswith("base_model.model.") for k in header):
        header = {"base_model.model." + k: v for k, v in header.items()}
    if meta != {"format": "pt"}:
        out.append("safetensors metadata %r, expected {'format': 'pt'}" % (meta,))
    width = {"H": hidden, "I": intermediate}
    expected = {}
    for layer in range(num_layers):
        for sub, (i, o) in LINEARS.items():
            key = "%sencoder.layer.%d.%s" % (prefix, layer, sub)
            if not targeted(cfg, key, layer):
                continue
            if ia3:  # ia3_l is a ParameterDict entry: no .weight suffix
                shape = [1, width[i]] if feedforward(cfg, key) else [width[o], 1]
                expected["base_model.model.%s.ia3_l" % key] = shape
                continue
            r = pattern(cfg.get("rank_pattern", {}), key, cfg["r"])
            expected["base_model.model.%s.lora_A.weight" % key] = [r, width[i]]
            expected["base_model.model.%s.lora_B.weight" % key] = [width[o], r]
    if not expected:
        out.append("target_modules matches no module of the model (NoMatchingPeftModuleError)")
    for k, shape in expected.items():
        if k not in header:
            out.append("missing adapter key %s" % k)
        elif header[k]["shape"] != shape:
            out.append("%s has shape %s, the model's module needs %s" % (k, header[k]["shape"], shape))
        elif header[k]["dtype"] != "F32":
            out.append("%s is %s, not F32" % (k, header[k]["dtype"]))
    saved = ["base_model.model.%s." % m for m in (cfg.get("modules_to_save") or [])]
    for k in sorted(set(header) - set(expected)):
        if any(k.startswith(s) for s in saved):
            continue
        if ia3 and not k.endswith(".ia3_l"):
            out.append("unexpected key %s: neither an (IA)^3 vector (.ia3_l) nor a modules_to_save copy "
                       "(dropped on load)" % k)
        else:
            out.append("unexpected key %s (dropped on load)" % k)
    return out


def positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def virtual_tokens_and_dim(cfg, hidden, out):
    """num_virtual_tokens (a positive integer) and token_dim (the model's hidden size, which
    _prepare_prompt_learning_config fills in when null) of a prompt-learning config; each None
    when unusable. Problems go to out."""
    n = cfg.get("num_virtual_tokens")
    if not positive_int(n):
        out.append("num_virtual_tokens %r is not a positive integer" % (n,))
        n = None
    dim = cfg.get("token_dim")
    if dim is None:
        dim = hidden
    elif dim != hidden:
        out.append("token_dim %r is not the model's hidden size %d" % (dim, hidden))
        dim = dim if positive_int(dim) else None
    return n, dim


def prompt_learning_common(cfg, wts_path, out):
    """What prompt and prefix tuning folders share: modules_to_save a list of strings,
    inference_mode a boolean, the safetensors metadata. Returns (modules_to_save or None, the
    header without its metadata); problems go to out."""
    ms = cfg.get("modules_to_save")
    if ms is not None and not (isinstance(ms, list) and all(isinstance(m, str) for m in ms)):
        out.append("modules_to_save %r is not a list of strings" % (ms,))
        ms = None
    if not isinstance(cfg.get("inference_mode", False), bool):
        out.append("inference_mode %r is not a boolean" % (cfg.get("inference_mode"),))
    header = read_header(wts_path)
    meta = header.pop("__metadata__", None)
    if meta != {"format": "pt"}:
        out.append("safetensors metadata %r, expected {'format': 'pt'}" % (meta,))
    return ms, header


def prompt_tuning_problems(cfg, wts_path, num_layers, hidden):
    """A PROMPT_TUNING config and its safetensors file against a BERT model of `num_layers` layers
    and width `hidden`."""
    out = []
    n, dim = virtual_tokens_and_dim(cfg, hidden, out)
    subs = cfg.get("num_transformer_submodules")
    if subs is None:
        subs = 1  # PeftModel: 1 unless SEQ_2_SEQ_LM
    elif subs != 1:
        out.append("num_transformer_submodules %r is not 1 (an encoder-only model has one)" % (subs,))
    if cfg.get("num_layers") is not None and cfg["num_layers"] != num_layers:
        out.append("num_layers %r is not the model's layer count %d" % (cfg["num_layers"], num_layers))
    init = cfg.get("prompt_tuning_init", "RANDOM")
    if init not in PROMPT_TUNING_INITS:
        out.append("prompt_tuning_init %r is not one of %s" % (init, "/".join(PROMPT_TUNING_INITS)))
    if init == "TEXT":
        if not cfg.get("tokenizer_name_or_path"):
            out.append("prompt_tuning_init TEXT without tokenizer_name_or_path is a ValueError")
        if cfg.get("prompt_tuning_init_text") is None:
            out.append("prompt_tuning_init TEXT without prompt_tuning_init_text is a ValueError")
    elif cfg.get("tokenizer_kwargs"):
        out.append("tokenizer_kwargs without prompt_tuning_init TEXT is a ValueError")
    ms, header = prompt_learning_common(cfg, wts_path, out)
    # set_peft_model_state_dict loads prompt_embeddings with strict=True: missing is a KeyError,
    # another shape a RuntimeError.
    e = header.get("prompt_embeddings")
    if e is None:
        out.append("missing prompt_embeddings (KeyError on load)")
    else:
        if n is not None and isinstance(dim, int) and isinstance(subs, int) and e["shape"] != [n * subs, dim]:
            out.append("prompt_embeddings has shape %s, the config needs %s" % (e["shape"], [n * subs, dim]))
        if e["dtype"] != "F32":
            out.append("prompt_embeddings is %s, not F32" % e["dtype"])
    return out + classifier_copy_problems(cfg, ms, header, hidden)


def classifier_copy_problems(cfg, ms, header, hidden):
    """A prompt learning file's keys besides prompt_embeddings: only base_model.classifier.weight and
    .bias, expected when modules_to_save (`ms`) lists classifier or the task adds it."""
    out = []
    # PeftModelForSequenceClassification / ForTokenClassification add "classifier" and "score" to
    # modules_to_save when they are built, also when loading (peft_model.py __init__).
    classifier = "classifier" in (ms or []) or cfg.get("task_type") in ("SEQ_CLS", "TOKEN_CLS")
    for k in sorted(set(header) - {"prompt_embeddings"}):
        if classifier and k in ("base_model.classifier.weight", "base_model.classifier.bias"):
            continue
        out.append("unexpected key %s: neither prompt_embeddings nor a base_model.classifier.* copy listed "
                   "in modules_to_save (dropped on load)" % k)
    if classifier:
        w, b = header.get("base_model.classifier.weight"), header.get("base_model.classifier.bias")
        if w is None or b is None:
            out.append("modules_to_save lists classifier but the file has no base_model.classifier.weight and .bias "
                       "(the classifier stays as the model initialised it)")
        else:
            if len(w["shape"]) != 2 or w["shape"][1] != hidden or b["shape"] != w["shape"][:1]:
                out.append("base_model.classifier.weight %s / .bias %s do not fit a [labels, %d] linear"
                           % (w["shape"], b["shape"], hidden))
            for k, t in (("weight", w), ("bias", b)):
                if t["dtype"] != "F32":
                    out.append("base_model.classifier.%s is %s, not F32" % (k, t["dtype"]))
    return out


def prefix_tuning_problems(cfg, wts_path, num_layers, hidden, heads):
    """A PREFIX_TUNING config and its safetensors file against a BERT model of `num_layers` layers,
    width `hidden` and `heads` attention heads (None: unknown)."""
    out = []
    n, dim = virtual_tokens_and_dim(cfg, hidden, out)
    layers = cfg.get("num_layers")
    if layers is None:
        layers = num_layers  # _prepare_prompt_learning_config: num_hidden_layers
    elif layers != num_layers:
        out.append("num_layers %r is not the model's layer count %d (each layer takes one key/value pair of the "
                   "table)" % (layers, num_layers))
        layers = layers if positive_int(layers) else None
    nh = cfg.get("num_attention_heads")
    if nh is not None:
        if not positive_int(nh):
            out.append("num_attention_heads %r is not a positive integer" % (nh,))
        elif heads is not None and nh != heads:
            out.append("num_attention_heads %r is not the model's head count %d" % (nh, heads))
        elif isinstance(dim, int) and dim % nh:
            out.append("num_attention_heads %r does not divide token_dim %d (get_prompt's view fails)" % (nh, dim))
    subs = cfg.get("num_transformer_submodules")
    if subs is not None and subs != 1:
        out.append("num_transformer_submodules %r is not 1 (an encoder-only model has one)" % (subs,))
    if not isinstance(cfg.get("prefix_projection", False), bool):
        out.append("prefix_projection %r is not a boolean" % (cfg.get("prefix_projection"),))
    ehs = cfg.get("encoder_hidden_size")
    if ehs is not None and not positive_int(ehs):
        out.append("encoder_hidden_size %r is not a positive integer" % (ehs,))
    if cfg.get("init_weights") not in (None, "zero"):
        out.append("init_weights %r is neither null nor \"zero\"" % (cfg.get("init_weights"),))
    ms, header = prompt_learning_common(cfg, wts_path, out)
    # set_peft_model_state_dict loads prompt_embeddings into PrefixEncoder's embedding
    # [num_virtual_tokens, num_layers * 2 * token_dim] with strict=True.
    e = header.get("prompt_embeddings")
    if e is None:
        out.append("missing prompt_embeddings (KeyError on load)")
    else:
        if n is not None and dim is not None and layers is not None and e["shape"] != [n, layers * 2 * dim]:
            out.append("prompt_embeddings has shape %s, the config needs %s (num_virtual_tokens, num_layers * 2 * "
                       "token_dim)" % (e["shape"], [n, layers * 2 * dim]))
        if e["dtype"] != "F32":
            out.append("prompt_embeddings is %s, not F32" % e["dtype"])
    return out + classifier_copy_problems(cfg, ms, header, hidden)
