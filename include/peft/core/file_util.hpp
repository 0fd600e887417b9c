// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_CORE_FILE_UTIL_HPP
#define PEFT_CORE_FILE_UTIL_HPP

/// @file file_util.hpp
/// Whole-file binary reads, read-only memory maps and crash-safe writes. Every peft writer
/// saves through `atomic_file_writer`: the bytes go to `path + ".tmp.<pid>"`, are flushed to
/// disk with `fsync`, and only then renamed over `path`. A save that fails at any point removes
/// its temporary file and leaves the previous contents of `path` untouched.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define PEFT_IO_POSIX 1
#else
#include <filesystem>
#include <process.h>
#define PEFT_IO_POSIX 0
#endif

#include "../error.hpp"

namespace peft {
namespace detail {

/// `strerror(errno)` as a string, for error messages.
inline std::string errno_string(int err) { return std::string(std::strerror(err)); }

/// Identifier of this process, used to name temporary files.
inline long process_id() noexcept {
#if PEFT_IO_POSIX
  return static_cast<long>(::getpid());
#else
  return static_cast<long>(::_getpid());
#endif
}

/// Whether the process whose decimal id is @p pid still exists (true when unsure, so that
/// callers never delete a live writer's temporary file).
inline bool process_alive(const std::string& pid) noexcept {
  if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) return true;
#if PEFT_IO_POSIX
  const auto id = static_cast<::pid_t>(std::stol(pid));
  return id <= 0 || ::kill(id, 0) == 0 || errno != ESRCH;
#else
  return true;
#endif
}

/// Reads a whole file in binary mode.
/// @param path file to read
/// @param where function name that prefixes error messages
/// @throws peft::io_error naming @p path if the file cannot be opened or read
inline std::string read_file(const std::string& path, const char* where = "peft::detail::read_file") {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw io_error(std::string(where) + ": cannot open '" + path + "' for reading");
  const std::streamoff size = in.tellg();
  if (size < 0) throw io_error(std::string(where) + ": cannot determine the size of '" + path + "'");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  if (size > 0 && !in.read(&bytes[0], static_cast<std::streamsize>(size)))
    throw io_error(std::string(where) + ": read of '" + path + "' failed after " +
                   std::to_string(in.gcount()) + " of " + std::to_string(size) + " bytes");
  return bytes;
}

/// Size of a file in bytes.
/// @throws peft::io_error naming @p path if it cannot be opened
/// True if @p path names a file this process can open for reading.
inline bool file_exists(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return f.good();
}

inline std::uint64_t file_size(const std::string& path, const char* where = "peft::detail::file_size") {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw io_error(std::string(where) + ": cannot open '" + path + "' for reading");
  const std::streamoff size = in.tellg();
  if (size < 0) throw io_error(std::string(where) + ": cannot determine the size of '" + path + "'");
  return static_cast<std::uint64_t>(size);
}

/// A whole file mapped read-only (`PROT_READ`, private), for readers that look at parts of a
/// large file: nothing is read until a page is touched, and the mapping can never write back.
/// Off POSIX the file is read into memory instead. Not copyable; movable.
///
/// A mapped file that another process truncates makes later reads of the lost pages fault
/// (SIGBUS); `check_unchanged()` compares the file's size and modification time with those
/// seen at open, so readers can call it before touching the data.
class mapped_file {
public:
  /// Opens and maps @p path.
  /// @throws peft::io_error naming @p path if it cannot be opened, inspected or mapped
  explicit mapped_file(std::string path, const char* where = "peft::detail::mapped_file") : m_path(std::move(path)) {
#if PEFT_IO_POSIX
    m_fd = ::open(m_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (m_fd < 0) {
      const int err = errno;
      throw io_error(std::string(where) + ": cannot open '" + m_path + "' for reading: " + errno_string(err));
    }
    struct ::stat st;
    if (::fstat(m_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(m_fd);
      throw io_error(std::string(where) + ": '" + m_path + "' is not a regular file");
    }
    m_size = static_cast<std::uint64_t>(st.st_size);
    m_mtime_ns = mtime_ns(st);
    if (m_size > 0) {
      void* p = ::mmap(nullptr, static_cast<std::size_t>(m_size), PROT_READ, MAP_PRIVATE, m_fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(m_fd);
        throw io_error(std::string(where) + ": cannot map '" + m_path + "': " + errno_string(err));
      }
      m_data = static_cast<const unsigned char*>(p);
    }
#else
    m_copy = read_file(m_path, where);
    m_size = m_copy.size();
    m_data = reinterpret_cast<const unsigned char*>(m_copy.data());
#endif
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& other) noexcept
      : m_path(std::move(other.m_path)),
        m_data(std::exchange(other.m_data, nullptr)),
        m_size(std::exchange(other.m_size, 0)),
#if PEFT_IO_POSIX
        m_fd(std::exchange(other.m_fd, -1)),
        m_mtime_ns(other.m_mtime_ns) {
  }
#else
        m_copy(std::move(other.m_copy)) {
    m_data = reinterpret_cast<const unsigned char*>(m_copy.data());
  }
#endif
  mapped_file& operator=(mapped_file&&) = delete;
  ~mapped_file() {
#if PEFT_IO_POSIX
    if (m_data) ::munmap(const_cast<unsigned char*>(m_data), static_cast<std::size_t>(m_size));
    if (m_fd >= 0) ::close(m_fd);
#endif
  }

  /// First byte (nullptr for an empty file).
  const unsigned char* data() const noexcept { return m_data; }
  /// Size in bytes when opened.
  std::uint64_t size() const noexcept { return m_size; }
  const std::string& path() const noexcept { return m_path; }

  /// @throws peft::io_error naming the file if its size or modification time changed since it
  ///   was opened (reading it then could fault or return a mix of old and new bytes)
  void check_unchanged(const char* where) const {
#if PEFT_IO_POSIX
    struct ::stat st;
    if (::fstat(m_fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) != m_size || mtime_ns(st) != m_mtime_ns)
      throw io_error(std::string(where) + ": '" + m_path + "' changed since it was opened (" +
                     std::to_string(m_size) + " bytes then, " + std::to_string(static_cast<long long>(st.st_size)) +
                     " now)");
#else
    (void)where;
#endif
  }

private:
#if PEFT_IO_POSIX
  static long long mtime_ns(const struct ::stat& st) noexcept {
#if defined(__APPLE__)
    return static_cast<long long>(st.st_mtimespec.tv_sec) * 1000000000LL + st.st_mtimespec.tv_nsec;
#else
    return static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
#endif
  }
#endif

  std::string m_path;
  const unsigned char* m_data = nullptr;
  std::uint64_t m_size = 0;
#if PEFT_IO_POSIX
  int m_fd = -1;
  long long m_mtime_ns = 0;
#else
  std::string m_copy;
#endif
};

}  // namespace detail

/// Writes one file so that readers see either the old contents or the complete new ones.
///
/// Bytes are written to `path + ".tmp.<pid>"`; `commit()` flushes them to disk (fsync),
/// closes the file and renames it over `path`. If `commit()` is never reached (an exception,
/// an early return) the destructor deletes the temporary file, so the previous `path` stays.
/// Not copyable; movable.
class atomic_file_writer {
public:
  /// Creates (truncating) the temporary file next to @p path.
  /// @throws peft::io_error naming the temporary file if it cannot be created
  explicit atomic_file_writer(std::string path)
      : m_path(std::move(path)), m_tmp(m_path + ".tmp." + std::to_string(detail::process_id())) {
#if PEFT_IO_POSIX
    m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (m_fd < 0) {
      const int err = errno;
      throw io_error("atomic_file_writer: cannot create temporary file '" + m_tmp + "' for '" + m_path +
                     "': " + detail::errno_string(err));
    }
#else
    m_file = std::fopen(m_tmp.c_str(), "wb");
    if (!m_file)
      throw io_error("atomic_file_writer: cannot create temporary file '" + m_tmp + "' for '" + m_path + "'");
#endif
  }

