// SPDX-License-Identifier: Apache-2.0
#ifndef PEFT_TRAIN_PROGRESS_HPP
#define PEFT_TRAIN_PROGRESS_HPP

/// @file progress.hpp
/// Training progress for people and for tools: a one-line bar redrawn in place when the
/// stream is a terminal (steps, loss, examples/s, ETA, plus any extra fields), plain log
/// lines otherwise; and a CSV log of the training curve.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../core/file_util.hpp"

namespace peft {

class progress {
public:
  /// @param total     steps expected (0 if unknown)
  /// @param out       stream to write to (stdout by default)
  /// @param every     without a terminal, print a line every `every` steps (and the last)
  explicit progress(std::string label, long total, std::FILE* out = stdout, long every = 50)
      : m_label(std::move(label)), m_total(total), m_out(out), m_every(every > 0 ? every : 1),
        m_tty(::isatty(::fileno(out)) == 1), m_start(clock::now()) {}

  /// Records step `step` (1-based) that saw `examples` examples; `fields` are extra
  /// name/value pairs shown after the loss (e.g. session, phase, kept share).
  void update(long step, double loss, long examples, const std::vector<std::pair<std::string, std::string>>& fields = {}) {
    m_examples += examples;
    const double secs = std::chrono::duration<double>(clock::now() - m_start).count();
    const double rate = secs > 0 ? double(m_examples) / secs : 0.0;
    const double eta = (m_total > 0 && step > 0) ? secs / double(step) * double(m_total - step) : 0.0;
    std::string extra;
    for (const auto& f : fields) extra += "  " + f.first + " " + f.second;
    if (m_tty) {
      const int width = 24;
      const int filled = m_total > 0 ? int(double(width) * double(step) / double(m_total)) : 0;
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(width, '.');
      std::fprintf(m_out, "\r%s [%s] %ld/%ld  loss %.4f  %.0f ex/s  ETA %s%s\x1b[K", m_label.c_str(), bar.c_str(), step,
                   m_total, loss, rate, format_seconds(eta).c_str(), extra.c_str());
      if (m_total > 0 && step >= m_total) std::fprintf(m_out, "\n");
      std::fflush(m_out);
    } else if (step % m_every == 0 || (m_total > 0 && step >= m_total)) {
      std::fprintf(m_out, "%s step %ld/%ld loss %.4f %.0f ex/s eta %s%s\n", m_label.c_str(), step, m_total, loss, rate,
                   format_seconds(eta).c_str(), extra.c_str());
      std::fflush(m_out);
    }
  }
  /// Ends the bar's line (terminal) so later output starts on a fresh line.
  void finish() {
    if (m_tty) std::fprintf(m_out, "\n");
  }
  double seconds() const { return std::chrono::duration<double>(clock::now() - m_start).count(); }
  long examples() const noexcept { return m_examples; }

  static std::string format_seconds(double s) {
    const long t = static_cast<long>(s + 0.5);
    char buf[32];
    if (t >= 3600)
      std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
      std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
    return buf;
  }

private:
  using clock = std::chrono::steady_clock;
  std::string m_label;
  long m_total;
  std::FILE* m_out;
  long m_every;
  bool m_tty;
  clock::time_point m_start;
  long m_examples = 0;
};

/// Writes a training curve to a CSV file with a fixed header, one row at a time. Each row
/// rewrites the whole (small) file through `atomic_write`, so a crash or kill leaves the
/// previous complete curve, never a torn line; the previous file stays until the first write.
class csv_log {
public:
  csv_log() = default;
  /// @throws peft::io_error naming @p path if it cannot be written
  csv_log(const std::string& path, std::vector<std::string> columns) : m_path(path), m_columns(std::move(columns)) {
    for (std::size_t i = 0; i < m_columns.size(); ++i) m_text += (i ? "," : "") + m_columns[i];
    m_text += "\n";
    atomic_write(m_path, m_text);
  }
  /// Continues a log whose text so far is @p text (a resumed run), rewriting @p path with it.
  /// @throws peft::invalid_argument if @p text does not start with the header of @p columns
  csv_log(const std::string& path, std::vector<std::string> columns, const std::string& text)
      : csv_log() {
    csv_log fresh(path, std::move(columns));
    if (text.compare(0, fresh.m_text.size(), fresh.m_text) != 0)
      throw invalid_argument("csv_log: saved curve for '" + path + "' expected to start with header '" +
                             fresh.m_text.substr(0, fresh.m_text.size() - 1) + "'");
    fresh.m_text = text;
    atomic_write(path, text);
    *this = std::move(fresh);
  }
  bool is_open() const { return !m_path.empty(); }
  /// Header and rows written so far.
  const std::string& text() const noexcept { return m_text; }
  /// @throws peft::invalid_argument for a row of the wrong width; peft::io_error if the
  ///   write fails (the file then holds the rows before this one)
  void row(const std::vector<std::string>& values) {
    if (m_path.empty()) return;
    if (values.size() != m_columns.size())
      throw invalid_argument("csv_log::row: columns expected " + std::to_string(m_columns.size()) + ", got " +
                             std::to_string(values.size()));
    std::string line;
    for (std::size_t i = 0; i < values.size(); ++i) line += (i ? "," : "") + values[i];
    atomic_write(m_path, m_text + line + "\n");
    m_text += line + "\n";
  }

private:
  std::string m_path;
  std::vector<std::string> m_columns;
  std::string m_text;
};

}  // namespace peft

#endif  // PEFT_TRAIN_PROGRESS_HPP
