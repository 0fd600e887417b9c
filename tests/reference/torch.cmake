# SPDX-License-Identifier: Apache-2.0
# PyTorch reference checkpoints and outputs (BERT, RoBERTa, F16/BF16 copies) for the
# checkpoint loaders and the encoder parity tests. Debian's torch runs only under
# /usr/bin/python3. Output: ${CMAKE_CURRENT_BINARY_DIR}/reference/torch/{bert,roberta,model_f16,model_bf16},
# removed before each run.
peft_add_reference_test(reference_torch
  OUTPUTS ${CMAKE_CURRENT_BINARY_DIR}/reference/torch
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/torch_bert.py ${CMAKE_CURRENT_BINARY_DIR}/reference/torch)
set_tests_properties(reference_torch PROPERTIES FIXTURES_SETUP peft_reference TIMEOUT 300)
