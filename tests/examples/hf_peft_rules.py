# SPDX-License-Identifier: Apache-2.0
"""What Hugging Face PEFT requires of a LoRA or (IA)^3 adapter folder when it loads one onto a
BERT model, written from its source (huggingface/peft: config.py, tuners/lora/config.py,
tuners/ia3/config.py, tuners/ia3/model.py, tuners/ia3/layer.py, tuners/tuners_utils.py
check_target_module_exists, utils/other.py get_pattern_key, utils/save_and_load.py
set_peft_model_state_dict), applied without torch or peft installed.

problems(folder, num_layers, hidden, intermediate, prefix) returns the list of what
PeftModel.from_pretrained would refuse, or would load differently from what the folder says
(missing adapter keys, which it only warns about; unexpected keys, which it drops silently).
`prefix` is what precedes "encoder." in the module names of the model it is loaded onto:
"bert." for a BertFor... model, "" for BertModel.

An IA3 folder: target_modules and feedforward_modules null stand for IA3Model's BERT defaults
(["key", "value", "output.dense"] and ["output.dense"]); a feedforward_modules list entry matches
a targeted module whose path ends with it, with no dot boundary (so "output.dense" also makes
attention.output.dense feedforward), a string is re.fullmatch; each targeted module has one
`<module>.ia3_l` vector, (1, in) when feedforward and (out, 1) otherwise.
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
IA3_BERT_TARGETS = ["key", "value", "output.dense"]  # constants.py, used when target_modules is null
IA3_BERT_FEEDFORWARD = ["output.dense"]  # used when feedforward_modules is null
TASK_TYPES = {None, "SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


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


def problems(folder, num_layers, hidden, intermediate, prefix):
    out = []
    cfg_path = os.path.join(folder, "adapter_config.json")
    wts_path = os.path.join(folder, "adapter_model.safetensors")
    for p in (cfg_path, wts_path):
        if not os.path.exists(p):
            return ["missing " + os.path.basename(p)]
    cfg = json.load(open(cfg_path))
    kind = cfg.get("peft_type")
    if kind not in ("LORA", "IA3"):
        return ["peft_type %r: this checker knows LORA and IA3" % kind]
    unknown = sorted(set(cfg) - (KNOWN if kind == "LORA" else KNOWN_IA3) - {"peft_cpp"})
    if unknown:
        out.append("fields Hugging Face PEFT does not know (dropped with a warning, a TypeError before 0.14): %s" % unknown)
    if not isinstance(cfg.get("peft_cpp", {}), dict):
        out.append("peft_cpp is not an object")
    if cfg.get("task_type") not in TASK_TYPES:
        out.append("task_type %r is not a TaskType" % cfg.get("task_type"))
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
