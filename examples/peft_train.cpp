// SPDX-License-Identifier: Apache-2.0
// peft-train: fine-tune one task with any PEFT method over a frozen encoder.
//
//   peft-train --model DIR --method METHOD --train TRAIN --test TEST [--unlabeled POOL]
//              [--shots K --seed S] [--epochs N | --steps N] [--lr X] [--batch N]
//              [--template T --verbalizer L1=w1,L2=w2] [--save OUTDIR] [--threads N]
//              [method hyper-parameters: --lora-r, --lora-alpha, --lora-rslora, --target-modules, --layers,
//               --adapter-size, --prefix-tokens, --option KEY=VALUE, ...] [LiST / MPMP options]
//              [--config FILE]   (peft-train --help lists every option with its default)
//              [--kind classification|regression|multi_label|token_classification|extractive_qa]
//
// --kind sets what the task predicts (peft/task/kinds.hpp): one label (the default), real
// targets, a set of labels, a BIO tag per word (JSONL {"tokens","tags"} or CoNLL columns), or an
// answer span of a context (SQuAD JSON or its JSONL). Each kind has its loss and metrics; the
// metrics go in the last line's "metrics".
//
// METHOD: a method of the registry (peft/methods.hpp; --help lists them): head, full,
// houlsby, pfeiffer, list-adapter, prefix, mask, side, lora, ia3, prompt-tuning, bitfit, list, mpmp.
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
// Few-shot recipes (the fit-based methods that have a policy, single-label classification):
//   --objective contrastive     SetFit: the policy on contrastive pairs of the labelled rows
//                               (--pairs rounds, --pair-epochs, --pair-lr), then the head alone
//                               on the tuned, frozen embedding for --epochs
//   --objective contrastive-ft  the same pairs, then policy and head together for --epochs
//   --probe-epochs N            LP-FT: the head alone for N epochs, then both for --epochs
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

using task::usage_error;
namespace cli = task::cli;

struct options {
  std::string model, method, train, test, unlabeled, tmpl, verbalizer, save, dev;
  std::string kind = "classification";
  std::string label_options;  ///< --options: the labels written as options for a span head
  long doc_stride = 128, max_query_length = 64, max_answer_length = 30;
  long shots = 0, epochs = 0, steps = 0, batch = 0;
  std::uint64_t seed = 1;
  double lr = 0;
  int threads = 0;
  peft::list_options list;
  double head_lr = 0;
  task::mpmp_settings mpmp;
  bool mpmp_flags = false;  // any MPMP-only option given
  std::string state;
  std::string init_adapter;  ///< --init-adapter: the policy starts from this folder
  std::string export_adapterhub;  ///< --export-adapterhub: the trained adapter and head, as AdapterHub's folder
  long save_every = 10;
  bool resume = false, data_parallel = false;
  double weight_decay = 0, warmup = 0;
  long eval_every = 0, patience = 0, max_length = 0;
  std::string pooling;
  std::string layers;                                        ///< --layers: named per method (see check)
  nlohmann::json policy_options = nlohmann::json::object();  ///< fields of the method's adapter_config.json
  std::string option_flags;                                  ///< the flags that set them, for messages
  std::string objective = "plain";  ///< --objective: plain, contrastive (SetFit) or contrastive-ft
  peft::contrastive_options pairs{20, 1, 16, 0.0};
  long probe_epochs = 0;
  std::string stage = "both", meta_method = "directional";
  int reweight = 1, re_init = 1, blackbox = 0, shallow = 0;
};

/// Sets policy option @p key (a field of the method's adapter_config.json) from flag @p flag.
void set_policy_option(options& o, const std::string& flag, const std::string& key, nlohmann::json value) {
  o.policy_options[key] = std::move(value);
  o.option_flags += (o.option_flags.empty() ? "" : ", ") + flag;
}

/// The methods peft-train trains (from the registry), for --help.
std::string methods_footer() {
  std::ostringstream out;
  out << "Methods (--method; default --lr):\n";
  for (const auto& m : peft::methods())
    if (m.make) out << "  " << std::left << std::setw(13) << m.name << std::setw(8) << m.default_lr << m.summary << "\n";
  out << "LiST (--method list) and MPMP (--method mpmp) defaults are the references' (microsoft/LiST run.sh,\n"
         "Hzfinfdu/MPMP downstream_run.py); with --shots and no --dev, MPMP's dev set is K more per class.\n";
  return out.str();
}

