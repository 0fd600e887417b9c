// SPDX-License-Identifier: Apache-2.0
// peft_fuzz: the libFuzzer binary of every fuzz target (built in a clang sanitizer build, from
// the same objects as peft_fuzz_replay). The target is the part of the program's name after
// "fuzz_" (scripts/fuzz runs it through links named fuzz_<target>), or $PEFT_FUZZ_TARGET:
//
//   ln -s peft_fuzz fuzz_safetensors && ./fuzz_safetensors CORPUS_DIR      (libFuzzer options apply)
//   PEFT_FUZZ_TARGET=safetensors ./peft_fuzz crash-file
//
// An exception other than peft::error escapes LLVMFuzzerTestOneInput and terminates the process
// at the throw site (libFuzzer is built without exception tables), so the report's stack names
// the faulty line. A missing real vocabulary stops the run with status 2.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_common.hpp"

namespace {

peft_fuzz::target_fn g_target = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  std::string name;
  if (const char* env = std::getenv("PEFT_FUZZ_TARGET"); env && *env) {
    name = env;
  } else if (*argc > 0) {
    name = (*argv)[0];
    name = name.substr(name.find_last_of('/') + 1);
    if (name.rfind("fuzz_", 0) == 0) name = name.substr(5);
  }
  const auto& targets = peft_fuzz::registry();
  const auto it = targets.find(name);
  if (it == targets.end()) {
    std::fprintf(
        stderr,
        "peft_fuzz: unknown target '%s' (name the program fuzz_<target> or set PEFT_FUZZ_TARGET); known:",
        name.c_str());
    for (const auto& kv : targets) std::fprintf(stderr, " %s", kv.first.c_str());
    std::fprintf(stderr, "\n");
    std::exit(2);
  }
  g_target = it->second;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    g_target(data, size);
  } catch (const peft_fuzz::missing_asset& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(2);
  }
  return 0;
}
