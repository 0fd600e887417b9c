# SPDX-License-Identifier: Apache-2.0
# Hugging Face PEFT adapter folders (LoRA on a BERT sequence classifier, on BertModel, and as
# transformers' own adapter support saves it) with outputs computed by PyTorch from the
# method's math, for the folder readers (test_lora). Output: ${CMAKE_CURRENT_BINARY_DIR}/reference/hf_peft,
# removed before each run.
peft_add_reference_test(reference_hf_peft
  OUTPUTS ${CMAKE_CURRENT_BINARY_DIR}/reference/hf_peft
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/torch_hf_peft.py ${CMAKE_CURRENT_BINARY_DIR}/reference/hf_peft)
set_tests_properties(reference_hf_peft PROPERTIES FIXTURES_SETUP peft_reference TIMEOUT 300)
