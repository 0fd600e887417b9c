// SPDX-License-Identifier: Apache-2.0
// Crash safety: a writer killed with SIGKILL at random points never leaves a broken file or
// a lost checkpoint behind. A child process saves two alternating versions in a loop; the
// parent kills it after a random delay and checks that what is on disk is one complete
// version. For adapter folders, the state a kill between the two renames leaves (new weights
// next to the old config) is also built by hand, so that path is covered on every run. Task
// folders (save_folder_atomically) are killed the same way.
#include "test_common.hpp"

#include <peft/io/adapter_checkpoint.hpp>
#include <peft/io/atomic_folder.hpp>
#include <peft/io/safetensors.hpp>
#include <peft/policies/bottleneck_adapter.hpp>

#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <random>
#include <thread>

#include "small_model.hpp"

namespace fs = std::filesystem;
namespace {

/// Runs @p body in a child process, kills it with SIGKILL after @p delay and reaps it.
/// Returns false if the child ended on its own (it loops forever, so that is a failure).
template <typename Body>
bool run_and_kill(Body&& body, std::chrono::microseconds delay) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      body();
    } catch (...) {
    }
    ::_exit(3);  // never reached while the loop runs: the parent kills us first
  }
  std::this_thread::sleep_for(delay);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/// A tensor of @p n copies of @p v.
peft::tensor filled(std::size_t n, float v) { return peft::tensor{{static_cast<std::int64_t>(n)}, std::vector<float>(n, v)}; }

peft::bottleneck_adapter<float> adapter_with(const peft::encoder_shape& shape, float v) {
  peft::bottleneck_adapter<float> a(shape, peft::bottleneck_config::houlsby(3), 1);
  for (peft::index i = 0; i < a.num_parameters(); ++i) a.parameters().values()[i] = v;
  return a;
}

}  // namespace

TEST_CASE("save_safetensors killed at random points leaves one complete version", "[crash][kill]") {
  const std::string dir = peft_test::scratch_dir("kill_safetensors");
  const std::string path = dir + "/model.safetensors";
  constexpr std::size_t n = 1 << 20;  // 4 MB per save: kills land inside writes too
  peft::save_safetensors(path, {{"w", filled(n, 0.f)}});
  std::mt19937 gen(12345);
  std::uniform_int_distribution<int> delay_us(200, 40000);
  int killed = 0;
  for (int round = 0; round < 24; ++round) {
    const bool was_killed = run_and_kill(
        [&] {
          for (int k = 1;; ++k) peft::save_safetensors(path, {{"w", filled(n, static_cast<float>(k % 2))}});
        },
        std::chrono::microseconds(delay_us(gen)));
    killed += was_killed ? 1 : 0;
    const auto f = peft::safetensors_file::open(path);  // throws if the file were torn
    const auto t = f.load("w");
    REQUIRE(t.data.size() == n);
    const float v = t.data.front();
    CHECK((v == 0.f || v == 1.f));
    CHECK(std::all_of(t.data.begin(), t.data.end(), [v](float x) { return x == v; }));
  }
  CHECK(killed == 24);
  // Only the killed writers' temporary files can be left; never a half-written target.
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    CHECK((name == "model.safetensors" || name.rfind("model.safetensors.tmp.", 0) == 0));
  }
}

