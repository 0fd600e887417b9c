# SPDX-License-Identifier: Apache-2.0
# AdapterHub folders (Houlsby and Pfeiffer bottlenecks with a flex and a static head, an
# AdapterFusion, a pickle-only folder) as adapters 1.2.0 writes them, with outputs computed by
# PyTorch from AdapterHub's math, for io/adapterhub.hpp (test_adapterhub, example_hf_peft).
# Output: ${CMAKE_CURRENT_BINARY_DIR}/reference/adapterhub, removed before each run.
peft_add_reference_test(reference_adapterhub
  OUTPUTS ${CMAKE_CURRENT_BINARY_DIR}/reference/adapterhub
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/torch_adapterhub.py ${CMAKE_CURRENT_BINARY_DIR}/reference/adapterhub)
set_tests_properties(reference_adapterhub PROPERTIES FIXTURES_SETUP peft_reference TIMEOUT 300)
