# cmake -DBUILD_DIR=<peft build> -DPREFIX=<folder> -P install.cmake
# Installs peft into an empty PREFIX, so files left by an earlier run cannot hide a missing
# install rule.
foreach(var BUILD_DIR PREFIX)
  if(NOT ${var})
    message(FATAL_ERROR "install.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install.cmake: cmake --install ${BUILD_DIR} failed (${rc})")
endif()
