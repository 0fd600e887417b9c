# SPDX-License-Identifier: Apache-2.0
# Reference values of the task metrics (include/peft/task/metrics.hpp) for test_task_metrics:
# scipy.stats pearsonr / spearmanr, and independent numpy / Python versions of multi-label F1,
# seqeval's entity rules and the SQuAD v2.0 scores, with their inputs. Debian's numpy and scipy
# run only under /usr/bin/python3; without them the test fails and says so.
# Output: ${CMAKE_CURRENT_BINARY_DIR}/reference/task_metrics.json, removed before each run.
set(_peft_tm_missing "")
if(NOT EXISTS /usr/bin/python3)
  set(_peft_tm_missing "/usr/bin/python3 not found (Debian: python3 python3-numpy python3-scipy)")
else()
  execute_process(COMMAND /usr/bin/python3 -c "import numpy, scipy.stats"
                  RESULT_VARIABLE _peft_tm_rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT _peft_tm_rc EQUAL 0)
    set(_peft_tm_missing "/usr/bin/python3 cannot import numpy and scipy.stats (Debian: python3-numpy python3-scipy, installed by scripts/fetch_assets)")
  endif()
endif()
peft_add_reference_test(reference_task_metrics
  OUTPUTS ${CMAKE_CURRENT_BINARY_DIR}/reference/task_metrics.json
  MISSING "${_peft_tm_missing}"
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/task_metrics_ref.py ${CMAKE_CURRENT_BINARY_DIR}/reference)
set_tests_properties(reference_task_metrics PROPERTIES FIXTURES_SETUP "peft_reference;peft_task_metrics_reference" TIMEOUT 120)
