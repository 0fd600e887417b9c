# Packaging tests, all labelled `packaging`:
#  - cmake_import_*: a consumer project (tests/cmake_import) finds peft with find_package and
#    links peft::peft, once from the build tree and once from an install into a scratch prefix;
#    its train_adapter (peft.hpp + peft::instances: load a BERT folder, fit, save) must run;
#  - failtest_*: compile-fail tests (tests/failtest), after Eigen's failtest folder;
#  - format_check: scripts/format --check (only when PEFT_FORMAT_CHECK is ON).
# Included at the end of tests/CMakeLists.txt.

if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
  set(peft_fresh --fresh)  # never reuse a consumer cache from an earlier run
else()
  set(peft_fresh)
endif()

# peft_add_import_test(<kind> <setup fixture or ""> <consumer cmake args>...)
# Registers cmake_import_<kind>_{configure,build,run}, chained by fixtures.
function(peft_add_import_test kind requires)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/cmake_import)
  set(bin ${CMAKE_CURRENT_BINARY_DIR}/cmake_import/${kind})
  add_test(NAME cmake_import_${kind}_configure
    COMMAND ${CMAKE_COMMAND} ${peft_fresh} -G ${CMAKE_GENERATOR} -S ${src} -B ${bin}
            -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release ${ARGN})
  add_test(NAME cmake_import_${kind}_build COMMAND ${CMAKE_COMMAND} --build ${bin} --config Release)
  add_test(NAME cmake_import_${kind}_run COMMAND ${CMAKE_COMMAND} -E chdir ${bin} ./consumer)
  # The README's small program: trains and saves a Houlsby adapter on a real BERT folder.
  add_test(NAME cmake_import_${kind}_train_adapter
    COMMAND ${bin}/train_adapter ${CMAKE_CURRENT_BINARY_DIR}/cmake_import/bert ${bin}/houlsby)
  set_tests_properties(cmake_import_${kind}_train_adapter PROPERTIES
    FIXTURES_REQUIRED "peft_import_${kind}_built;peft_import_bert" LABELS packaging)
  set_tests_properties(cmake_import_${kind}_configure PROPERTIES
    FIXTURES_SETUP peft_import_${kind}_configured FIXTURES_REQUIRED "${requires}")
  set_tests_properties(cmake_import_${kind}_build PROPERTIES
    FIXTURES_REQUIRED peft_import_${kind}_configured FIXTURES_SETUP peft_import_${kind}_built)
  set_tests_properties(cmake_import_${kind}_run PROPERTIES
    FIXTURES_REQUIRED peft_import_${kind}_built)  # the exit code decides (0 only when every check held)
  set_tests_properties(cmake_import_${kind}_configure cmake_import_${kind}_build cmake_import_${kind}_run
    PROPERTIES LABELS packaging)
endfunction()

# The reference BERT checkpoint with a vocab.txt, as a Hugging Face folder (train_adapter).
add_test(NAME cmake_import_bert_folder
  COMMAND ${CMAKE_COMMAND} -DSOURCE=${CMAKE_CURRENT_BINARY_DIR}/reference/torch/bert
          -DDEST=${CMAKE_CURRENT_BINARY_DIR}/cmake_import/bert -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake_import/bert_folder.cmake)
set_tests_properties(cmake_import_bert_folder PROPERTIES
  FIXTURES_SETUP peft_import_bert FIXTURES_REQUIRED peft_reference LABELS packaging)

if(PEFT_INSTALL)
  # (a) The build tree: peftConfig.cmake and peftTargets.cmake written by export().
  peft_add_import_test(build_tree "" -Dpeft_DIR=${PROJECT_BINARY_DIR})

  # (b) An install into an emptied scratch prefix, found through CMAKE_PREFIX_PATH.
  set(peft_prefix ${CMAKE_CURRENT_BINARY_DIR}/cmake_import/install)
  add_test(NAME cmake_import_install
    COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${PROJECT_BINARY_DIR} -DPREFIX=${peft_prefix}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake_import/install.cmake)
  set_tests_properties(cmake_import_install PROPERTIES FIXTURES_SETUP peft_installed LABELS packaging)
  peft_add_import_test(installed peft_installed
    -DCMAKE_PREFIX_PATH=${peft_prefix} -DPEFT_EXPECTED_PREFIX=${peft_prefix})
endif()

# Each tests/failtest/<name>.cpp is compiled twice, by two targets that `all` leaves out:
# failtest_<name>_ok as is, which must compile, and failtest_<name>_ko with PEFT_FAILTEST_KO
# defined, which must fail with the error its `// PEFT_FAILTEST_EXPECT: <regex>` line names.
# The builds share the main build tree, so they take turns (RESOURCE_LOCK).
file(GLOB peft_failtest_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/failtest/*.cpp)
foreach(src IN LISTS peft_failtest_sources)
  get_filename_component(name ${src} NAME_WE)
  file(STRINGS ${src} expect REGEX "^// PEFT_FAILTEST_EXPECT: " LIMIT_COUNT 1)
  string(REGEX REPLACE "^// PEFT_FAILTEST_EXPECT: " "" expect "${expect}")
  if(expect STREQUAL "")
    message(FATAL_ERROR "${src} has no '// PEFT_FAILTEST_EXPECT: <regex>' line")
  endif()
  foreach(variant ok ko)
    set(target failtest_${name}_${variant})
    add_library(${target} OBJECT EXCLUDE_FROM_ALL ${src})
    target_link_libraries(${target} PRIVATE peft::peft peft_dev_flags)
    if(variant STREQUAL "ko")
      target_compile_definitions(${target} PRIVATE PEFT_FAILTEST_KO)
      add_test(NAME ${target}
        COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${PROJECT_BINARY_DIR} -DTARGET=${target} -DCONFIG=$<CONFIG>
                "-DEXPECT=${expect}" -P ${CMAKE_CURRENT_SOURCE_DIR}/failtest/check_fail.cmake)
    else()
      add_test(NAME ${target}
        COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target ${target} --config $<CONFIG>)
    endif()
    set_tests_properties(${target} PROPERTIES LABELS packaging RESOURCE_LOCK peft_build_tree)
  endforeach()
endforeach()

# The formatting check runs where clang-format 14 is installed (scripts/fetch_assets does).
option(PEFT_FORMAT_CHECK "Add the format_check test (scripts/format --check)" OFF)
if(PEFT_FORMAT_CHECK)
  add_test(NAME format_check COMMAND ${PROJECT_SOURCE_DIR}/scripts/format --check)
  set_tests_properties(format_check PROPERTIES LABELS packaging)
endif()
