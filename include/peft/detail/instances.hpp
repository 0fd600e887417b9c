// SPDX-License-Identifier: Apache-2.0
//
// The template instances that the optional compiled library `peft::instances` holds, and
// the explicit instantiation declarations (`extern template`) that keep every other
// translation unit from compiling them again.
//
// peft stays header-only: without `PEFT_USE_INSTANCES` this file declares nothing, and every
// template is instantiated where it is used. The CMake target `peft::instances` defines
// `PEFT_USE_INSTANCES` for what links it; its sources (src/instances/*.cpp) expand the
// lists below once, as definitions. A program that includes `peft/peft.hpp`, loads a BERT
// folder and trains an adapter with `peft::fit` then compiles in seconds instead of most of a
// minute: the encoder's forward and backward, the training loop, the heads and the loaders
// come from the library.
//
// There is deliberately no include guard. Each header whose templates are listed here
// defines `PEFT_DONE_<name>` at its very end and then includes this file; a section is
// declared once, by whichever of its headers comes last, so a translation unit gets exactly
// the declarations for the headers it includes, in any order, and never one for a template
// whose definition it has not seen. (An include guard would not do: a header's guard is
// defined while its body is still being read.)
//
// What is listed: the built-in policies' classes in float and double; the three
// architectures x float and double x every built-in policy for the encoder; float tasks (each policy with a
// classification head, and with the prompt head for BERT) for the trainer; the heads; the op kernels; CMA-ES,
// the GP and BO; LiST's self-trainer and MPMP's phases as peft-train runs them; the model and adapter
// loaders. A combination that is not listed (a `compose<...>`, a policy of your own) is instantiated where it
// is used, as before.

#if !defined(PEFT_DETAIL_INSTANCES_LISTS)
#define PEFT_DETAIL_INSTANCES_LISTS

/// The architectures and scalars the encoder is compiled for; `X(EXT, Arch, Scalar)`.
#define PEFT_INSTANCES_FOR_ARCHS(X, EXT) \
  X(EXT, bert, float)                    \
  X(EXT, bert, double)                   \
  X(EXT, roberta, float)                 \
  X(EXT, roberta, double)                \
  X(EXT, use_lite, float)                \
  X(EXT, use_lite, double)

// ---- ops --------------------------------------------------------------------------------
#define PEFT_INSTANCES_OPS_ATTENTION(EXT, S)                                                                \
  EXT template void ops::attention_forward<S>(const ops::attention_shape&, const matrix<S>&,                \
                                              const matrix<S>&, const matrix<S>&, const matrix<S>*,         \
                                              const matrix<S>*, const id_matrix&, S, double, rng*,          \
                                              matrix<S>&, ops::attention_cache<S>*, ops::attention_fault*,  \
                                              const matrix<S>*);                                            \
  EXT template void ops::attention_backward<S>(                                                             \
      const ops::attention_shape&, const matrix<S>&, const matrix<S>&, const matrix<S>&, const matrix<S>&,  \
      const matrix<S>*, const matrix<S>*, const ops::attention_cache<S>&, S, matrix<S>&, matrix<S>&,        \
      matrix<S>&, matrix<S>*, matrix<S>*);

#define PEFT_INSTANCES_OPS_LAYER_NORM(EXT, S)                                                                \
  EXT template void ops::layer_norm_forward<S>(const matrix<S>&, const vector<S>&, const vector<S>&, double, \
                                               matrix<S>&, ops::layer_norm_cache<S>*);                       \
  EXT template void ops::layer_norm_backward<S>(const matrix<S>&, const vector<S>&,                          \
                                                const ops::layer_norm_cache<S>&, matrix<S>&, vector<S>*,     \
                                                vector<S>*);

#define PEFT_INSTANCES_OPS_ACTIVATION(EXT, S)                                              \
  EXT template void ops::activation_forward<S>(activation, const matrix<S>&, matrix<S>&);  \
  EXT template void ops::activation_backward<S>(activation, const matrix<S>&, matrix<S>&); \
  EXT template void ops::tanh_backward_from_output<S>(const matrix<S>&, matrix<S>&);

