# SPDX-License-Identifier: Apache-2.0
# PyTorch reference checkpoints and outputs for more encoder families (XLM-RoBERTa, DistilBERT,
# ELECTRA, ALBERT, MPNet), a sharded BERT checkpoint and a sentence-transformers folder, for the
# checkpoint loaders and the encoder parity tests. Debian's torch runs only under /usr/bin/python3.
# Output: ${CMAKE_CURRENT_BINARY_DIR}/reference/families/{xlm-roberta,distilbert,electra,albert,
# mpnet,sharded,sentence}, removed before each run.
peft_add_reference_test(reference_families
  OUTPUTS ${CMAKE_CURRENT_BINARY_DIR}/reference/families
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/torch_families.py ${CMAKE_CURRENT_BINARY_DIR}/reference/families)
set_tests_properties(reference_families PROPERTIES FIXTURES_SETUP peft_reference TIMEOUT 300)
