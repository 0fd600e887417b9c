# SPDX-License-Identifier: Apache-2.0
# The fuzz targets in a test build (included by tests/CMakeLists.txt). Every fuzz/fuzz_<name>.cpp
# is compiled once, into the object library peft_fuzz_objects, and linked into:
#  - peft_fuzz_replay: ctest runs fuzz_replay_<name> on fuzz/seeds/<name>/ and, when present,
#    tests/data/fuzz/<name>/ (minimised inputs of fixed bugs), with any compiler and flags;
#  - peft_fuzz, in a clang sanitizer build (scripts/test --sanitize, which CI runs before
#    scripts/fuzz): the libFuzzer binary of every target. The objects are then also compiled
#    with -fsanitize=fuzzer-no-link (coverage), so scripts/fuzz fuzzes what the sanitizer tests
#    built instead of compiling the targets a third time.
# The targets do not link peft::instances: everything they reach is compiled with them, so it
# is instrumented for coverage.
include_guard(GLOBAL)
include(${CMAKE_CURRENT_LIST_DIR}/targets.cmake)
get_filename_component(_peft_fuzz_root "${PEFT_FUZZ_DIR}" DIRECTORY)

set(_peft_fuzz_sources "")
foreach(name IN LISTS PEFT_FUZZ_TARGETS)
  list(APPEND _peft_fuzz_sources "${PEFT_FUZZ_DIR}/fuzz_${name}.cpp")
endforeach()
add_library(peft_fuzz_objects OBJECT ${_peft_fuzz_sources})
peft_fuzz_link(peft_fuzz_objects)

# libFuzzer: with clang and the sanitizers on (or PEFT_BUILD_FUZZERS=ON, which insists).
set(_peft_libfuzzer OFF)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND (PEFT_SANITIZE OR PEFT_BUILD_FUZZERS))
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer,address,undefined")
  check_cxx_source_compiles("
#include <cstddef>
#include <cstdint>
extern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }" PEFT_HAVE_LIBFUZZER)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  set(_peft_libfuzzer ${PEFT_HAVE_LIBFUZZER})
endif()
if(PEFT_BUILD_FUZZERS AND NOT _peft_libfuzzer)
  message(FATAL_ERROR "PEFT_BUILD_FUZZERS=ON needs clang++ that links -fsanitize=fuzzer,address,undefined "
                      "(Debian: apt-get install clang libclang-rt-14-dev), got ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER}")
endif()

if(_peft_libfuzzer)
  set(_peft_fuzz_sanitizers -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  target_compile_options(peft_fuzz_objects PRIVATE ${_peft_fuzz_sanitizers})
  add_executable(peft_fuzz ${PEFT_FUZZ_DIR}/libfuzzer_main.cpp $<TARGET_OBJECTS:peft_fuzz_objects>)
  peft_fuzz_link(peft_fuzz)
  target_compile_options(peft_fuzz PRIVATE ${_peft_fuzz_sanitizers})
  target_link_options(peft_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  set_target_properties(peft_fuzz PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  # For scripts/fuzz: the target names, one per line.
  string(REPLACE ";" "\n" _peft_fuzz_list "${PEFT_FUZZ_TARGETS}")
  file(WRITE ${CMAKE_BINARY_DIR}/fuzz/targets.txt "${_peft_fuzz_list}\n")
endif()

add_executable(peft_fuzz_replay "${PEFT_FUZZ_DIR}/replay_main.cpp" $<TARGET_OBJECTS:peft_fuzz_objects>)
peft_fuzz_link(peft_fuzz_replay)
if(_peft_libfuzzer)
  # The objects' coverage hooks; the replay links the fuzzer runtime without its main.
  target_link_options(peft_fuzz_replay PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
endif()

foreach(name IN LISTS PEFT_FUZZ_TARGETS)
  add_test(NAME fuzz_replay_${name}
           COMMAND peft_fuzz_replay ${name} "${PEFT_FUZZ_DIR}/seeds/${name}"
                   --optional "${_peft_fuzz_root}/tests/data/fuzz/${name}")
  # 77: a real vocabulary the target needs is missing (scripts/fetch_assets installs it).
  set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