#define PEFT_INSTANCES_OPS_DROPOUT(EXT, S) \
  EXT template void ops::make_dropout_mask<S>(index, index, double, rng&, matrix<S>&);

#define PEFT_INSTANCES_OPS_LINEAR(EXT, S)                                                                    \
  EXT template void ops::linear_forward<S, matrix<S>>(const Eigen::MatrixBase<matrix<S>>&, const matrix<S>&, \
                                                      const vector<S>&, matrix<S>&);                         \
  EXT template void ops::linear_backward_input<S, matrix<S>>(const Eigen::MatrixBase<matrix<S>>&,            \
                                                             const matrix<S>&, matrix<S>&, bool);

// ---- encoder ----------------------------------------------------------------------------
#define PEFT_INSTANCES_ENCODER_CLASS(EXT, A, S) EXT template class encoder<A, S>;

#define PEFT_INSTANCES_ENCODER_POLICY(EXT, A, S, P)                                                         \
  EXT template matrix<S> encoder<A, S>::embed<P>(const batch&, mode, rng*, encoder_tape<S, P>*) const;      \
  EXT template matrix<S> encoder<A, S>::forward<P>(const batch&, const P&, mode, encoder_tape<S, P>*, rng*) \
      const;                                                                                                \
  EXT template matrix<S> encoder<A, S>::forward_embedded<P>(const matrix<S>&, const batch&, const P&, mode, \
                                                            encoder_tape<S, P>*, rng*) const;               \
  EXT template matrix<S> encoder<A, S>::backward<P>(const matrix<S>&, P&, const encoder_tape<S, P>&, index) \
      const;

/// The encoder with policy template `POLICY` for every architecture and scalar.
#define PEFT_INSTANCES_ENCODER(EXT, POLICY)                           \
  PEFT_INSTANCES_ENCODER_POLICY(EXT, bert, float, POLICY<float>)      \
  PEFT_INSTANCES_ENCODER_POLICY(EXT, bert, double, POLICY<double>)    \
  PEFT_INSTANCES_ENCODER_POLICY(EXT, roberta, float, POLICY<float>)   \
  PEFT_INSTANCES_ENCODER_POLICY(EXT, roberta, double, POLICY<double>) \
  PEFT_INSTANCES_ENCODER_POLICY(EXT, use_lite, float, POLICY<float>)  \
  PEFT_INSTANCES_ENCODER_POLICY(EXT, use_lite, double, POLICY<double>)

// ---- policies -----------------------------------------------------------------------------
/// A policy class template for scalar `S` (its members are defined outside the class).
#define PEFT_INSTANCES_POLICY_CLASS(EXT, POLICY, S) EXT template class POLICY<S>;

// ---- heads and trainer ------------------------------------------------------------------
#define PEFT_INSTANCES_HEADS(EXT, S)         \
  EXT template class classification_head<S>; \
  EXT template class prompt_head<S>;

#define PEFT_INSTANCES_FIT_LOOP(EXT, S)                                                            \
  EXT template fit_result detail::fit_loop<S>(parameter_set<S>, const detail::fit_model_calls<S>&, \
                                              const std::vector<encoded_example>&,                 \
                                              const std::vector<encoded_example>&, const fit_options&);

/// One float task: encoder `A`, policy `P`, head `H`; its model (task/task_model.hpp) and its
/// training (train/trainer.hpp), declared by the header that defines each.
#define PEFT_INSTANCES_TASK(EXT, A, P, H) \
  PEFT_INSTANCES_TASK_MODEL(EXT, A, P, H) \
  PEFT_INSTANCES_TASK_FIT(EXT, A, P, H)

#define PEFT_INSTANCES_TASK_FIT(EXT, A, P, H)                                                                \
  EXT template fit_result fit<task_model<A, float, P, H>>(                                                   \
      task_model<A, float, P, H>&, const std::vector<encoded_example>&, const std::vector<encoded_example>&, \
      const fit_options&);

