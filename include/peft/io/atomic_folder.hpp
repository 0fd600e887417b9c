// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_IO_ATOMIC_FOLDER_HPP
#define PEFT_IO_ATOMIC_FOLDER_HPP

/// @file atomic_folder.hpp
/// Saving a whole folder as one unit (a task: policy, head, labels, settings).
///
/// `save_folder_atomically(dir, fill)` lets `fill` write every file into a staging folder next
/// to @p dir (`<dir>.staging.<pid>`), flushes the files and the folder to disk, and then puts
/// the staging folder in @p dir's place:
///
/// - on Linux with `renameat2(RENAME_EXCHANGE)` the two folders swap names in one atomic step,
///   and the old one (now under the staging name) is removed: at every instant @p dir names a
///   complete version;
/// - elsewhere (or on a file system without the exchange) @p dir is renamed to
///   `<dir>.previous.<pid>`, then the staging folder to @p dir. A kill between the two renames
///   leaves no @p dir, the previous version intact under its `.previous.` name and the new one
///   complete under its `.staging.` name.
///
/// `resolve_saved_folder(dir, marker)` is what a loader opens: @p dir when it holds
/// @p marker, else the newest intact `.previous.` version an interrupted swap left, so a kill
/// at any point leaves the previous save loadable. The next successful save removes what
/// killed saves left behind (staging and previous folders of processes that no longer run).
/// One writer per folder.
///
/// A save refuses to replace a folder that is not one of its own saves (it does not hold
/// @p marker and is not empty): `--save .` must not swap away a working directory.

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "../error.hpp"
#include "../core/file_util.hpp"

namespace peft {

namespace detail {

/// fsync of a folder (its entries), best effort where the platform refuses it.
inline void fsync_folder(const std::string& dir, const char* where) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    throw io_error(std::string(where) + ": cannot open folder '" + dir + "': " + errno_string(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EROFS)
    throw io_error(std::string(where) + ": cannot flush folder '" + dir + "': " + errno_string(err));
}

/// Parent folder of @p path ("." for a bare name).
inline std::string parent_folder(const std::string& path) {
  const auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

/// Exchanges two existing paths atomically; false where the platform or file system cannot.
inline bool exchange_paths(const std::string& a, const std::string& b) {
#if defined(__linux__) && defined(RENAME_EXCHANGE)
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return true;
  if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) return false;
  throw io_error("save_folder_atomically: cannot exchange '" + a + "' and '" + b +
                 "': " + errno_string(errno));
#else
  (void)a;
  (void)b;
  return false;
#endif
}

/// Siblings `<dir><tag><pid>` left by saves of processes that no longer run (tag ".staging."
/// or ".previous."), newest modification first.
inline std::vector<std::filesystem::path> stale_siblings(const std::string& dir, const std::string& tag) {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  const fs::path d(dir);
  const std::string prefix = d.filename().string() + tag;
  std::error_code ec;
  const fs::path parent = d.parent_path().empty() ? fs::path(".") : d.parent_path();
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid == std::to_string(process_id()) || !process_alive(pid)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    std::error_code e1, e2;
    return fs::last_write_time(a, e1) > fs::last_write_time(b, e2);
  });
  return out;
}

}  // namespace detail

/// The folder a loader should open for the save in @p dir: @p dir when it holds @p marker,
/// else the intact previous version an interrupted save left (see the file comment).
/// @throws io_error naming @p dir and @p marker when neither exists
inline std::string resolve_saved_folder(const std::string& dir, const std::string& marker) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(dir) / marker, ec)) return dir;
  for (const auto& p : detail::stale_siblings(dir, ".previous."))
    if (fs::exists(p / marker, ec)) return p.string();
  throw io_error("'" + dir + "' holds no saved folder (no " + marker + ")");
}

/// Writes folder @p dir as one unit: `fill(staging)` writes every file into the folder it is
/// given, then that folder replaces @p dir (see the file comment). @p marker is a file every
/// save holds (e.g. "task.json"); an existing non-empty @p dir without it is refused.
/// @throws io_error when @p dir is not replaceable or a step fails (a previous save in @p dir
///   is then unchanged, and the staging folder removed); whatever @p fill throws, likewise
template <typename Fill>
void save_folder_atomically(const std::string& dir, const std::string& marker, Fill&& fill) {
  namespace fs = std::filesystem;
  constexpr const char* where = "save_folder_atomically";
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  if (existed) {
    if (!fs::is_directory(dir, ec))
      throw io_error(std::string(where) + ": '" + dir + "' exists and is not a folder");
    if (!fs::exists(fs::path(dir) / marker, ec) && !fs::is_empty(dir, ec))
      throw io_error(std::string(where) + ": '" + dir + "' is a folder with other content (no " + marker +
                     "); refusing to replace it");
  }
  const std::string pid = std::to_string(detail::process_id());
  const std::string staging = dir + ".staging." + pid;
  const std::string previous = dir + ".previous." + pid;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) throw io_error(std::string(where) + ": cannot create '" + staging + "': " + ec.message());
  try {
    fill(staging);
    if (!fs::exists(fs::path(staging) / marker, ec))
      throw io_error(std::string(where) + ": the save wrote no " + marker + " into '" + staging + "'");
    detail::fsync_folder(staging, where);
    if (existed && detail::exchange_paths(staging, dir)) {
      detail::fsync_folder(detail::parent_folder(dir), where);
      fs::remove_all(staging, ec);  // the old version, now under the staging name
    } else {
      if (existed) {
        fs::rename(dir, previous, ec);
        if (ec) throw io_error(std::string(where) + ": cannot move '" + dir + "' aside: " + ec.message());
      }
      fs::rename(staging, dir, ec);
      if (ec) {
        const std::string msg = ec.message();
        if (existed) fs::rename(previous, dir, ec);
        throw io_error(std::string(where) + ": cannot move '" + staging + "' to '" + dir + "': " + msg);
      }
      detail::fsync_folder(detail::parent_folder(dir), where);
      fs::remove_all(previous, ec);
    }
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
  // The save is in place: drop what killed saves left behind.
  for (const char* tag : {".staging.", ".previous."})
    for (const auto& p : detail::stale_siblings(dir, tag)) fs::remove_all(p, ec);
}

}  // namespace peft

#endif  // PEFT_IO_ATOMIC_FOLDER_HPP