TEST_CASE("save_policy killed at random points never loses the previous checkpoint", "[crash][kill]") {
  const auto shape = peft_test::small_model<peft::bert, float>("bert").enc.shape();
  const std::string dir = peft_test::scratch_dir("kill_policy");
  peft::save_policy(dir, adapter_with(shape, 0.f));
  std::mt19937 gen(777);
  std::uniform_int_distribution<int> delay_us(100, 20000);
  for (int round = 0; round < 24; ++round) {
    CHECK(run_and_kill(
        [&] {
          const auto a = adapter_with(shape, 1.f), b = adapter_with(shape, 2.f);
          for (int k = 0;; ++k) peft::save_policy(dir, k % 2 ? a : b);
        },
        std::chrono::microseconds(delay_us(gen))));
    const auto loaded = peft::load_policy<peft::bottleneck_adapter<float>>(dir, shape);
    const float v = loaded.parameters().values()[0];
    CHECK((v == 0.f || v == 1.f || v == 2.f));
    for (peft::index i = 0; i < loaded.num_parameters(); ++i) REQUIRE(loaded.parameters().values()[i] == v);
  }
  // A save that completes cleans up what the killed ones left.
  peft::save_policy(dir, adapter_with(shape, 5.f));
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  CHECK(files == 2);
  CHECK(peft::load_policy<peft::bottleneck_adapter<float>>(dir, shape).parameters().values()[0] == 5.f);
}

TEST_CASE("new weights next to the old config (a kill between the renames) load the previous checkpoint",
          "[crash][checkpoint]") {
  const auto shape = peft_test::small_model<peft::bert, float>("bert").enc.shape();
  const std::string dir = peft_test::scratch_dir("kill_between"), other = peft_test::scratch_dir("kill_between_b");
  peft::save_policy(dir, adapter_with(shape, 1.f));
  peft::save_policy(other, adapter_with(shape, 2.f));
  // What save_policy leaves when killed right after its first rename: the old weights kept as
  // a hard-linked backup, the new weights in place, the old config.
  const std::string wts = dir + "/adapter_model.safetensors";
  fs::create_hard_link(wts, wts + ".bak.99999");
  fs::remove(wts);
  fs::copy_file(other + "/adapter_model.safetensors", wts);
  CHECK(peft::load_policy<peft::bottleneck_adapter<float>>(dir, shape).parameters().values()[0] == 1.f);

  // Weights no backup matches (edited by another tool, say) are loaded as they are and checked
  // tensor by tensor against the config; so are weights next to a config without a digest.
  fs::remove(wts + ".bak.99999");
  CHECK(peft::load_policy<peft::bottleneck_adapter<float>>(dir, shape).parameters().values()[0] == 2.f);
  auto cfg = peft::read_adapter_config(dir);
  cfg["peft_cpp"].erase("weights_fnv1a64");
  peft::atomic_write(dir + "/adapter_config.json", cfg.dump());
  CHECK(peft::load_policy<peft::bottleneck_adapter<float>>(dir, shape).parameters().values()[0] == 2.f);
}

namespace {

/// A task-shaped folder of version @p v saved as one unit: a policy, a head and task.json.
void save_task_version(const std::string& dir, const peft::encoder_shape& shape, float v) {
  peft::save_folder_atomically(dir, "task.json", [&](const std::string& stage) {
    peft::save_policy(stage, adapter_with(shape, v));
    peft::save_safetensors((fs::path(stage) / "head.safetensors").string(), {{"w", filled(4096, v)}},
                           {{"format", "pt"}});
    peft::atomic_write((fs::path(stage) / "task.json").string(), nlohmann::json{{"version", v}}.dump());
  });
}

/// The version in @p dir's loadable folder, after checking that every file holds that version.
float loaded_task_version(const std::string& dir, const peft::encoder_shape& shape) {
  const std::string at = peft::resolve_saved_folder(dir, "task.json");
  const float v = nlohmann::json::parse(peft_test::read_text((fs::path(at) / "task.json").string()))["version"];
  const auto policy = peft::load_policy<peft::bottleneck_adapter<float>>(at, shape);
  for (peft::index i = 0; i < policy.num_parameters(); ++i) REQUIRE(policy.parameters().values()[i] == v);
  const auto head = peft::safetensors_file::open((fs::path(at) / "head.safetensors").string()).load("w");
  for (float x : head.data) REQUIRE(x == v);
  return v;
}

/// Entries of @p parent (names only).
std::vector<std::string> entries(const std::string& parent) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(parent)) out.push_back(e.path().filename().string());
  return out;
}

}  // namespace

