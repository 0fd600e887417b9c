# SPDX-License-Identifier: Apache-2.0
# Replays every fuzz target's committed inputs under ctest, with the project's compiler and
# flags (no libFuzzer needed): one executable, peft_fuzz_replay, holds all targets, and
# ctest runs fuzz_replay_<name> on fuzz/seeds/<name>/ and, when present,
# tests/data/fuzz/<name>/ (minimised inputs of fixed bugs). Included by tests/CMakeLists.txt.
include_guard(GLOBAL)
include(${CMAKE_CURRENT_LIST_DIR}/targets.cmake)
get_filename_component(_peft_fuzz_root "${PEFT_FUZZ_DIR}" DIRECTORY)

set(_peft_fuzz_replay_sources "${PEFT_FUZZ_DIR}/replay_main.cpp")
foreach(name IN LISTS PEFT_FUZZ_TARGETS)
  list(APPEND _peft_fuzz_replay_sources "${PEFT_FUZZ_DIR}/fuzz_${name}.cpp")
endforeach()
add_executable(peft_fuzz_replay ${_peft_fuzz_replay_sources})
peft_fuzz_link(peft_fuzz_replay "*")

foreach(name IN LISTS PEFT_FUZZ_TARGETS)
  add_test(NAME fuzz_replay_${name}
           COMMAND peft_fuzz_replay ${name} "${PEFT_FUZZ_DIR}/seeds/${name}"
                   --optional "${_peft_fuzz_root}/tests/data/fuzz/${name}")
  # 77: a real vocabulary the target needs is missing (scripts/fetch_assets installs it).
  set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77 TIMEOUT 300)
endforeach()
