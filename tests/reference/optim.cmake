# SPDX-License-Identifier: Apache-2.0
# PyTorch reference steps of SGD / Adam / AdamW (with per-group decay and LR scales, a
# LambdaLR linear schedule), clip_grad_norm_, F.cross_entropy and F.kl_div for test_optim and
# test_losses. Debian's torch runs only under /usr/bin/python3.
# Output: ${CMAKE_CURRENT_BINARY_DIR}/reference/optim.json, removed before each run.
set(_peft_missing "")
if(NOT EXISTS /usr/bin/python3)
  set(_peft_missing "/usr/bin/python3 not found (Debian: python3 python3-torch)")
endif()
peft_add_reference_test(reference_optim
  OUTPUTS ${CMAKE_CURRENT_BINARY_DIR}/reference/optim.json
  MISSING "${_peft_missing}"
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/torch_optim.py ${CMAKE_CURRENT_BINARY_DIR}/reference)
set_tests_properties(reference_optim PROPERTIES FIXTURES_SETUP "peft_reference;peft_optim_reference" TIMEOUT 120)
