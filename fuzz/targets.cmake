# SPDX-License-Identifier: Apache-2.0
# The fuzz targets: one per fuzz/fuzz_<name>.cpp. Sets PEFT_FUZZ_TARGETS (names) and
# PEFT_FUZZ_DIR. The npy target needs xtensor (peft::npy) and is left out without it.
include_guard(GLOBAL)
set(PEFT_FUZZ_DIR "${CMAKE_CURRENT_LIST_DIR}")
file(GLOB _peft_fuzz_sources CONFIGURE_DEPENDS "${PEFT_FUZZ_DIR}/fuzz_*.cpp")
set(PEFT_FUZZ_TARGETS "")
foreach(_src IN LISTS _peft_fuzz_sources)
  get_filename_component(_name "${_src}" NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" _name "${_name}")
  if(_name STREQUAL "npy" AND NOT TARGET peft_npy)
    message(STATUS "peft fuzz: xtensor not found, target npy left out")
    continue()
  endif()
  list(APPEND PEFT_FUZZ_TARGETS "${_name}")
endforeach()
list(SORT PEFT_FUZZ_TARGETS)

# peft_fuzz_link(<target>): what the fuzz targets (and the programs linking them) need.
function(peft_fuzz_link target)
  target_link_libraries(${target} PRIVATE peft::peft peft_dev_flags)
  if(TARGET peft_npy)
    target_link_libraries(${target} PRIVATE peft::npy)
  endif()
  target_compile_definitions(${target} PRIVATE PEFT_FUZZ_ASSETS_DIR="${PEFT_ASSETS_DIR}")
endfunction()
