# cmake -DBUILD_DIR=<build> -DTARGET=<target> -DEXPECT=<regex> [-DCONFIG=<cfg>] -P check_fail.cmake
# Passes only if building TARGET fails AND the compiler output matches EXPECT, so a ko test
# cannot pass because of an unrelated error (a typo, a missing header).
foreach(var BUILD_DIR TARGET EXPECT)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_fail.cmake: ${var} is not set")
  endif()
endforeach()
set(config_args)
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target "${TARGET}" ${config_args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but it must not:\n${out}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${TARGET} failed to compile, but without the expected error '${EXPECT}':\n${out}")
endif()
message(STATUS "${TARGET} failed to compile as expected ('${EXPECT}')")