#define PEFT_INSTANCES_TASK_MODEL(EXT, A, P, H)                                                              \
  EXT template class task_model<A, float, P, H>;                                                             \
  EXT template std::vector<index> predict_classes<task_model<A, float, P, H>>(                               \
      const task_model<A, float, P, H>&, const std::vector<encoded_example>&, index, std::int32_t,           \
      std::vector<std::vector<double>>*);                                                                    \
  EXT template eval_result evaluate<task_model<A, float, P, H>>(                                             \
      const task_model<A, float, P, H>&, const std::vector<encoded_example>&, index, std::int32_t);

/// Float tasks with policy `P`: a classification head on every architecture, the prompt head
/// (masked-LM checkpoints) on BERT.
#define PEFT_INSTANCES_TASKS(EXT, P)    \
  PEFT_INSTANCES_TASKS_OF(EXT, P, MODEL) \
  PEFT_INSTANCES_TASKS_OF(EXT, P, FIT)

/// One part (MODEL or FIT) of the float tasks with policy `P`.
#define PEFT_INSTANCES_TASKS_OF(EXT, P, PART)                                 \
  PEFT_INSTANCES_TASK_##PART(EXT, bert, P, classification_head<float>)     \
  PEFT_INSTANCES_TASK_##PART(EXT, roberta, P, classification_head<float>)  \
  PEFT_INSTANCES_TASK_##PART(EXT, use_lite, P, classification_head<float>) \
  PEFT_INSTANCES_TASK_##PART(EXT, bert, P, prompt_head<float>)

/// What every task kind's loss and evaluation compile to (task/kinds.hpp): once, in
/// src/instances/kinds.cpp, rather than in every file that instantiates `fit`.
#define PEFT_INSTANCES_TASK_KINDS(EXT, S)                                                                  \
  EXT template double task_loss<S>(const task_objective&, const matrix<S>&, const task_batch&, matrix<S>&); \
  EXT template eval_result score_outputs<S>(const task_objective&, const std::vector<encoded_example>&,    \
                                            const std::vector<matrix<S>>&);

// ---- black-box optimizers, LiST and MPMP -------------------------------------------------
#define PEFT_INSTANCES_CMAES(EXT) EXT template class basic_cmaes<void>;

#define PEFT_INSTANCES_BAYES_OPT(EXT)              \
  EXT template class basic_gaussian_process<void>; \
  EXT template class basic_bayes_opt<void>;

/// LiST as peft-train runs it: LiST adapters (float) with head `H` on architecture `A`.
#define PEFT_INSTANCES_SELF_TRAINER(EXT, A, H) \
  EXT template class self_trainer<A, float, bottleneck_adapter<float>, H>;

#define PEFT_INSTANCES_SELF_TRAINERS(EXT)                                \
  PEFT_INSTANCES_SELF_TRAINER(EXT, bert, classification_head<float>)     \
  PEFT_INSTANCES_SELF_TRAINER(EXT, roberta, classification_head<float>)  \
  PEFT_INSTANCES_SELF_TRAINER(EXT, use_lite, classification_head<float>) \
  PEFT_INSTANCES_SELF_TRAINER(EXT, bert, prompt_head<float>)

/// MPMP's phases in float with a classification head on architecture `A`.
#define PEFT_INSTANCES_MPMP(EXT, A)                                                                        \
  EXT template mpmp_pretrain_result mpmp_pretrain<A, float, classification_head<float>>(                   \
      const encoder<A, float>&, modular_prompt<float>&, std::vector<classification_head<float>>&,          \
      const std::vector<mpmp_task_data>&, const mpmp_pretrain_options&);                                   \
  EXT template mpmp_tune_result mpmp_tune<A, float, classification_head<float>>(                           \
      const encoder<A, float>&, modular_prompt<float>&, classification_head<float>&,                       \
      const std::vector<encoded_example>&, const std::vector<encoded_example>&, const mpmp_tune_options&); \
  EXT template mpmp_blackbox_result mpmp_blackbox<A, float, classification_head<float>>(                   \
      const encoder<A, float>&, modular_prompt<float>&, classification_head<float>&,                       \
      const std::vector<encoded_example>&, const std::vector<encoded_example>&,                            \
      const mpmp_blackbox_options&);