/// Every option of peft-train, bound to @p o.
void add_options(cli::app& app, options& o) {
  const std::string task = "Task", train = "Training (fit-based methods)", method = "Method hyper-parameters",
                    list = "LiST (--method list)", mpmp = "MPMP (--method mpmp)", run = "Checkpoints and parallelism";
  app.add_option("--model", o.model, "model folder (Hugging Face or USE-lite)")->required()->group(task);
  app.add_option("--method", o.method, "PEFT method (listed below)")->required()->group(task);
  app.add_option("--train", o.train, "training data (JSONL, TSV, CSV, or the sentiment JSON)")->required()->group(task);
  app.add_option("--test", o.test, "test data, evaluated after training")->required()->group(task);
  app.add_option("--unlabeled", o.unlabeled, "unlabelled pool (LiST)")->group(task);
  app.add_option("--kind", o.kind,
                 "what the task predicts: one label; real targets (JSONL \"label\": number or list); a label set "
                 "(JSONL \"labels\": [names]); a tag per word (JSONL tokens/tags or CoNLL columns); an answer span "
                 "(SQuAD JSON or JSONL)")
      ->check(cli::one_of({"classification", "regression", "multi_label", "token_classification", "extractive_qa"}))
      ->group(task);
  app.add_option("--options", o.label_options,
                 "classification as reading comprehension (MPMP): the labels written after the text as options, "
                 "a span head points at one; 'names', or LABEL=TEXT,... (unlisted labels: their names); on by "
                 "itself with an --mpmp-library whose head is a span head")
      ->group(task);
  app.add_option("--doc-stride", o.doc_stride, "reading comprehension: step between a context's windows, in pieces")
      ->check(cli::integer(1))->group(task);
  app.add_option("--max-query-length", o.max_query_length, "reading comprehension: question pieces kept")
      ->check(cli::integer(1))->group(task);
  app.add_option("--max-answer-length", o.max_answer_length, "reading comprehension: longest answer, in pieces")
      ->check(cli::integer(1))->group(task);
  app.add_option("--shots", o.shots, "K labelled examples per class drawn from --train (0: all)")
      ->check(cli::integer(1))->group(task);
  app.add_option("--seed", o.seed, "seed of the few-shot draw, the initialisation and the order")
      ->check(cli::integer(0))->group(task);
  app.add_option("--template", o.tmpl, "prompt template (LM-BFF/LiST syntax; masked-LM BERT)")->group(task);
  app.add_option("--verbalizer", o.verbalizer, "label words: L1=w1,L2=w2 (with --template)")->group(task);
  app.add_option("--pooling", o.pooling, "classification head's pooling (default: cls; USE-lite: mean)")
      ->check(cli::one_of({"cls", "mean", "pooler", "sentence", "tokens"}))->group(task);
  app.add_option("--max-length", o.max_length, "longest input in tokens (0: 128)")->check(cli::integer(2))->group(task);
  app.add_option("--save", o.save, "save the task (policy, head, labels, settings) to this folder, as one unit")
      ->group(task);
  app.add_option("--export-adapterhub", o.export_adapterhub,
                 "also write the trained bottleneck adapter (houlsby, pfeiffer) and its head as an AdapterHub "
                 "folder (adapter_config.json, adapter.safetensors, head_config.json)")
      ->group(task);
  app.add_option("--threads", o.threads, "OpenMP threads (0: the default)")->check(cli::integer(1))->group(task);

  app.add_option("--epochs", o.epochs, "epochs (0: 20)")->check(cli::integer(1))->group(train);
  app.add_option("--steps", o.steps, "optimizer steps instead of epochs")->check(cli::integer(1))->group(train);
  app.add_option("--lr", o.lr, "learning rate of the policy (0: the method's, below)")
      ->check(cli::number(1e-12, 10))->group(train);
  app.add_option("--head-lr", o.head_lr, "learning rate of a fresh head (0: 3e-2 with the method's --lr)")
      ->check(cli::number(1e-12, 10))->group(train);
  app.add_option("--batch", o.batch, "batch size (0: 8; LiST 4; MPMP the whole set)")
      ->check(cli::integer(1))->group(train);
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->check(cli::number(0, 10))->group(train);
  app.add_option("--warmup", o.warmup, "share of the steps with a linear warm-up")->check(cli::number(0, 1))->group(train);
  app.add_option("--dev", o.dev, "development set (evaluated every --eval-every steps; MPMP keeps its best)")
      ->group(train);
  app.add_option("--eval-every", o.eval_every, "steps between evaluations on --dev (0: at the end; MPMP 25)")
      ->check(cli::integer(1))->group(train);
  app.add_option("--patience", o.patience, "stop after this many evaluations without gain (0: never)")
      ->check(cli::integer(1))->group(train);

  // Fields of the method's adapter_config.json; checked against the method and the model.
  auto policy = [&](const std::string& flag, const std::string& key, const std::string& help,
                    const cli::validator& check, auto convert) {
    app.add_option_function(
           flag, [&o, flag, key, convert](const std::string& v) { set_policy_option(o, flag, key, convert(v)); },
           help)
        ->check(check)
        ->group(method);
  };
  auto integer = [](const std::string& v) { return nlohmann::json(std::stol(v)); };
  auto real = [](const std::string& v) { return nlohmann::json(std::stod(v)); };
  policy("--lora-r", "r", "LoRA rank r [8]", cli::integer(1), integer);
  policy("--lora-alpha", "lora_alpha", "LoRA alpha (scale alpha/r) [8]", cli::number(1e-12, 1e6), real);
  policy("--lora-dropout", "lora_dropout", "LoRA dropout [0.1]", cli::number(0, 0.99), real);
  policy("--lora-rslora", "use_rslora", "rsLoRA: scale alpha/sqrt(r) instead of alpha/r: 0|1 [0]", cli::integer(0, 1),
         [](const std::string& v) { return nlohmann::json(v != "0"); });
  policy("--target-modules", "target_modules",
         "linears LoRA, (IA)3 or mask-tuning changes: query,key,value,attn_out,ffn_in,ffn_out [LoRA: query,value; "
         "(IA)3: key,value,ffn_out]",
         cli::validator{[](const std::string& v) {
                          return peft::task::split_list(v).empty()
                                     ? "expects a comma-separated list of names, got '" + v + "'"
                                     : std::string();
                        },
                        "LIST"},
         [](const std::string& v) { return nlohmann::json(peft::task::split_list(v)); });
  app.add_option("--layers", o.layers, "layers to change, e.g. 0,1,2 (LoRA, (IA)3, adapters, mask-tuning) [all]")
      ->group(method);
  policy("--feedforward-modules", "feedforward_modules",
         "(IA)3 targets scaled on their input, not their output: a subset of --target-modules [ffn_out]",
         cli::validator{[](const std::string&) { return std::string(); }, "LIST"},
         [](const std::string& v) { return nlohmann::json(peft::task::split_list(v)); });
  policy("--virtual-tokens", "num_virtual_tokens", "prompt tuning: virtual tokens before the input [20]",
         cli::integer(1), integer);
  policy("--prompt-init", "prompt_tuning_init", "prompt tuning's initialisation: RANDOM|TEXT|SAMPLE_VOCAB [RANDOM]",
         cli::validator{[](const std::string& v) {
                          return v == "RANDOM" || v == "TEXT" || v == "SAMPLE_VOCAB"
                                     ? std::string()
                                     : "expects RANDOM, TEXT or SAMPLE_VOCAB, got '" + v + "'";
                        },
                        "INIT"},
         [](const std::string& v) { return nlohmann::json(v); });
  policy("--prompt-init-text", "prompt_tuning_init_text", "prompt tuning: the text of --prompt-init TEXT",
         cli::validator{[](const std::string&) { return std::string(); }, "TEXT"},
         [](const std::string& v) { return nlohmann::json(v); });
  policy("--adapter-size", "bottleneck_size", "adapter bottleneck m [Houlsby 64, LiST 128]", cli::integer(1), integer);
  policy("--reduction-factor", "reduction_factor", "adapter reduction factor hidden/m [Pfeiffer 16]",
         cli::number(1e-6, 1e6), real);
  policy("--adapter-ln-before", "original_ln_before",
         "adapter reads LN(h + x), the sub-layer output after its block's residual add and LayerNorm, as "
         "AdapterHub's Pfeiffer / seq_bn does (BERT-family models): 0|1 [0]",
         cli::integer(0, 1), [](const std::string& v) { return nlohmann::json(v != "0"); });
  policy("--adapter-scaling", "scaling", "multiplies the adapter's branch (AdapterHub's scaling) [1]",
         cli::number(-1e6, 1e6), real);
  policy("--prefix-tokens", "num_virtual_tokens", "prefix length [10]", cli::integer(1), integer);
  policy("--prefix-projection", "prefix_projection", "prefix through its MLP during training: 0|1 [1]",
         cli::integer(0, 1), [](const std::string& v) { return nlohmann::json(v != "0"); });
  policy("--prefix-position-offset", "position_offset",
         "prefix: the text's positions start after the prefix, as Hugging Face PEFT on BERT (its folders "
         "need it): 0|1 [0]",
         cli::integer(0, 1), [](const std::string& v) { return nlohmann::json(v != "0"); });
  app.add_repeated(
         "--option",
         [&o](const std::vector<std::string>& kvs) {
           for (const auto& kv : kvs) {
             const auto eq = kv.find('=');
             const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
             nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
             set_policy_option(o, "--option " + key, key, j.is_discarded() ? nlohmann::json(value) : j);
           }
         },
         "any field of the method's adapter_config.json: KEY=VALUE (a JSON value), repeatable")
      ->check(cli::name_value("KEY=VALUE"))
      ->group(method);

  const std::string recipe = "Few-shot recipes";
  app.add_option("--objective", o.objective,
                 "plain | contrastive (SetFit: pairs, then the head on the frozen embedding) | contrastive-ft "
                 "(pairs, then both)")
      ->check(cli::one_of({"plain", "contrastive", "contrastive-ft"}))
      ->group(recipe);
  app.add_option("--pairs", o.pairs.pairs_per_example, "contrastive: rounds of pairs per labelled row")
      ->check(cli::integer(1))->group(recipe);
  app.add_option("--pair-epochs", o.pairs.epochs, "contrastive: epochs over the pairs")->check(cli::integer(1))->group(recipe);
  app.add_option("--pair-lr", o.pairs.lr, "contrastive: the policy's rate on the pairs (0: --lr)")
      ->check(cli::number(0, 10))->group(recipe);
  app.add_option("--probe-epochs", o.probe_epochs, "LP-FT: epochs of the head alone before --epochs of both")
      ->check(cli::integer(1))->group(recipe);

  app.add_option("--teacher-epochs", o.list.teacher_epochs, "teacher epochs")->check(cli::integer(0))->group(list);
  app.add_option("--teacher-lr", o.list.teacher_lr, "teacher learning rate")->check(cli::number(1e-12, 10))->group(list);
  app.add_option("--sessions", o.list.sessions, "self-training sessions")->check(cli::integer(0))->group(list);
  app.add_option("--student-steps", o.list.student_steps, "student steps per session")
      ->check(cli::integer(0))->group(list);
  app.add_option("--warmup-fraction", o.list.warmup_fraction, "share of the student steps in KD warm-up")
      ->check(cli::number(0, 1))->group(list);
  app.add_option("--finetune-epochs", o.list.finetune_epochs, "student fine-tuning epochs on the labelled set")
      ->check(cli::integer(0))->group(list);
  app.add_option("--student-lr", o.list.student_lr, "student learning rate")->check(cli::number(1e-12, 10))->group(list);
  app.add_option("--unlabeled-batch", o.list.unlabelled_batch, "pseudo-labelled batch")
      ->check(cli::integer(1))->group(list);
  app.add_option("--meta-batch", o.list.meta_batch, "labelled meta batch of the re-weighting")
      ->check(cli::integer(1))->group(list);
  app.add_option("--reweight", o.reweight, "meta re-weighting of the pseudo labels: 0 (KD only) | 1")
      ->check(cli::integer(0, 1))->group(list);
  app.add_option("--re-init", o.re_init, "each student starts fresh: 1 | 0 (from its teacher)")
      ->check(cli::integer(0, 1))->group(list);
  app.add_option("--meta-method", o.meta_method, "re-weighting gradient")
      ->check(cli::one_of({"directional", "per-example"}))->group(list);

  app.add_option("--mpmp-library", o.mpmp.library, "prompt library from peft-mpmp-pretrain (none: from scratch)")
      ->group(mpmp);
  app.add_option("--mpmp-head", o.mpmp.library_head, "library task whose head to start from (default: by labels)")
      ->group(mpmp);
  app.add_option("--stage", o.stage, "what is trained")->check(cli::one_of({"router", "prompts", "both"}))->group(mpmp);
  app.add_option("--blackbox", o.blackbox, "gradient-free tuning (BO, then CMA-ES): 0|1")
      ->check(cli::integer(0, 1))->group(mpmp);
  app.add_option("--router-epochs", o.mpmp.tune.router_epochs, "router stage epochs")
      ->check(cli::integer(0))->group(mpmp);
  app.add_option("--prompt-epochs", o.mpmp.tune.prompt_epochs, "prompt stage epochs")
      ->check(cli::integer(0))->group(mpmp);
  app.add_option("--router-lr", o.mpmp.tune.router_lr, "router learning rate")
      ->check(cli::number(1e-12, 10))->group(mpmp);
  app.add_option("--prompt-lr", o.mpmp.tune.prompt_lr, "prompt learning rate")
      ->check(cli::number(1e-12, 10))->group(mpmp);
  app.add_option("--router-budget", o.mpmp.bbt.router_budget, "BO evaluations (black-box)")
      ->check(cli::integer(0))->group(mpmp);
  app.add_option("--prompt-budget", o.mpmp.bbt.prompt_budget, "CMA-ES evaluations (black-box)")
      ->check(cli::integer(0))->group(mpmp);
  app.add_option("--prompt-tokens", o.mpmp.scratch.num_prompt_tokens, "from scratch: prompt tokens")
      ->check(cli::integer(1))->group(mpmp);
  app.add_option("--modules", o.mpmp.scratch.num_modules, "from scratch: modules per layer")
      ->check(cli::integer(1))->group(mpmp);
  app.add_option("--intrinsic-dim", o.mpmp.scratch.intrinsic_dim, "from scratch: intrinsic dimension")
      ->check(cli::integer(1))->group(mpmp);
  app.add_option("--shallow", o.shallow, "from scratch: prompts before layer 0 only: 0|1")
      ->check(cli::integer(0, 1))->group(mpmp);

  app.add_option("--init-adapter", o.init_adapter,
                 "start the policy from this adapter folder (peft's, or Hugging Face PEFT's), of --method's "
                 "kind; its config sets the method's hyper-parameters")
      ->group(run);
  app.add_option("--state", o.state, "training state file, saved every --save-every steps (resumable)")->group(run);
  app.add_option("--save-every", o.save_every, "steps between state saves")->check(cli::integer(1))->group(run);
  app.add_flag("--resume", o.resume, "continue the run saved in --state")->group(run);
  app.add_flag("--data-parallel", o.data_parallel, "the data-parallel code path in one process")->group(run);
  app.footer(methods_footer());
}

