// SPDX-License-Identifier: Apache-2.0
// peft-train: fine-tune one task with any PEFT method over a frozen encoder.
//
//   peft-train --model DIR --method METHOD --train TRAIN --test TEST [--unlabeled POOL]
//              [--shots K --seed S] [--epochs N | --steps N] [--lr X] [--batch N]
//              [--template T --verbalizer L1=w1,L2=w2] [--save OUTDIR] [--threads N]
//              [LiST options]
//
// METHOD: head, full, houlsby, pfeiffer, list-adapter, prefix, mask, side, lora, list.
// `list` is LiST self-training (needs --unlabeled); its options default to the reference's:
//   --teacher-epochs 50 --teacher-lr 5e-6 --sessions 6 --student-steps 1000
//   --warmup-fraction 0.6 --finetune-epochs 50 --student-lr 1e-4 --batch 4
//   --unlabeled-batch 16 --meta-batch 4 --reweight 1 --re-init 1 --meta-method directional
// `mpmp` is MPMP downstream tuning: a fresh router over a pre-trained prompt library
// (peft-mpmp-pretrain) or over prompts from scratch, in explicit stages; defaults are the
// reference's (Hzfinfdu/MPMP Deep/downstream_run.py, deepbbt.py):
//   --mpmp-library LIB --mpmp-head TASK --stage router|prompts|both --blackbox 0|1
//   --router-epochs 500 --prompt-epochs 500 --router-lr 3e-3 --prompt-lr 2e-5 --batch (full)
//   --router-budget 100 --prompt-budget 3000 --dev DEV
//   from scratch: --prompt-tokens 50 --modules 8 --intrinsic-dim 300 --shallow 0|1
// With --shots and no --dev, the dev set is K more per class from the training file.
//
// Checkpoint and resume (adapter methods): --state FILE saves the whole training state
// (parameters, optimizer, step, generators, data position) every --save-every N steps (default
// 10), atomically; --resume continues a killed run from FILE and ends with the parameters an
// uninterrupted run would have. (PEFT_TRAIN_KILL_AT_STEP=N makes the run SIGKILL itself after
// step N, before that step's save: the kill-and-resume test uses it.)
//
// Data parallelism (adapter methods): started under `mpirun -np N` (a build with MPI), each rank
// trains on its share of every batch (--batch is per rank) and gradients are summed with one
// MPI_Allreduce per step; rank 0 prints and saves. --data-parallel runs the same code path in
// one process, reproducing N ranks with --batch N*b. LiST (method list) is sharded instead:
// its batch sizes stay global and must be multiples of the rank count.
// The last line on stdout is one JSON object with the test metrics and costs.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>

#include "task_common.hpp"
#ifdef PEFT_WITH_MPI
#include <peft/dist/mpi.hpp>
#endif

