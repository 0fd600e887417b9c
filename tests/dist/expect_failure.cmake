# Runs COMMAND (a ;-list) and passes only if it exits non-zero within LIMIT seconds and its
# output matches EXPECT: a job that loses a rank must end with an error, not hang.
#   cmake -DCOMMAND=... -DEXPECT=regex -DLIMIT=seconds -P expect_failure.cmake
string(TIMESTAMP start "%s")
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${LIMIT})
string(TIMESTAMP stop "%s")
math(EXPR took "${stop} - ${start}")
message("${out}${err}")
message("exit: ${rc}, ${took} s")
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job still ran after ${LIMIT} s: it hung instead of failing")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited 0; a failure was expected")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not name the failure (expected to match '${EXPECT}')")
endif()