#define PEFT_INSTANCES_MPMP_ALL(EXT) \
  PEFT_INSTANCES_MPMP(EXT, bert)     \
  PEFT_INSTANCES_MPMP(EXT, roberta)  \
  PEFT_INSTANCES_MPMP(EXT, use_lite)

// ---- io ---------------------------------------------------------------------------------
#define PEFT_INSTANCES_HF_CHECKPOINT(EXT, S)                             \
  EXT template shared_weights<S> load_hf_encoder<S>(const std::string&); \
  EXT template void save_hf_encoder<S>(const std::string&, const encoder_weights<S>&);

#define PEFT_INSTANCES_USE_LITE(EXT, S)                               \
  EXT template shared_weights<S> load_use_lite<S>(const tfjs_model&); \
  EXT template shared_weights<S> load_use_lite<S>(const std::string&);

#define PEFT_INSTANCES_POLICY_IO(EXT, P)                          \
  EXT template void save_policy<P>(const std::string&, const P&, const hf_save_info&); \
  EXT template P load_policy<P>(const std::string&, const encoder_shape&);

#endif  // PEFT_DETAIL_INSTANCES_LISTS

// ---- the declarations: one section per combination of headers -----------------------------
#if defined(PEFT_USE_INSTANCES)

#if defined(PEFT_DONE_TASK_KINDS) && !defined(PEFT_EXTERN_TASK_KINDS)
#define PEFT_EXTERN_TASK_KINDS
namespace peft {
PEFT_INSTANCES_TASK_KINDS(extern, float)
PEFT_INSTANCES_TASK_KINDS(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPS_ATTENTION) && !defined(PEFT_EXTERN_OPS_ATTENTION)
#define PEFT_EXTERN_OPS_ATTENTION
namespace peft {
PEFT_INSTANCES_OPS_ATTENTION(extern, float)
PEFT_INSTANCES_OPS_ATTENTION(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPS_LAYER_NORM) && !defined(PEFT_EXTERN_OPS_LAYER_NORM)
#define PEFT_EXTERN_OPS_LAYER_NORM
namespace peft {
PEFT_INSTANCES_OPS_LAYER_NORM(extern, float)
PEFT_INSTANCES_OPS_LAYER_NORM(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPS_ACTIVATION) && !defined(PEFT_EXTERN_OPS_ACTIVATION)
#define PEFT_EXTERN_OPS_ACTIVATION
namespace peft {
PEFT_INSTANCES_OPS_ACTIVATION(extern, float)
PEFT_INSTANCES_OPS_ACTIVATION(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPS_DROPOUT) && !defined(PEFT_EXTERN_OPS_DROPOUT)
#define PEFT_EXTERN_OPS_DROPOUT
namespace peft {
PEFT_INSTANCES_OPS_DROPOUT(extern, float)
PEFT_INSTANCES_OPS_DROPOUT(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPS_LINEAR) && !defined(PEFT_EXTERN_OPS_LINEAR)
#define PEFT_EXTERN_OPS_LINEAR
namespace peft {
PEFT_INSTANCES_OPS_LINEAR(extern, float)
PEFT_INSTANCES_OPS_LINEAR(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_MODEL_ENCODER) && !defined(PEFT_EXTERN_MODEL_ENCODER)
#define PEFT_EXTERN_MODEL_ENCODER
namespace peft {
PEFT_INSTANCES_FOR_ARCHS(PEFT_INSTANCES_ENCODER_CLASS, extern)
PEFT_INSTANCES_ENCODER(extern, no_policy)
}  // namespace peft
#endif

// The policy classes: one section per policy header.
#if defined(PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER) && !defined(PEFT_EXTERN_POLICIES_BOTTLENECK_ADAPTER)
#define PEFT_EXTERN_POLICIES_BOTTLENECK_ADAPTER
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, bottleneck_adapter, float)
PEFT_INSTANCES_POLICY_CLASS(extern, bottleneck_adapter, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_LORA) && !defined(PEFT_EXTERN_POLICIES_LORA)
#define PEFT_EXTERN_POLICIES_LORA
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, lora, float)
PEFT_INSTANCES_POLICY_CLASS(extern, lora, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_IA3) && !defined(PEFT_EXTERN_POLICIES_IA3)
#define PEFT_EXTERN_POLICIES_IA3
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, ia3, float)
PEFT_INSTANCES_POLICY_CLASS(extern, ia3, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_BITFIT) && !defined(PEFT_EXTERN_POLICIES_BITFIT)
#define PEFT_EXTERN_POLICIES_BITFIT
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, bitfit, float)
PEFT_INSTANCES_POLICY_CLASS(extern, bitfit, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_PROMPT_TUNING) && !defined(PEFT_EXTERN_POLICIES_PROMPT_TUNING)
#define PEFT_EXTERN_POLICIES_PROMPT_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, prompt_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(extern, prompt_tuning, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_PREFIX_TUNING) && !defined(PEFT_EXTERN_POLICIES_PREFIX_TUNING)
#define PEFT_EXTERN_POLICIES_PREFIX_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, prefix_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(extern, prefix_tuning, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_MASK_TUNING) && !defined(PEFT_EXTERN_POLICIES_MASK_TUNING)
#define PEFT_EXTERN_POLICIES_MASK_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, mask_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(extern, mask_tuning, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_SIDE_TUNING) && !defined(PEFT_EXTERN_POLICIES_SIDE_TUNING)
#define PEFT_EXTERN_POLICIES_SIDE_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, side_tuning, float)
PEFT_INSTANCES_POLICY_CLASS(extern, side_tuning, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_FULL_FINETUNE) && !defined(PEFT_EXTERN_POLICIES_FULL_FINETUNE)
#define PEFT_EXTERN_POLICIES_FULL_FINETUNE
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, full_finetune, float)
PEFT_INSTANCES_POLICY_CLASS(extern, full_finetune, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_ADAPTER_FUSION) && !defined(PEFT_EXTERN_POLICIES_ADAPTER_FUSION)
#define PEFT_EXTERN_POLICIES_ADAPTER_FUSION
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, adapter_fusion, float)
PEFT_INSTANCES_POLICY_CLASS(extern, adapter_fusion, double)
}  // namespace peft
#endif
#if defined(PEFT_DONE_POLICIES_MODULAR_PROMPT) && !defined(PEFT_EXTERN_POLICIES_MODULAR_PROMPT)
#define PEFT_EXTERN_POLICIES_MODULAR_PROMPT
namespace peft {
PEFT_INSTANCES_POLICY_CLASS(extern, modular_prompt, float)
PEFT_INSTANCES_POLICY_CLASS(extern, modular_prompt, double)
}  // namespace peft
#endif