namespace {

using task::to_double;
using task::to_long;
using task::usage_error;

constexpr const char* usage =
    "usage: peft-train --model DIR --method METHOD --train TRAIN --test TEST [--unlabeled POOL]\n"
    "                  [--shots K --seed S] [--epochs N | --steps N] [--lr X] [--batch N]\n"
    "                  [--template T --verbalizer L1=w1,L2=w2] [--save OUTDIR] [--threads N]\n"
    "                  [--state FILE [--save-every N] [--resume]] [--data-parallel]  (mpirun -np N: data parallel)\n"
    "training (fit-based methods; default in brackets):\n"
    "  --weight-decay X [0] --warmup X (share of the steps) [0] --head-lr X [3e-2 with the default --lr]\n"
    "  --dev DEV --eval-every N [end only] --patience N (evaluations without gain before stopping) [0: never]\n"
    "input: --pooling cls|mean|pooler [the model's: cls, USE-lite mean] --max-length N [128]\n"
    "method hyper-parameters (fields of the method's adapter_config.json; default: the method's):\n"
    "  LoRA: --lora-r N [8] --lora-alpha X [8] --lora-dropout X [0.1] --target-modules query,value [query,value]\n"
    "        --layers 0,1,... [all]   (also mask-tuning and the adapters: --target-modules, --layers)\n"
    "  adapters (houlsby, pfeiffer, list-adapter, list): --adapter-size N [64; pfeiffer: hidden/16; LiST 128]\n"
    "        --reduction-factor X\n"
    "  prefix: --prefix-tokens N [10] --prefix-projection 0|1 [1]\n"
    "  any method: --option KEY=VALUE (a JSON value, e.g. --option init_sparsity=0.3), repeatable\n"
    "LiST (method list, needs --unlabeled; defaults are the reference's):\n"
    "  --teacher-epochs 50 --teacher-lr 5e-6 --sessions 6 --student-steps 1000 --warmup-fraction 0.6\n"
    "  --finetune-epochs 50 --student-lr 1e-4 --batch 4 --unlabeled-batch 16 --meta-batch 4\n"
    "  --reweight 1 (0: KD only) --re-init 1 (0: student starts from the teacher)\n"
    "  --meta-method directional|per-example --head-lr X (fresh classification head; default 3e-2)\n"
    "MPMP (method mpmp; defaults are the reference's):\n"
    "  --mpmp-library LIB (from peft-mpmp-pretrain; none: prompts from scratch) --mpmp-head TASK\n"
    "  --stage router|prompts|both --blackbox 0|1 --dev DEV (default with --shots: K more per class)\n"
    "  --router-epochs 500 --prompt-epochs 500 --router-lr 3e-3 --prompt-lr 2e-5 --eval-every 25\n"
    "  --router-budget 100 --prompt-budget 3000 (black-box)\n"
    "  from scratch: --prompt-tokens 50 --modules 8 --intrinsic-dim 300 --shallow 0|1\n";

/// The usage text, with the methods peft-train can train (from the registry).
std::string usage_text() {
  std::ostringstream out;
  out << usage << "methods (default --lr):\n";
  for (const auto& m : peft::methods())
    if (m.make) out << "  " << std::left << std::setw(13) << m.name << std::setw(8) << m.default_lr << m.summary << "\n";
  return out.str();
}

struct options {
  std::string model, method, train, test, unlabeled, tmpl, verbalizer, save, dev;
  long shots = 0, epochs = 0, steps = 0, batch = 0;
  std::uint64_t seed = 1;
  double lr = 0;
  int threads = 0;
  peft::list_options list;
  double head_lr = 0;
  task::mpmp_settings mpmp;
  bool mpmp_flags = false;  // any MPMP-only option given
  std::string state;
  long save_every = 10;
  bool resume = false, data_parallel = false;
  double weight_decay = 0, warmup = 0;
  long eval_every = 0, patience = 0, max_length = 0;
  nlohmann::json layers;  ///< --layers: the method's layer-list field (named per method)
  std::string pooling;
  nlohmann::json policy_options = nlohmann::json::object();  ///< fields of the method's adapter_config.json
  std::string option_flags;                                  ///< the flags that set them, for messages
};

/// Sets policy option @p key (a field of the method's adapter_config.json) from flag @p flag.
void set_policy_option(options& o, const std::string& flag, const std::string& key, nlohmann::json value) {
  o.policy_options[key] = std::move(value);
  o.option_flags += (o.option_flags.empty() ? "" : ", ") + flag;
}

/// "0,1,2" as a JSON array of integers >= 0; "query,value" as an array of strings.
nlohmann::json integer_list(const std::string& flag, const std::string& v) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& item : task::split_list(v)) out.push_back(to_long(flag, item, 0));
  if (out.empty()) throw usage_error(flag + " expects a comma-separated list of integers >= 0, got '" + v + "'");
  return out;
}
nlohmann::json name_list(const std::string& flag, const std::string& v) {
  const auto items = task::split_list(v);
  if (items.empty()) throw usage_error(flag + " expects a comma-separated list of names, got '" + v + "'");
  return nlohmann::json(items);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage_text();
      std::exit(0);
    }
    if (a == "--resume" || a == "--data-parallel") {  // flags without a value
      (a == "--resume" ? o.resume : o.data_parallel) = true;
      continue;
    }
    if (i + 1 >= argc) throw usage_error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--model") o.model = v;
    else if (a == "--method") o.method = v;
    else if (a == "--train") o.train = v;
    else if (a == "--test") o.test = v;
    else if (a == "--unlabeled") o.unlabeled = v;
    else if (a == "--template") o.tmpl = v;
    else if (a == "--verbalizer") o.verbalizer = v;
    else if (a == "--save") o.save = v;
    else if (a == "--state") o.state = v;
    else if (a == "--save-every") o.save_every = to_long(a, v, 1);
    else if (a == "--shots") o.shots = to_long(a, v, 1);
    else if (a == "--seed") o.seed = static_cast<std::uint64_t>(to_long(a, v, 0));
    else if (a == "--epochs") o.epochs = to_long(a, v, 1);
    else if (a == "--steps") o.steps = to_long(a, v, 1);
    else if (a == "--batch") o.batch = to_long(a, v, 1);
    else if (a == "--threads") o.threads = static_cast<int>(to_long(a, v, 1));
    else if (a == "--teacher-epochs") o.list.teacher_epochs = static_cast<int>(to_long(a, v, 0));
    else if (a == "--teacher-lr") o.list.teacher_lr = to_double(a, v, 1e-12, 10);
    else if (a == "--sessions") o.list.sessions = static_cast<int>(to_long(a, v, 0));
    else if (a == "--student-steps") o.list.student_steps = to_long(a, v, 0);
    else if (a == "--warmup-fraction") o.list.warmup_fraction = to_double(a, v, 0, 1);
    else if (a == "--finetune-epochs") o.list.finetune_epochs = static_cast<int>(to_long(a, v, 0));
    else if (a == "--student-lr") o.list.student_lr = to_double(a, v, 1e-12, 10);
    else if (a == "--head-lr") o.head_lr = to_double(a, v, 1e-12, 10);
    else if (a == "--unlabeled-batch") o.list.unlabelled_batch = to_long(a, v, 1);
    else if (a == "--meta-batch") o.list.meta_batch = to_long(a, v, 1);
    else if (a == "--reweight") o.list.reweight = to_long(a, v, 0) != 0;
    else if (a == "--re-init") o.list.re_init = to_long(a, v, 0) != 0;
    else if (a == "--dev") o.dev = v;
    else if (a == "--weight-decay") o.weight_decay = to_double(a, v, 0, 10);
    else if (a == "--warmup") o.warmup = to_double(a, v, 0, 1);
    else if (a == "--patience") o.patience = to_long(a, v, 1);
    else if (a == "--max-length") o.max_length = to_long(a, v, 2);
    else if (a == "--pooling") {
      try {
        o.pooling = peft::to_string(peft::parse_pool_kind(v));
      } catch (const peft::error& e) {
        throw usage_error(std::string("--pooling: ") + e.what());
      }
    }
    else if (a == "--lora-r") set_policy_option(o, a, "r", to_long(a, v, 1));
    else if (a == "--lora-alpha") set_policy_option(o, a, "lora_alpha", to_double(a, v, 1e-12, 1e6));
    else if (a == "--lora-dropout") set_policy_option(o, a, "lora_dropout", to_double(a, v, 0, 0.99));
    else if (a == "--target-modules") set_policy_option(o, a, "target_modules", name_list(a, v));
    else if (a == "--layers") o.layers = integer_list(a, v);
    else if (a == "--adapter-size") set_policy_option(o, a, "bottleneck_size", to_long(a, v, 1));
    else if (a == "--reduction-factor") set_policy_option(o, a, "reduction_factor", to_double(a, v, 1e-6, 1e6));
    else if (a == "--prefix-tokens") set_policy_option(o, a, "num_virtual_tokens", to_long(a, v, 1));
    else if (a == "--prefix-projection") set_policy_option(o, a, "prefix_projection", to_long(a, v, 0) != 0);
    else if (a == "--option") {
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) throw usage_error("--option expects KEY=VALUE, got '" + v + "'");
      const std::string value = v.substr(eq + 1);
      nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
      set_policy_option(o, "--option " + v.substr(0, eq), v.substr(0, eq), j.is_discarded() ? nlohmann::json(value) : j);
    }
    else if (a == "--mpmp-library") o.mpmp.library = v, o.mpmp_flags = true;
    else if (a == "--mpmp-head") o.mpmp.library_head = v, o.mpmp_flags = true;
    else if (a == "--stage") {
      try {
        o.mpmp.tune.stage = peft::parse_mpmp_stage(v);
      } catch (const peft::error& e) {
        throw usage_error(std::string("--stage: ") + e.what());
      }
      o.mpmp_flags = true;
    }
    else if (a == "--blackbox") o.mpmp.blackbox = to_long(a, v, 0) != 0, o.mpmp_flags = true;
    else if (a == "--router-epochs") o.mpmp.tune.router_epochs = static_cast<int>(to_long(a, v, 0)), o.mpmp_flags = true;
    else if (a == "--prompt-epochs") o.mpmp.tune.prompt_epochs = static_cast<int>(to_long(a, v, 0)), o.mpmp_flags = true;
    else if (a == "--router-lr") o.mpmp.tune.router_lr = to_double(a, v, 1e-12, 10), o.mpmp_flags = true;
    else if (a == "--prompt-lr") o.mpmp.tune.prompt_lr = to_double(a, v, 1e-12, 10), o.mpmp_flags = true;
    else if (a == "--eval-every") o.eval_every = to_long(a, v, 1);
    else if (a == "--router-budget") o.mpmp.bbt.router_budget = to_long(a, v, 0), o.mpmp_flags = true;
    else if (a == "--prompt-budget") o.mpmp.bbt.prompt_budget = to_long(a, v, 0), o.mpmp_flags = true;
    else if (a == "--prompt-tokens") o.mpmp.scratch.num_prompt_tokens = to_long(a, v, 1), o.mpmp_flags = true;
    else if (a == "--modules") o.mpmp.scratch.num_modules = to_long(a, v, 1), o.mpmp_flags = true;
    else if (a == "--intrinsic-dim") o.mpmp.scratch.intrinsic_dim = to_long(a, v, 1), o.mpmp_flags = true;
    else if (a == "--shallow") o.mpmp.scratch.deep = to_long(a, v, 0) == 0, o.mpmp_flags = true;
    else if (a == "--meta-method") {
      try {
        o.list.meta.method = peft::parse_reweight_method(v);
      } catch (const peft::error& e) {
        throw usage_error(std::string("--meta-method: ") + e.what());
      }
    }
    else if (a == "--lr") {
      try {
        o.lr = std::stod(v);
      } catch (const std::exception&) {
        throw usage_error("--lr expects a number, got '" + v + "'");
      }
      if (!(o.lr > 0)) throw usage_error("--lr must be > 0");
    } else {
      throw usage_error("unknown option " + a);
    }
  }
  for (auto [flag, val] : {std::pair{"--model", &o.model}, {"--method", &o.method}, {"--train", &o.train}, {"--test", &o.test}})
    if (val->empty()) throw usage_error(std::string(flag) + " is required");
  if (o.epochs && o.steps) throw usage_error("give --epochs or --steps, not both");
  if (o.resume && o.state.empty()) throw usage_error("--resume needs --state FILE");
  try {
    if (!peft::find_method(o.method).make)
      throw usage_error("--method " + o.method + " is not trained from a config (see the methods below)");
  } catch (const peft::invalid_argument& e) {
    throw usage_error(std::string("--method: ") + e.what());
  }
  if (!o.state.empty() && (o.method == "list" || o.method == "mpmp"))
    throw usage_error("--state goes with the fit-based methods, not " + o.method);
  if (o.data_parallel && o.method == "mpmp") throw usage_error("--data-parallel does not go with method mpmp");
  if (o.tmpl.empty() != o.verbalizer.empty()) throw usage_error("--template and --verbalizer go together");
  if (o.method == "list" && o.unlabeled.empty()) throw usage_error("method list (LiST) needs --unlabeled POOL");
  if (o.method == "list" && (o.lr > 0 || o.epochs || o.steps))
    throw usage_error("method list takes --teacher-lr/--student-lr and --teacher-epochs/--student-steps/--finetune-epochs, "
                      "not --lr/--epochs/--steps");
  if (o.method != "mpmp" && o.mpmp_flags)
    throw usage_error("the MPMP options (--mpmp-library, --stage, --blackbox, ...) go with --method mpmp");
  if (o.patience && o.dev.empty()) throw usage_error("--patience needs --dev DEV (the set it watches)");
  if (o.method == "list" && (!o.dev.empty() || o.eval_every))
    throw usage_error("method list reports on --test each session; --dev and --eval-every go with the other methods");
  if ((o.method == "list" || o.method == "mpmp") && (o.weight_decay > 0 || o.warmup > 0 || o.patience))
    throw usage_error("--weight-decay, --warmup and --patience go with the fit-based methods, not " + o.method);
  if (!o.layers.is_null()) {
    // The layer list is named per method: LoRA's layers_to_transform, the adapters' and
    // mask-tuning's layers.
    set_policy_option(o, "--layers", o.method == "lora" ? "layers_to_transform" : "layers", o.layers);
  }
  if (o.method == "mpmp" && !o.policy_options.empty())
    throw usage_error("method mpmp takes --prompt-tokens/--modules/--intrinsic-dim/--shallow, not " + o.option_flags);
  if (o.method == "mpmp" && o.eval_every) o.mpmp.tune.eval_every = static_cast<int>(o.eval_every);
  if (o.method == "mpmp") {
    if (o.lr > 0 || o.epochs || o.steps)
      throw usage_error("method mpmp takes --router-lr/--prompt-lr and --router-epochs/--prompt-epochs, not --lr/--epochs/--steps");
    if (!o.tmpl.empty()) throw usage_error("method mpmp uses a classification head (no --template)");
    if (!o.mpmp.library.empty() && (o.mpmp.scratch.num_prompt_tokens != peft::modular_prompt_config{}.num_prompt_tokens ||
                                    o.mpmp.scratch.num_modules != peft::modular_prompt_config{}.num_modules ||
                                    o.mpmp.scratch.intrinsic_dim != peft::modular_prompt_config{}.intrinsic_dim ||
                                    !o.mpmp.scratch.deep))
      throw usage_error("--prompt-tokens/--modules/--intrinsic-dim/--shallow describe prompts from scratch; a library has its own");
    o.mpmp.bbt.router_init_points =
        std::min<peft::index>(o.mpmp.bbt.router_init_points, std::max<peft::index>(1, o.mpmp.bbt.router_budget));
    if (o.mpmp.blackbox && o.mpmp.library.empty()) throw usage_error("--blackbox 1 needs --mpmp-library (a pre-trained A and head)");
  }
  return o;
}