/// Checks the options that go together (after parsing) and fills what depends on several.
/// @throws usage_error naming the options
void check(const cli::app& app, options& o) {
  for (const char* f : {"--mpmp-library", "--mpmp-head", "--stage", "--blackbox", "--router-epochs", "--prompt-epochs",
                        "--router-lr", "--prompt-lr", "--router-budget", "--prompt-budget", "--prompt-tokens",
                        "--modules", "--intrinsic-dim", "--shallow"})
    o.mpmp_flags = o.mpmp_flags || app.count(f) > 0;
  o.mpmp.blackbox = o.blackbox != 0;
  o.mpmp.scratch.deep = o.shallow == 0;
  o.mpmp.tune.stage = peft::parse_mpmp_stage(o.stage);
  o.list.reweight = o.reweight != 0;
  o.list.re_init = o.re_init != 0;
  o.list.meta.method = peft::parse_reweight_method(o.meta_method);
  if (o.epochs && o.steps) throw usage_error("give --epochs or --steps, not both");
  if (o.resume && o.state.empty()) throw usage_error("--resume needs --state FILE");
  try {
    if (!peft::find_method(o.method).make)
      throw usage_error("--method " + o.method + " is not trained from a config (see --help)");
  } catch (const peft::invalid_argument& e) {
    throw usage_error(std::string("--method: ") + e.what());
  }
  if (!o.init_adapter.empty() && (o.method == "list" || o.method == "mpmp" || o.method == "head"))
    throw usage_error("--init-adapter goes with the fit-based methods that have a policy, not " + o.method);
  if (!o.state.empty() && (o.method == "list" || o.method == "mpmp"))
    throw usage_error("--state goes with the fit-based methods, not " + o.method);
  if (o.data_parallel && o.method == "mpmp") throw usage_error("--data-parallel does not go with method mpmp");
  if (o.tmpl.empty() != o.verbalizer.empty()) throw usage_error("--template and --verbalizer go together");
  if (o.kind != "classification") {
    // The other kinds run fit with their own loss; LiST, MPMP, templates, few-shot draws per
    // class and AdapterHub's classification heads are single-label classification.
    if (o.method == "list" || o.method == "mpmp")
      throw usage_error("--kind " + o.kind + " trains with the fit-based methods, not " + o.method);
    if (!o.tmpl.empty()) throw usage_error("--template goes with --kind classification, not " + o.kind);
    if (o.shots) throw usage_error("--shots draws K rows per class: --kind classification, not " + o.kind);
    if (!o.export_adapterhub.empty())
      throw usage_error("--export-adapterhub writes a classification head: --kind classification, not " + o.kind);
    const bool per_token = o.kind == "token_classification" || o.kind == "extractive_qa";
    if (!o.pooling.empty() && per_token && o.pooling != "tokens")
      throw usage_error("--kind " + o.kind + " reads every position (--pooling tokens), not --pooling " + o.pooling);
  }
  if (!o.label_options.empty()) {
    if (o.kind != "classification") throw usage_error("--options casts --kind classification, not " + o.kind);
    if (!o.tmpl.empty()) throw usage_error("--options trains a span head; --template trains a prompt head");
    if (o.method == "list") throw usage_error("--options goes with the fit-based methods and mpmp, not list");
    if (!o.export_adapterhub.empty()) throw usage_error("--export-adapterhub writes a classification head, not --options' span head");
    if (!o.pooling.empty()) throw usage_error("--options reads every position with its span head: no --pooling");
  }
  if (o.pooling == "tokens" && (o.kind != "token_classification" && o.kind != "extractive_qa"))
    throw usage_error("--pooling tokens goes with --kind token_classification or extractive_qa");
  if (!o.export_adapterhub.empty() && (o.method == "list" || peft::find_method(o.method).peft_type != "BOTTLENECK_ADAPTER"))
    throw usage_error("--export-adapterhub writes AdapterHub's bottleneck adapters: methods houlsby and pfeiffer, not " +
                      o.method);
  if (!o.export_adapterhub.empty() && !o.tmpl.empty())
    throw usage_error("--export-adapterhub writes a classification head; --template trains a prompt head");
  if (o.method == "list" && o.unlabeled.empty()) throw usage_error("method list (LiST) needs --unlabeled POOL");
  if (o.method == "list" && (o.lr > 0 || o.epochs || o.steps))
    throw usage_error("method list takes --teacher-lr/--student-lr and --teacher-epochs/--student-steps/--finetune-epochs, "
                      "not --lr/--epochs/--steps");
  if (o.method != "mpmp" && o.mpmp_flags)
    throw usage_error("the MPMP options (--mpmp-library, --stage, --blackbox, ...) go with --method mpmp");
  if (o.objective != "plain" || o.probe_epochs) {
    const std::string flag = o.objective != "plain" ? "--objective " + o.objective : "--probe-epochs";
    if (o.method == "list" || o.method == "mpmp" || o.method == "head")
      throw usage_error(flag + " goes with the fit-based methods that have a policy, not " + o.method);
    if (o.kind != "classification" || !o.tmpl.empty() || !o.label_options.empty())
      throw usage_error(flag + " goes with --kind classification and a classification head (no --template, --options)");
    if (!o.state.empty() || o.data_parallel) throw usage_error(flag + " does not go with --state or --data-parallel");
    if (o.objective == "contrastive" && (o.probe_epochs || o.steps))
      throw usage_error("--objective contrastive trains the head for --epochs after the pairs: no --probe-epochs or --steps");
  } else if (o.pairs.epochs != 1 || o.pairs.lr > 0 || o.pairs.pairs_per_example != 20) {
    throw usage_error("--pairs, --pair-epochs and --pair-lr go with --objective contrastive or contrastive-ft");
  }
  if (o.patience && o.dev.empty()) throw usage_error("--patience needs --dev DEV (the set it watches)");
  if (o.method == "list" && (!o.dev.empty() || o.eval_every))
    throw usage_error("method list reports on --test each session; --dev and --eval-every go with the other methods");
  if ((o.method == "list" || o.method == "mpmp") && (o.weight_decay > 0 || o.warmup > 0 || o.patience))
    throw usage_error("--weight-decay, --warmup and --patience go with the fit-based methods, not " + o.method);
  if (!o.layers.empty()) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& item : task::split_list(o.layers)) {
      if (item.find_first_not_of("0123456789") != std::string::npos || item.size() > 9)
        throw usage_error("--layers expects a comma-separated list of integers >= 0, got '" + o.layers + "'");
      layers.push_back(std::stol(item));
    }
    // The layer list is named per method: LoRA's and (IA)3's layers_to_transform, the adapters' and
    // mask-tuning's layers.
    set_policy_option(o, "--layers", o.method == "lora" || o.method == "ia3" ? "layers_to_transform" : "layers",
                      layers);
  }
  if (!o.init_adapter.empty() && !o.policy_options.empty())
    throw usage_error("--init-adapter takes the method's hyper-parameters from the folder's config, not " +
                      o.option_flags);
  if (o.method == "mpmp" && !o.policy_options.empty())
    throw usage_error("method mpmp takes --prompt-tokens/--modules/--intrinsic-dim/--shallow, not " + o.option_flags);
  if (o.method == "mpmp" && o.eval_every) o.mpmp.tune.eval_every = static_cast<int>(o.eval_every);
  if (o.method == "mpmp") {
    if (o.lr > 0 || o.epochs || o.steps)
      throw usage_error("method mpmp takes --router-lr/--prompt-lr and --router-epochs/--prompt-epochs, not --lr/--epochs/--steps");
    if (!o.tmpl.empty()) throw usage_error("method mpmp uses a classification head (no --template)");
    if (!o.mpmp.library.empty() && (app.count("--prompt-tokens") || app.count("--modules") ||
                                    app.count("--intrinsic-dim") || app.count("--shallow")))
      throw usage_error("--prompt-tokens/--modules/--intrinsic-dim/--shallow describe prompts from scratch; a library has its own");
    o.mpmp.bbt.router_init_points =
        std::min<peft::index>(o.mpmp.bbt.router_init_points, std::max<peft::index>(1, o.mpmp.bbt.router_budget));
    if (o.mpmp.blackbox && o.mpmp.library.empty()) throw usage_error("--blackbox 1 needs --mpmp-library (a pre-trained A and head)");
  }
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
  const auto kind = peft::parse_task_kind(o.kind);
  auto train_set = task::read_task_data(o.train, kind);
  const auto test_set = task::read_task_data(o.test, kind);
  const auto labels = task::task_labels(train_set);
  task::task_data dev_set;
  dev_set.kind = kind;
  if (!o.dev.empty()) dev_set = task::read_task_data(o.dev, kind);
  peft::dataset& train_data = train_set.rows;  // the sequence-level kinds' rows
  peft::dataset& dev_data = dev_set.rows;
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
  s.kind = kind;
  s.doc_stride = o.doc_stride;
  s.max_query_length = o.max_query_length;
  s.max_answer_length = o.max_answer_length;
  for (const auto& q : train_set.questions) s.allow_null = s.allow_null || q.impossible;
  s.method = o.method;
  s.model_type = m.model_type;
  s.base_model = m.dir;
  s.init_adapter = o.init_adapter;
  s.template_spec = o.tmpl;
  s.verbalizer_spec = o.verbalizer;
  s.pooling = o.pooling.empty() ? peft::to_string(peft::default_pool_kind(m.model_type)) : o.pooling;
  if (kind == peft::task_kind::token_classification || kind == peft::task_kind::extractive_qa) s.pooling = "tokens";
  if (o.max_length > 0) s.max_length = o.max_length;
  s.policy_options = o.policy_options;
  bool span_library = false;  // an MPMP library whose one head reads label options
  if (o.method == "mpmp") {
    if (!o.mpmp.library.empty()) {
      const auto info = peft::read_mpmp_library_info(o.mpmp.library);
      span_library = info.span_head();
      const auto cfg = peft::read_adapter_config(o.mpmp.library);
      if (!cfg.contains("num_prompt_tokens") || !peft::detail::json_to_integer(cfg["num_prompt_tokens"], s.prompt_tokens))
        throw peft::io_error("'" + o.mpmp.library + "/adapter_config.json': field 'num_prompt_tokens' expected an "
                             "integer (is this an MPMP library from peft-mpmp-pretrain?)");
      s.placeholder_id = info.placeholder_id;
    } else {
      s.prompt_tokens = o.mpmp.scratch.num_prompt_tokens;
    }
  }
  if (span_library || !o.label_options.empty()) {
    s.choices = task::label_options(labels, o.label_options == "names" ? "" : o.label_options);
    s.pooling = "tokens";
  }
  std::optional<peft::prompt_template> tmpl;
  std::optional<peft::verbalizer> verb;
  if (!o.tmpl.empty()) {
    if (!m.tokenizer || m.tokenizer->mask_id() < 0 || !m.weights->has_mlm_head())
      throw peft::invalid_argument("--template needs a masked-LM checkpoint whose tokenizer has a mask token (got " +
                                   m.model_type + ")");
    tmpl.emplace(o.tmpl);
    verb.emplace(peft::verbalizer::parse(*m.tokenizer, o.verbalizer, labels.labels()));
  }
  const auto train = task::encode_task(m, s, train_set, labels, tmpl, true);
  const auto test = task::encode_task(m, s, test_set, labels, tmpl, true);
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
    f.task = task::task_objective_of(s, labels);
    f.probe_epochs = static_cast<int>(o.probe_epochs);
    if (o.objective != "plain") f.contrastive = o.pairs;
    if (o.objective == "contrastive") {  // SetFit: the head alone on the tuned embedding
      f.probe_epochs = f.epochs;
      f.epochs = 0;
    }
    const auto dev = task::encode_task(m, s, dev_set, labels, tmpl, true);
    r = task::train_task(m, s, labels.size(), words, train, dev, test, f, o.seed);
    s.threshold = r.threshold;  // multi-label: chosen on --dev, saved with the task
  }
  if (!lead) return 0;
  if (!o.save.empty()) task::save_task(o.save, s, labels, r);  // one unit: policy, head, labels, settings
  if (!o.export_adapterhub.empty()) {
    const auto* adapter = r.policy.get_if<peft::bottleneck_adapter<float>>();
    if (!adapter) throw peft::invalid_argument("--export-adapterhub: the trained policy is not a bottleneck adapter");
    const peft::adapterhub_head head{labels.labels(), s.pooling, r.head};
    peft::save_adapterhub_adapter(o.export_adapterhub, *adapter, {o.model}, &head);
  }
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& [name, value] : r.metrics) metrics[name] = value;
  nlohmann::json out = {{"method", o.method},
                        {"kind", o.kind},
                        {"metrics", metrics},
                        {"accuracy", r.accuracy},
                        {"macro_f1", r.macro_f1},
                        {"trainable_params", r.trainable_params},
                        {"backbone_params", r.backbone_params},
                        {"train_seconds", r.train_seconds},
                        {"examples_per_second", r.examples_per_second}};
  if (r.dev_accuracy >= 0) {  // what --dev scored at the kept step (the last one without --eval-every)
    out[kind == peft::task_kind::classification ? "dev_accuracy" : "dev_score"] = r.dev_accuracy;
    out["dev_step"] = r.dev_step;
  }
  if (kind == peft::task_kind::multi_label) out["threshold"] = r.threshold;
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
  cli::app app("peft-train: fine-tune one task with any PEFT method over a frozen encoder", "peft-train");
  add_options(app, o);
  if (const int rc = app.parse(argc, argv); rc >= 0) return rc;
  if (const int rc = cli::guarded("peft-train", [&] { return check(app, o), 0; }); rc != 0) return rc;
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
  return cli::guarded("peft-train", [&] {
    peft::single_process one;
    return run(o, o.data_parallel ? &one : nullptr);
  });
}