// Encoder x policy: one section per policy header.
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER) && \
    !defined(PEFT_EXTERN_ENCODER_BOTTLENECK_ADAPTER)
#define PEFT_EXTERN_ENCODER_BOTTLENECK_ADAPTER
namespace peft {
PEFT_INSTANCES_ENCODER(extern, bottleneck_adapter)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_LORA) && !defined(PEFT_EXTERN_ENCODER_LORA)
#define PEFT_EXTERN_ENCODER_LORA
namespace peft {
PEFT_INSTANCES_ENCODER(extern, lora)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_IA3) && !defined(PEFT_EXTERN_ENCODER_IA3)
#define PEFT_EXTERN_ENCODER_IA3
namespace peft {
PEFT_INSTANCES_ENCODER(extern, ia3)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_BITFIT) && !defined(PEFT_EXTERN_ENCODER_BITFIT)
#define PEFT_EXTERN_ENCODER_BITFIT
namespace peft {
PEFT_INSTANCES_ENCODER(extern, bitfit)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_PROMPT_TUNING) && \
    !defined(PEFT_EXTERN_ENCODER_PROMPT_TUNING)
#define PEFT_EXTERN_ENCODER_PROMPT_TUNING
namespace peft {
PEFT_INSTANCES_ENCODER(extern, prompt_tuning)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_PREFIX_TUNING) && \
    !defined(PEFT_EXTERN_ENCODER_PREFIX_TUNING)