  atomic_file_writer(const atomic_file_writer&) = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;
  atomic_file_writer(atomic_file_writer&& other) noexcept
      : m_path(std::move(other.m_path)), m_tmp(std::move(other.m_tmp)) {
#if PEFT_IO_POSIX
    m_fd = std::exchange(other.m_fd, -1);
#else
    m_file = std::exchange(other.m_file, nullptr);
#endif
    m_done = std::exchange(other.m_done, true);
  }
  atomic_file_writer& operator=(atomic_file_writer&&) = delete;

  /// Removes the temporary file unless `commit()` succeeded.
  ~atomic_file_writer() { abandon(); }

  /// Appends @p size bytes.
  /// @throws peft::io_error naming the target if the write fails (disk full, ...)
  void write(const void* data, std::size_t size) {
    if (m_done) throw io_error("atomic_file_writer::write: '" + m_path + "' was already committed");
    const char* p = static_cast<const char*>(data);
#if PEFT_IO_POSIX
    while (size > 0) {
      const ::ssize_t n = ::write(m_fd, p, size);
      if (n < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        abandon();
        throw io_error("atomic_file_writer::write: writing '" + m_tmp + "' failed: " + detail::errno_string(err));
      }
      p += n;
      size -= static_cast<std::size_t>(n);
    }
#else
    if (size > 0 && std::fwrite(p, 1, size, m_file) != size) {
      abandon();
      throw io_error("atomic_file_writer::write: writing '" + m_tmp + "' failed");
    }
#endif
  }
  /// Appends a string's bytes.
  void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }

