// SPDX-License-Identifier: Apache-2.0
// The command-line layer the example programs share (CLI11): --help lists every option with
// its default, --config FILE reads options from a file (one `name = value` per line, the
// option's long name without dashes), values are checked with one-line messages naming the
// option and what it accepts, and run() turns a bad command line into exit status 2 and any
// other error into 1, each reported as one line on stderr.
#ifndef PEFT_EXAMPLES_CLI_HPP
#define PEFT_EXAMPLES_CLI_HPP

#include <climits>
#include <cmath>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <peft/task/task.hpp>

namespace task {

/// A bad command line, found after parsing (options that do not fit together, or that the
/// model or a folder rejects): the programs print it and exit with status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace cli {

/// A number as the messages print it (no trailing zeros: 1e-06, 0.5, 1000000).
inline std::string show(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

/// Accepts an integer in [min, max]: "expects an integer >= 1, got '0'".
inline CLI::Validator integer(long min, long max = LONG_MAX) {
  const std::string range = max == LONG_MAX ? ">= " + std::to_string(min)
                                            : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  return CLI::Validator(
      [min, max, range](std::string& v) -> std::string {
        try {
          std::size_t used = 0;
          const long x = std::stol(v, &used);
          if (used == v.size() && x >= min && x <= max) return {};
        } catch (const std::exception&) {
        }
        return "expects an integer " + range + ", got '" + v + "'";
      },
      max == LONG_MAX ? "(>= " + std::to_string(min) + ")" : "[" + std::to_string(min) + ", " + std::to_string(max) + "]");
}

/// Accepts a finite number in [min, max]: "expects a number in [0, 1], got '2'".
inline CLI::Validator number(double min, double max) {
  const std::string range = "in [" + show(min) + ", " + show(max) + "]";
  return CLI::Validator(
      [min, max, range](std::string& v) -> std::string {
        try {
          std::size_t used = 0;
          const double x = std::stod(v, &used);
          if (used == v.size() && std::isfinite(x) && x >= min && x <= max) return {};
        } catch (const std::exception&) {
        }
        return "expects a number " + range + ", got '" + v + "'";
      },
      "[" + show(min) + ", " + show(max) + "]");
}

/// Accepts one of @p names: "expects one of cls, mean, pooler, got 'max'".
inline CLI::Validator one_of(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  return CLI::Validator(
      [names, list](std::string& v) -> std::string {
        for (const auto& n : names)
          if (v == n) return {};
        return "expects one of " + list + ", got '" + v + "'";
      },
      "{" + list + "}");
}

/// Accepts `NAME=VALUE` with both parts non-empty.
inline CLI::Validator name_value(const std::string& what = "NAME=VALUE") {
  return CLI::Validator(
      [what](std::string& v) -> std::string {
        const auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) return "expects " + what + ", got '" + v + "'";
        return {};
      },
      what);
}

/// Settings every program's app shares: defaults shown in --help, --config FILE.
inline void setup(CLI::App& app) {
  app.option_defaults()->always_capture_default();
  app.set_config("--config", "", "read options from FILE: one 'name = value' per line (long option names)");
  app.get_formatter()->column_width(36);
}

/// Parses the command line into @p app. Returns -1 when the program should go on, else its exit
/// status: 0 after --help, 2 for a bad command line (one line on stderr, then a pointer to --help).
inline int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\n(" << app.get_name() << " --help lists the options)\n";
    return 2;
  }
  return -1;
}

/// Runs @p body: its return value is the exit status; a usage_error exits with 2, any other
/// exception with 1, each as one line on stderr.
inline int guarded(const std::string& name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const usage_error& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

/// parse, then guarded(body): the whole `main` of a program.
inline int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  const int rc = parse(app, argc, argv);
  return rc >= 0 ? rc : guarded(app.get_name(), body);
}

using peft::task::split_list;  // "a,,b" -> {"a", "b"}

}  // namespace cli
}  // namespace task

#endif
