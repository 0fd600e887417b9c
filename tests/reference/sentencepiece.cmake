# SPDX-License-Identifier: Apache-2.0
# Reference data for the SentencePiece-Unigram tokenizer (XLM-R / ALBERT style tokenizer.json):
# a unigram model trained by Debian's python3-sentencepiece on the review text of the npm assets,
# its two tokenizer.json layouts, sentencepiece's ids (the ground truth), the ids of
# @huggingface/tokenizers (tokenizers.js, run through node) and the nmt_nfkc charsmap cases; and
# for the .model reader (test_sentencepiece_model), a second model in ALBERT's layout and the
# ids of transformers' slow XLM-R and ALBERT tokenizers on both, written out in Python.
# See the header of sentencepiece_ref.py. Its files are removed before each run; without
# python3-sentencepiece or node the test fails and says so.
find_program(PEFT_NODE_EXECUTABLE NAMES node nodejs)
set(_peft_spm_missing "")
if(NOT EXISTS /usr/bin/python3)
  set(_peft_spm_missing "/usr/bin/python3 not found (Debian: python3, python3-sentencepiece)")
else()
  execute_process(COMMAND /usr/bin/python3 -c "import sentencepiece"
                  RESULT_VARIABLE _peft_spm_rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT _peft_spm_rc EQUAL 0)
    set(_peft_spm_missing "python3-sentencepiece not found: /usr/bin/python3 cannot import sentencepiece (Debian: python3-sentencepiece, installed by scripts/fetch_assets)")
  endif()
endif()
if(NOT _peft_spm_missing AND NOT PEFT_NODE_EXECUTABLE)
  set(_peft_spm_missing "node not found (Debian: nodejs, installed by scripts/fetch_assets)")
endif()
set(_peft_spm_ref ${CMAKE_CURRENT_BINARY_DIR}/reference)
peft_add_reference_test(reference_sentencepiece
  OUTPUTS ${_peft_spm_ref}/spm_unigram.model ${_peft_spm_ref}/spm_xlmr_tokenizer.json
          ${_peft_spm_ref}/spm_plain_tokenizer.json ${_peft_spm_ref}/spm_ref.json
          ${_peft_spm_ref}/spm_charsmap_cases.json ${_peft_spm_ref}/spm_albert.model
          ${_peft_spm_ref}/spm_model_ref.json
  MISSING "${_peft_spm_missing}"
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/reference/sentencepiece_ref.py ${PEFT_ASSETS_DIR} ${CMAKE_CURRENT_BINARY_DIR}/reference)
set_tests_properties(reference_sentencepiece PROPERTIES
                     FIXTURES_SETUP peft_reference
                     ENVIRONMENT "NODE_PATH=${PEFT_ASSETS_DIR}"
                     TIMEOUT 300)