#define PEFT_EXTERN_ENCODER_PREFIX_TUNING
namespace peft {
PEFT_INSTANCES_ENCODER(extern, prefix_tuning)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_MASK_TUNING) && \
    !defined(PEFT_EXTERN_ENCODER_MASK_TUNING)
#define PEFT_EXTERN_ENCODER_MASK_TUNING
namespace peft {
PEFT_INSTANCES_ENCODER(extern, mask_tuning)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_SIDE_TUNING) && \
    !defined(PEFT_EXTERN_ENCODER_SIDE_TUNING)
#define PEFT_EXTERN_ENCODER_SIDE_TUNING
namespace peft {
PEFT_INSTANCES_ENCODER(extern, side_tuning)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_FULL_FINETUNE) && \
    !defined(PEFT_EXTERN_ENCODER_FULL_FINETUNE)
#define PEFT_EXTERN_ENCODER_FULL_FINETUNE
namespace peft {
PEFT_INSTANCES_ENCODER(extern, full_finetune)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_ADAPTER_FUSION) && \
    !defined(PEFT_EXTERN_ENCODER_ADAPTER_FUSION)
#define PEFT_EXTERN_ENCODER_ADAPTER_FUSION
namespace peft {
PEFT_INSTANCES_ENCODER(extern, adapter_fusion)
}  // namespace peft
#endif
#if defined(PEFT_DONE_MODEL_ENCODER) && defined(PEFT_DONE_POLICIES_MODULAR_PROMPT) && \
    !defined(PEFT_EXTERN_ENCODER_MODULAR_PROMPT)
#define PEFT_EXTERN_ENCODER_MODULAR_PROMPT
namespace peft {
PEFT_INSTANCES_ENCODER(extern, modular_prompt)
}  // namespace peft
#endif

#if defined(PEFT_DONE_TASK_HEADS) && !defined(PEFT_EXTERN_TASK_HEADS)
#define PEFT_EXTERN_TASK_HEADS
namespace peft {
PEFT_INSTANCES_HEADS(extern, float)
PEFT_INSTANCES_HEADS(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_TRAIN_TRAINER) && !defined(PEFT_EXTERN_TRAIN_TRAINER)
#define PEFT_EXTERN_TRAIN_TRAINER
namespace peft {
PEFT_INSTANCES_FIT_LOOP(extern, float)
PEFT_INSTANCES_FIT_LOOP(extern, double)
PEFT_INSTANCES_TASKS_OF(extern, no_policy<float>, FIT)
}  // namespace peft
#endif

#if defined(PEFT_DONE_TASK_TASK_MODEL) && !defined(PEFT_EXTERN_TASK_TASK_MODEL)
#define PEFT_EXTERN_TASK_TASK_MODEL
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, no_policy<float>, MODEL)
}  // namespace peft
#endif

// Trainer x policy.
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER) && !defined(PEFT_EXTERN_TASK_MODEL_BOTTLENECK_ADAPTER)
#define PEFT_EXTERN_TASK_MODEL_BOTTLENECK_ADAPTER
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, bottleneck_adapter<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER) && !defined(PEFT_EXTERN_TASK_FIT_BOTTLENECK_ADAPTER)
#define PEFT_EXTERN_TASK_FIT_BOTTLENECK_ADAPTER
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, bottleneck_adapter<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_LORA) && !defined(PEFT_EXTERN_TASK_MODEL_LORA)
#define PEFT_EXTERN_TASK_MODEL_LORA
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, lora<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_LORA) && !defined(PEFT_EXTERN_TASK_FIT_LORA)
#define PEFT_EXTERN_TASK_FIT_LORA
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, lora<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_IA3) && !defined(PEFT_EXTERN_TASK_MODEL_IA3)
#define PEFT_EXTERN_TASK_MODEL_IA3
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, ia3<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_IA3) && !defined(PEFT_EXTERN_TASK_FIT_IA3)
#define PEFT_EXTERN_TASK_FIT_IA3
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, ia3<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_BITFIT) && !defined(PEFT_EXTERN_TASK_MODEL_BITFIT)
#define PEFT_EXTERN_TASK_MODEL_BITFIT
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, bitfit<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_BITFIT) && !defined(PEFT_EXTERN_TASK_FIT_BITFIT)
#define PEFT_EXTERN_TASK_FIT_BITFIT
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, bitfit<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_PROMPT_TUNING) && \
    !defined(PEFT_EXTERN_TASK_MODEL_PROMPT_TUNING)
