# Reference ids for the WordPiece and unigram tokenizers (test_wordpiece, test_unigram) and
# Unicode tables (test_unicode), from the JavaScript implementations in the npm assets folder.
find_program(PEFT_NODE_EXECUTABLE NAMES node nodejs)
if(PEFT_NODE_EXECUTABLE)
  add_test(NAME reference_tokenizers
           COMMAND ${PEFT_NODE_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/tokenizers_ref.js
                   ${CMAKE_CURRENT_BINARY_DIR}/reference
           WORKING_DIRECTORY ${PEFT_ASSETS_DIR})
  set_tests_properties(reference_tokenizers PROPERTIES
                       FIXTURES_SETUP peft_reference
                       ENVIRONMENT "NODE_PATH=${PEFT_ASSETS_DIR}")
else()
  message(STATUS "node not found: reference_tokenizers disabled (tokenizer parity tests will skip)")
endif()