TEST_CASE("a task folder saved as one unit, killed at random points, always loads one whole version",
          "[crash][kill][task]") {
  const auto shape = peft_test::small_model<peft::bert, float>("bert").enc.shape();
  const std::string parent = peft_test::scratch_dir("kill_task");
  const std::string dir = (fs::path(parent) / "task").string();
  // Kill within a few saves' time, so that the kills land before, inside and after saves.
  const auto t0 = std::chrono::steady_clock::now();
  for (int k = 0; k < 3; ++k) save_task_version(dir, shape, 0.f);
  const auto per_save =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count() / 3;
  std::mt19937 gen(4242);
  std::uniform_int_distribution<long> delay_us(100, std::max<long>(2000, 4 * per_save));
  std::set<float> seen;
  for (int round = 0; round < 24; ++round) {
    CHECK(run_and_kill(
        [&] {
          for (int k = 0;; ++k) save_task_version(dir, shape, k % 2 ? 1.f : 2.f);
        },
        std::chrono::microseconds(delay_us(gen))));
    const float v = loaded_task_version(dir, shape);
    CHECK((v == 0.f || v == 1.f || v == 2.f));
    seen.insert(v);
  }
  CHECK(seen.size() >= 2);  // the kills landed at different points
  // A save that completes removes what the killed ones left.
  save_task_version(dir, shape, 5.f);
  CHECK(entries(parent) == std::vector<std::string>{"task"});
  CHECK(loaded_task_version(dir, shape) == 5.f);
  fs::remove_all(parent);
}

TEST_CASE("a folder save interrupted between its two renames leaves the previous version loadable",
          "[crash][task]") {
  const auto shape = peft_test::small_model<peft::bert, float>("bert").enc.shape();
  const std::string parent = peft_test::scratch_dir("task_two_renames");
  const std::string dir = (fs::path(parent) / "task").string();
  // What the path without an atomic exchange leaves when killed between its renames: no
  // folder under the task's name, the previous version moved aside, the new one staged.
  const std::string dead = "99999999";  // above any pid_max: no such process
  // (Built from two complete saves moved into place afterwards: a save removes such leftovers.)
  save_task_version(dir, shape, 1.f);
  fs::rename(dir, dir + ".one");
  save_task_version(dir, shape, 2.f);
  fs::rename(dir, dir + ".staging." + dead);
  fs::rename(dir + ".one", dir + ".previous." + dead);
  CHECK(loaded_task_version(dir, shape) == 1.f);
  // The next save puts its version in place and removes both leftovers.
  save_task_version(dir, shape, 3.f);
  CHECK(entries(parent) == std::vector<std::string>{"task"});
  CHECK(loaded_task_version(dir, shape) == 3.f);

  // Nothing there at all is a clear error; a folder with other content is never replaced.
  CHECK_THROWS_WITH(peft::resolve_saved_folder((fs::path(parent) / "none").string(), "task.json"),
                    Catch::Contains("holds no saved folder (no task.json)"));
  const std::string other = (fs::path(parent) / "other").string();
  fs::create_directories(other);
  peft::atomic_write((fs::path(other) / "notes.txt").string(), std::string("keep me"));
  CHECK_THROWS_WITH(save_task_version(other, shape, 4.f), Catch::Contains("refusing to replace it"));
  CHECK(peft_test::read_text((fs::path(other) / "notes.txt").string()) == "keep me");
  // A fill that fails leaves the previous version and no staging folder.
  CHECK_THROWS_WITH(peft::save_folder_atomically(dir, "task.json",
                                                 [](const std::string&) { throw peft::io_error("disk full"); }),
                    Catch::Contains("disk full"));
  CHECK(loaded_task_version(dir, shape) == 3.f);
  CHECK(entries(parent).size() == 2);  // task, other
  fs::remove_all(parent);
}