  /// Flushes to disk, closes and renames the temporary file over the target.
  /// @throws peft::io_error naming the target if any step fails; the target is then unchanged
  void commit() {
    if (m_done) throw io_error("atomic_file_writer::commit: '" + m_path + "' was already committed");
#if PEFT_IO_POSIX
    if (::fsync(m_fd) != 0) {
      const int err = errno;
      abandon();
      throw io_error("atomic_file_writer::commit: fsync of '" + m_tmp + "' failed: " + detail::errno_string(err));
    }
    const int fd = std::exchange(m_fd, -1);
    if (::close(fd) != 0) {
      const int err = errno;
      abandon();
      throw io_error("atomic_file_writer::commit: close of '" + m_tmp + "' failed: " + detail::errno_string(err));
    }
    if (std::rename(m_tmp.c_str(), m_path.c_str()) != 0) {
      const int err = errno;
      abandon();
      throw io_error("atomic_file_writer::commit: cannot rename '" + m_tmp + "' to '" + m_path +
                     "': " + detail::errno_string(err));
    }
    m_done = true;
    sync_parent_directory();
#else
    std::FILE* f = std::exchange(m_file, nullptr);
    if (std::fflush(f) != 0 || std::fclose(f) != 0) {
      abandon();
      throw io_error("atomic_file_writer::commit: flushing '" + m_tmp + "' failed");
    }
    std::error_code ec;
    std::filesystem::rename(m_tmp, m_path, ec);
    if (ec) {
      abandon();
      throw io_error("atomic_file_writer::commit: cannot rename '" + m_tmp + "' to '" + m_path + "': " +
                     ec.message());
    }
    m_done = true;
#endif
  }

  /// Target path.
  const std::string& path() const noexcept { return m_path; }
  /// Temporary path the bytes go to before `commit()`.
  const std::string& temporary_path() const noexcept { return m_tmp; }

private:
  /// Closes and deletes the temporary file; never throws.
  void abandon() noexcept {
    if (m_done) return;
#if PEFT_IO_POSIX
    if (m_fd >= 0) ::close(std::exchange(m_fd, -1));
#else
    if (m_file) std::fclose(std::exchange(m_file, nullptr));
#endif
    std::remove(m_tmp.c_str());
    m_done = true;
  }

#if PEFT_IO_POSIX
  /// Makes the rename itself durable; failures here do not undo a completed save.
  void sync_parent_directory() const noexcept {
    const auto slash = m_path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? std::string(".") : m_path.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }
#endif

  std::string m_path;
  std::string m_tmp;
#if PEFT_IO_POSIX
  int m_fd = -1;
#else
  std::FILE* m_file = nullptr;
#endif
  bool m_done = false;
};

/// Replaces @p path with @p bytes atomically (see `atomic_file_writer`).
/// @throws peft::io_error naming the file; on failure the previous file is unchanged
inline void atomic_write(const std::string& path, const void* data, std::size_t size) {
  atomic_file_writer w(path);
  w.write(data, size);
  w.commit();
}

/// Replaces @p path with @p bytes atomically (see `atomic_file_writer`).
/// @throws peft::io_error naming the file; on failure the previous file is unchanged
inline void atomic_write(const std::string& path, const std::string& bytes) {
  atomic_write(path, bytes.data(), bytes.size());
}

}  // namespace peft

#endif  // PEFT_CORE_FILE_UTIL_HPP
