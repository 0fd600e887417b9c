// SPDX-License-Identifier: Apache-2.0
// peft_fuzz_replay: runs fuzz targets on saved inputs, without libFuzzer. Every fuzz/fuzz_*.cpp
// is linked into it (and, in a clang sanitizer build, into the libFuzzer binary peft_fuzz), and
// ctest replays the committed seeds (fuzz/seeds/<target>/) and regression inputs
// (tests/data/fuzz/<target>/).
//
//   peft_fuzz_replay --list
//   peft_fuzz_replay <target> [--optional] <file-or-folder>...
//
// Folders are read recursively (names starting with '.' and README files are skipped). Paths
// after --optional may be missing. An input fails if anything other than a peft::error escapes
// the target (std::bad_alloc from an allocation past the memory limit included), if it takes
// longer than the per-input time limit, or if it crashes the process (then the last "RUN"
// line names it). Exit status: 0 all inputs passed, 1 an input failed, 2 usage error,
// 77 skipped (a real vocabulary the target needs is missing; ctest reports it as skipped).

#include <cxxabi.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <typeinfo>
#include <vector>

#include "fuzz_common.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define PEFT_FUZZ_REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEFT_FUZZ_REPLAY_ASAN 1
#endif
#endif
#ifndef PEFT_FUZZ_REPLAY_ASAN
#define PEFT_FUZZ_REPLAY_ASAN 0
#endif

#if PEFT_FUZZ_REPLAY_ASAN
// Under ASan an address-space limit would break the shadow memory; cap single allocations
// instead, as libFuzzer's -malloc_limit_mb does (ASAN_OPTIONS still overrides this).
extern "C" const char* __asan_default_options() { return "max_allocation_size_mb=2048"; }
#endif

namespace {

namespace fs = std::filesystem;

/// The input being run, for the time-limit handler (async-signal-safe access only).
char g_current[4096] = "";

extern "C" void on_alarm(int) {
  const char msg[] = "\npeft_fuzz_replay: TIMEOUT (hang?) on input ";
  ssize_t ignored = ::write(2, msg, sizeof msg - 1);
  ignored = ::write(2, g_current, std::strlen(g_current));
  ignored = ::write(2, "\n", 1);
  (void)ignored;
  ::_exit(1);
}

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> s(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && s ? std::string(s.get()) : std::string(name);
}

bool skipped_name(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.empty() || n[0] == '.' || n.rfind("README", 0) == 0;
}

/// Files named by @p path (a file, or every file below a folder, sorted).
std::vector<fs::path> inputs_of(const fs::path& path) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file(ec) && !skipped_name(it->path())) out.push_back(it->path());
    std::sort(out.begin(), out.end());
  } else {
    out.push_back(path);
  }
  return out;
}

int usage() {
  std::fprintf(stderr, "usage: peft_fuzz_replay --list\n"
                       "       peft_fuzz_replay <target> [--optional] <file-or-folder>...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const auto& targets = peft_fuzz::registry();
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const auto& kv : targets) std::printf("%s\n", kv.first.c_str());
    return 0;
  }
  if (argc < 3) return usage();
  const std::string name = argv[1];
  const auto target = targets.find(name);
  if (target == targets.end()) {
    std::fprintf(stderr, "peft_fuzz_replay: unknown target '%s'; known:", name.c_str());
    for (const auto& kv : targets) std::fprintf(stderr, " %s", kv.first.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }

  std::vector<fs::path> files;
  bool optional = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--optional") {
      optional = true;
      continue;
    }
    std::error_code ec;
    if (!fs::exists(arg, ec)) {
      if (optional) continue;
      std::fprintf(stderr, "peft_fuzz_replay: '%s' does not exist\n", arg.c_str());
      return 2;
    }
    for (auto& f : inputs_of(arg)) files.push_back(std::move(f));
  }
  if (files.empty()) {
    std::fprintf(stderr, "peft_fuzz_replay: no inputs for target '%s'\n", name.c_str());
    return 2;
  }

#if !PEFT_FUZZ_REPLAY_ASAN
  // An allocation libFuzzer's -rss_limit_mb=2048 would stop becomes std::bad_alloc here
  // (address space, so a bit more than the 2 GB RSS; threads and libraries need some).
  if (!std::getenv("PEFT_FUZZ_REPLAY_NO_RLIMIT")) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_AS, &lim) == 0) {
      const rlim_t cap = rlim_t(3) << 30;
      if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur > cap) {
        lim.rlim_cur = cap;
        ::setrlimit(RLIMIT_AS, &lim);
      }
    }
  }
#endif
  // libFuzzer's -timeout=10, with room for slow sanitizer builds.
  unsigned seconds = PEFT_FUZZ_REPLAY_ASAN ? 60 : 10;
  if (const char* t = std::getenv("PEFT_FUZZ_REPLAY_TIMEOUT")) seconds = static_cast<unsigned>(std::atoi(t));
  ::signal(SIGALRM, on_alarm);

  std::size_t failed = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::printf("[FAIL] %s: cannot read\n", file.c_str());
      ++failed;
      continue;
    }
    std::snprintf(g_current, sizeof g_current, "%s", file.c_str());
    std::printf("[ RUN] %s (%zu bytes)\n", file.c_str(), bytes.size());
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    std::string problem;
    ::alarm(seconds);
    try {
      target->second(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    } catch (const peft_fuzz::missing_asset& e) {
      ::alarm(0);
      std::printf("[SKIP] %s\n", e.what());
      return failed ? 1 : 77;
    } catch (const peft_fuzz::check_failed& e) {
      problem = e.what();
    } catch (const std::exception& e) {
      problem = "a non-peft exception escaped: " + demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
      problem = "an exception of unknown type escaped";
    }
    ::alarm(0);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    if (problem.empty()) {
      std::printf("[  OK] %s (%lld ms)\n", file.c_str(), static_cast<long long>(ms));
    } else {
      std::printf("[FAIL] %s (%lld ms): %s\n", file.c_str(), static_cast<long long>(ms), problem.c_str());
      ++failed;
    }
  }
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("peft_fuzz_replay %s: %zu inputs, %zu passed, %zu failed (%.2f s)\n", name.c_str(), files.size(),
              files.size() - failed, failed, total);
  return failed ? 1 : 0;
}