#define PEFT_EXTERN_TASK_MODEL_PROMPT_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, prompt_tuning<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_PROMPT_TUNING) && \
    !defined(PEFT_EXTERN_TASK_FIT_PROMPT_TUNING)
#define PEFT_EXTERN_TASK_FIT_PROMPT_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, prompt_tuning<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_PREFIX_TUNING) && !defined(PEFT_EXTERN_TASK_MODEL_PREFIX_TUNING)
#define PEFT_EXTERN_TASK_MODEL_PREFIX_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, prefix_tuning<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_PREFIX_TUNING) && !defined(PEFT_EXTERN_TASK_FIT_PREFIX_TUNING)
#define PEFT_EXTERN_TASK_FIT_PREFIX_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, prefix_tuning<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_MASK_TUNING) && !defined(PEFT_EXTERN_TASK_MODEL_MASK_TUNING)
#define PEFT_EXTERN_TASK_MODEL_MASK_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, mask_tuning<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_MASK_TUNING) && !defined(PEFT_EXTERN_TASK_FIT_MASK_TUNING)
#define PEFT_EXTERN_TASK_FIT_MASK_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, mask_tuning<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_SIDE_TUNING) && !defined(PEFT_EXTERN_TASK_MODEL_SIDE_TUNING)
#define PEFT_EXTERN_TASK_MODEL_SIDE_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, side_tuning<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_SIDE_TUNING) && !defined(PEFT_EXTERN_TASK_FIT_SIDE_TUNING)
#define PEFT_EXTERN_TASK_FIT_SIDE_TUNING
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, side_tuning<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_FULL_FINETUNE) && !defined(PEFT_EXTERN_TASK_MODEL_FULL_FINETUNE)
#define PEFT_EXTERN_TASK_MODEL_FULL_FINETUNE
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, full_finetune<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_FULL_FINETUNE) && !defined(PEFT_EXTERN_TASK_FIT_FULL_FINETUNE)
#define PEFT_EXTERN_TASK_FIT_FULL_FINETUNE
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, full_finetune<float>, FIT)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TASK_TASK_MODEL) && defined(PEFT_DONE_POLICIES_MODULAR_PROMPT) && !defined(PEFT_EXTERN_TASK_MODEL_MODULAR_PROMPT)
#define PEFT_EXTERN_TASK_MODEL_MODULAR_PROMPT
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, modular_prompt<float>, MODEL)
}  // namespace peft
#endif
#if defined(PEFT_DONE_TRAIN_TRAINER) && defined(PEFT_DONE_POLICIES_MODULAR_PROMPT) && !defined(PEFT_EXTERN_TASK_FIT_MODULAR_PROMPT)
#define PEFT_EXTERN_TASK_FIT_MODULAR_PROMPT
namespace peft {
PEFT_INSTANCES_TASKS_OF(extern, modular_prompt<float>, FIT)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPTIM_CMAES) && !defined(PEFT_EXTERN_OPTIM_CMAES)
#define PEFT_EXTERN_OPTIM_CMAES
namespace peft {
PEFT_INSTANCES_CMAES(extern)
}  // namespace peft
#endif

#if defined(PEFT_DONE_OPTIM_BAYES_OPT) && !defined(PEFT_EXTERN_OPTIM_BAYES_OPT)
#define PEFT_EXTERN_OPTIM_BAYES_OPT
namespace peft {
PEFT_INSTANCES_BAYES_OPT(extern)
}  // namespace peft
#endif

