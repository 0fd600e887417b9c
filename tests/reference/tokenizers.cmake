# Reference ids for the WordPiece and unigram tokenizers (test_wordpiece, test_unigram) and
# Unicode tables (test_unicode), from the JavaScript implementations in the npm assets folder;
# and, in reference_tokenizers_bpe, for the byte-level BPE tokenizer (GPT-2's vocab.json and
# merges.txt, RoBERTa tokenizer.json files, and the ids of gpt-3-encoder and tokenizers.js).
# Their files are removed before each run; without node the tests fail and say so.
find_program(PEFT_NODE_EXECUTABLE NAMES node nodejs)
set(_peft_missing "")
if(NOT PEFT_NODE_EXECUTABLE)
  set(_peft_missing "node not found (Debian: nodejs, installed by scripts/fetch_assets)")
endif()
set(_peft_ref ${CMAKE_CURRENT_BINARY_DIR}/reference)
peft_add_reference_test(reference_tokenizers
  OUTPUTS ${_peft_ref}/tokenizers_bert_vocab.txt ${_peft_ref}/tokenizers_bert_tokenizer.json
          ${_peft_ref}/tokenizers_ref.json ${_peft_ref}/tokenizers_unicode.json
  MISSING "${_peft_missing}"
  COMMAND ${PEFT_NODE_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/tokenizers_ref.js ${_peft_ref})
set_tests_properties(reference_tokenizers PROPERTIES
                     FIXTURES_SETUP peft_reference
                     ENVIRONMENT "NODE_PATH=${PEFT_ASSETS_DIR}"
                     WORKING_DIRECTORY ${PEFT_ASSETS_DIR})
peft_add_reference_test(reference_tokenizers_bpe
  OUTPUTS ${_peft_ref}/bpe_gpt2_vocab.json ${_peft_ref}/bpe_gpt2_merges.txt
          ${_peft_ref}/bpe_roberta_tokenizer.json ${_peft_ref}/bpe_roberta_prefix_tokenizer.json
          ${_peft_ref}/bpe_ref.json
  MISSING "${_peft_missing}"
  COMMAND ${PEFT_NODE_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/tokenizers_bpe_ref.js ${_peft_ref})
set_tests_properties(reference_tokenizers_bpe PROPERTIES
                     FIXTURES_SETUP peft_reference
                     ENVIRONMENT "NODE_PATH=${PEFT_ASSETS_DIR}"
                     WORKING_DIRECTORY ${PEFT_ASSETS_DIR})