int run(const options& o, peft::collective* comm) {
  const bool lead = !comm || comm->rank() == 0;
  if (comm && comm->size() > 1 && o.method == "mpmp")
    throw peft::invalid_argument("peft-train: method mpmp does not run data-parallel (expected 1 rank, got " +
                                 std::to_string(comm->size()) + ")");
  if (o.threads > 0) peft::set_num_threads(o.threads);
  peft::keep_freed_memory();  // activation buffers are reused across steps, not re-faulted
  const auto m = task::load_model(o.model);
  if (!o.policy_options.empty()) {
    // Checked against the model now, before the data is read: a bad value names its flag.
    try {
      (void)peft::make_policy(o.method, task::model_shape(m), o.seed, o.policy_options);
    } catch (const peft::invalid_argument& e) {
      throw usage_error(o.option_flags + ": " + e.what());
    }
  }
  peft::dataset train_data = peft::read_dataset(o.train);
  const peft::dataset test_data = peft::read_dataset(o.test);
  const auto labels = peft::label_map::from_dataset(train_data);
  peft::dataset dev_data;
  if (!o.dev.empty()) dev_data = peft::read_dataset(o.dev);
  if (o.shots > 0) {
    peft::few_shot_options fo;
    fo.shots = static_cast<std::size_t>(o.shots);
    fo.seed = o.seed;
    const auto split = peft::sample_few_shot(train_data, fo);
    if (o.method == "mpmp" && o.dev.empty()) {
      // MPMP keeps the best-by-dev parameters; the reference's dev set is as large as the
      // training set, so take K more per class from the rest of the file.
      const auto rest = peft::subset(train_data, split.unlabeled);
      fo.seed = o.seed ^ 0xd3e5eedULL;
      dev_data = peft::subset(rest, peft::sample_few_shot(rest, fo).labeled);
    }
    train_data = peft::subset(train_data, split.labeled);
  }
  peft::dataset pool_data;
  if (!o.unlabeled.empty()) pool_data = peft::read_dataset(o.unlabeled);  // used by `list` (LiST)
  task::task_settings s;
  s.method = o.method;
  s.model_type = m.model_type;
  s.template_spec = o.tmpl;
  s.verbalizer_spec = o.verbalizer;
  s.pooling = o.pooling.empty() ? peft::to_string(peft::default_pool_kind(m.model_type)) : o.pooling;
  if (o.max_length > 0) s.max_length = o.max_length;
  s.policy_options = o.policy_options;
  if (o.method == "mpmp") {
    if (!o.mpmp.library.empty()) {
      const auto info = peft::read_mpmp_library_info(o.mpmp.library);
      const auto cfg = peft::read_adapter_config(o.mpmp.library);
      if (!cfg.contains("num_prompt_tokens") || !peft::detail::json_to_integer(cfg["num_prompt_tokens"], s.prompt_tokens))
        throw peft::io_error("'" + o.mpmp.library + "/adapter_config.json': field 'num_prompt_tokens' expected an "
                             "integer (is this an MPMP library from peft-mpmp-pretrain?)");
      s.placeholder_id = info.placeholder_id;
    } else {
      s.prompt_tokens = o.mpmp.scratch.num_prompt_tokens;
    }
  }
  std::optional<peft::prompt_template> tmpl;
  std::optional<peft::verbalizer> verb;
  if (!o.tmpl.empty()) {
    if (!m.wordpiece || !m.weights->has_mlm_head())
      throw peft::invalid_argument("--template needs a masked-LM checkpoint with a WordPiece vocabulary (got " +
                                   m.model_type + ")");
    tmpl.emplace(o.tmpl);
    verb.emplace(peft::verbalizer::parse(*m.wordpiece, o.verbalizer, labels.labels()));
  }
  const auto train = task::encode(m, s, train_data, labels, tmpl, true);
  const auto test = task::encode(m, s, test_data, labels, tmpl, true);
  const auto words = verb ? verb->ids() : std::vector<std::int32_t>{};
  task::run_result r;
  if (o.method == "mpmp") {
    const auto dev = task::encode(m, s, dev_data, labels, tmpl, true);
    task::mpmp_settings ms = o.mpmp;
    if (o.batch) ms.tune.batch_size = o.batch;
    ms.tune.progress_out = stderr;
    ms.bbt.progress_out = stderr;
    if (o.head_lr > 0) ms.fresh_head_lr = o.head_lr;
    r = task::train_mpmp_task(m, s, labels, train, dev, test, ms, o.seed);
  } else if (o.method == "list") {
    // Labels in the pool are ignored (LiST's unlabelled data is a training set with labels removed).
    for (auto& e : pool_data) e.label.reset();
    const auto pool = task::encode(m, s, pool_data, labels, tmpl, false);
    peft::list_options lo = o.list;
    lo.labelled_batch = o.batch ? o.batch : 4;
    lo.seed = o.seed;
    lo.pad_id = m.pad_id;
    lo.progress_out = stderr;
    lo.comm = comm;  // sharded LiST under mpirun (batch sizes stay global)
    // A fresh classification head learns at the head's rate; the reference's LM head is pre-trained.
    const double head_lr = o.head_lr > 0 ? o.head_lr : (words.empty() ? peft::default_lr("head") : 0.0);
    lo.teacher_head_lr = head_lr;
    lo.student_head_lr = head_lr;
    r = task::train_list_task(m, s, labels.size(), words, train, pool, test, lo);
  } else {
    peft::fit_options f;
    f.epochs = o.epochs ? static_cast<int>(o.epochs) : 20;
    f.steps = o.steps;
    f.batch_size = o.batch ? o.batch : 8;
    f.lr = o.lr > 0 ? o.lr : peft::default_lr(o.method);
    f.head_lr = o.head_lr > 0 ? o.head_lr : o.lr > 0 ? 0.0 : peft::default_lr("head");  // a fresh head: the head's rate
    f.seed = o.seed;
    f.pad_id = m.pad_id;
    f.weight_decay = o.weight_decay;
    f.warmup_ratio = o.warmup;
    f.eval_every = o.eval_every;
    f.patience = static_cast<int>(o.patience);
    f.label = o.method;
    f.progress_out = stderr;  // stdout's last line is the JSON result
    f.comm = comm;
    f.state_path = o.state;
    f.save_every = o.save_every;
    f.resume = o.resume;
    if (const char* k = std::getenv("PEFT_TRAIN_KILL_AT_STEP")) {
      const long kill_at = task::to_long("PEFT_TRAIN_KILL_AT_STEP", k, 1);
      f.on_step = [kill_at](long step) {
        if (step == kill_at) std::raise(SIGKILL);
      };
    }
    const auto dev = task::encode(m, s, dev_data, labels, tmpl, true);
    r = task::train_task(m, s, labels.size(), words, train, dev, test, f, o.seed);
  }
  if (!lead) return 0;
  if (!o.save.empty()) task::save_task(o.save, s, labels, r);  // one unit: policy, head, labels, settings
  nlohmann::json out = {{"method", o.method},
                        {"accuracy", r.accuracy},
                        {"macro_f1", r.macro_f1},
                        {"trainable_params", r.trainable_params},
                        {"backbone_params", r.backbone_params},
                        {"train_seconds", r.train_seconds},
                        {"examples_per_second", r.examples_per_second}};
  if (comm) {
    out["ranks"] = comm->size();
    out["allreduce_calls"] = comm->allreduce_calls();
    out["allreduce_bytes"] = comm->bytes_reduced();
  }
  if (o.method == "list") {
    out["teacher_accuracy"] = r.teacher_accuracy;
    out["sessions"] = nlohmann::json::array();
    for (const auto& rep : r.sessions)
      out["sessions"].push_back({{"session", rep.session},
                                 {"pseudo_label_accuracy", rep.pseudo_label_accuracy},
                                 {"kept", rep.mean_kept},
                                 {"accuracy", rep.eval_accuracy},
                                 {"seconds", rep.seconds}});
  }
  if (o.method == "mpmp") {
    out["library_head"] = r.mpmp_head;
    out["stages"] = nlohmann::json::array();
    for (const auto& st : r.mpmp_stages)
      out["stages"].push_back({{"stage", st.name},
                               {"trainable_params", st.trainable_params},
                               {"steps", st.steps},
                               {"start_dev_accuracy", st.start_dev_accuracy},
                               {"best_dev_accuracy", st.best_dev_accuracy},
                               {"seconds", st.seconds}});
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    o = parse(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "peft-train: " << e.what() << "\n" << usage_text();
    return 2;
  }
#ifdef PEFT_WITH_MPI
  if (peft::launched_by_mpi()) {
    peft::mpi_session session(&argc, &argv);  // outside the try: the handler reports, then aborts
    try {
      peft::mpi_collective comm;
      return run(o, &comm);
    } catch (const std::exception& e) {
      std::cerr << "peft-train: " << e.what() << "\n";
      peft::mpi_session::abort(1);
    }
  }
#endif
  try {
    peft::single_process one;
    return run(o, o.data_parallel ? &one : nullptr);
  } catch (const usage_error& e) {  // an option the model rejects (checked before training)
    std::cerr << "peft-train: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "peft-train: " << e.what() << "\n";
    return 1;
  }
}
