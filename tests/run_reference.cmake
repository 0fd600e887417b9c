# Runs one reference generator after removing what it wrote before, so a test that reads its
# outputs never sees files from an earlier run (peft_add_reference_test in tests/CMakeLists.txt).
#   cmake "-DOUTPUTS=<path;...>" "-DCOMMAND=<command;args...>" [-DMISSING=<why it cannot run>]
#         -P run_reference.cmake
# With MISSING set the outputs are removed and the test fails with that reason.
if(NOT OUTPUTS)
  message(FATAL_ERROR "run_reference.cmake: OUTPUTS is not set")
endif()
foreach(path IN LISTS OUTPUTS)
  file(REMOVE_RECURSE "${path}")
endforeach()
if(MISSING)
  message(FATAL_ERROR "${MISSING}")
endif()
if(NOT COMMAND)
  message(FATAL_ERROR "run_reference.cmake: COMMAND is not set")
endif()
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  string(REPLACE ";" " " command "${COMMAND}")
  message(FATAL_ERROR "reference generator failed (exit ${rc}): ${command}")
endif()