#if defined(PEFT_DONE_TRAIN_SELF_TRAINING) && defined(PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER) && \
    !defined(PEFT_EXTERN_TRAIN_SELF_TRAINING)
#define PEFT_EXTERN_TRAIN_SELF_TRAINING
namespace peft {
PEFT_INSTANCES_SELF_TRAINERS(extern)
}  // namespace peft
#endif

#if defined(PEFT_DONE_TRAIN_MPMP) && !defined(PEFT_EXTERN_TRAIN_MPMP)
#define PEFT_EXTERN_TRAIN_MPMP
namespace peft {
PEFT_INSTANCES_MPMP_ALL(extern)
}  // namespace peft
#endif

#if defined(PEFT_DONE_IO_HF_CHECKPOINT) && !defined(PEFT_EXTERN_IO_HF_CHECKPOINT)
#define PEFT_EXTERN_IO_HF_CHECKPOINT
namespace peft {
PEFT_INSTANCES_HF_CHECKPOINT(extern, float)
PEFT_INSTANCES_HF_CHECKPOINT(extern, double)
}  // namespace peft
#endif

#if defined(PEFT_DONE_IO_USE_LITE) && !defined(PEFT_EXTERN_IO_USE_LITE)
#define PEFT_EXTERN_IO_USE_LITE
namespace peft {
PEFT_INSTANCES_USE_LITE(extern, float)
PEFT_INSTANCES_USE_LITE(extern, double)
}  // namespace peft
#endif

// Adapter checkpoints x policy.
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_BOTTLENECK_ADAPTER) && \
    !defined(PEFT_EXTERN_IO_BOTTLENECK_ADAPTER)
#define PEFT_EXTERN_IO_BOTTLENECK_ADAPTER
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, bottleneck_adapter<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_LORA) && \
    !defined(PEFT_EXTERN_IO_LORA)
#define PEFT_EXTERN_IO_LORA
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, lora<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_IA3) && \
    !defined(PEFT_EXTERN_IO_IA3)
#define PEFT_EXTERN_IO_IA3
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, ia3<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_BITFIT) && \
    !defined(PEFT_EXTERN_IO_BITFIT)
#define PEFT_EXTERN_IO_BITFIT
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, bitfit<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_PROMPT_TUNING) && \
    !defined(PEFT_EXTERN_IO_PROMPT_TUNING)
#define PEFT_EXTERN_IO_PROMPT_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, prompt_tuning<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_PREFIX_TUNING) && \
    !defined(PEFT_EXTERN_IO_PREFIX_TUNING)
#define PEFT_EXTERN_IO_PREFIX_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, prefix_tuning<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_MASK_TUNING) && \
    !defined(PEFT_EXTERN_IO_MASK_TUNING)
#define PEFT_EXTERN_IO_MASK_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, mask_tuning<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_SIDE_TUNING) && \
    !defined(PEFT_EXTERN_IO_SIDE_TUNING)
#define PEFT_EXTERN_IO_SIDE_TUNING
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, side_tuning<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_FULL_FINETUNE) && \
    !defined(PEFT_EXTERN_IO_FULL_FINETUNE)
#define PEFT_EXTERN_IO_FULL_FINETUNE
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, full_finetune<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_ADAPTER_FUSION) && \
    !defined(PEFT_EXTERN_IO_ADAPTER_FUSION)
#define PEFT_EXTERN_IO_ADAPTER_FUSION
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, adapter_fusion<float>)
}  // namespace peft
#endif
#if defined(PEFT_DONE_IO_ADAPTER_CHECKPOINT) && defined(PEFT_DONE_POLICIES_MODULAR_PROMPT) && \
    !defined(PEFT_EXTERN_IO_MODULAR_PROMPT)
#define PEFT_EXTERN_IO_MODULAR_PROMPT
namespace peft {
PEFT_INSTANCES_POLICY_IO(extern, modular_prompt<float>)
}  // namespace peft
#endif

#endif  // PEFT_USE_INSTANCES
