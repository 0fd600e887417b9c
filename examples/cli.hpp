// SPDX-License-Identifier: Apache-2.0
// The command-line layer the example programs share: --help lists every option with its default,
// --config FILE reads options from a file (one `name = value` per line, the option's long name
// without dashes), values are checked with one-line messages naming the option and what it
// accepts, and run() turns a bad command line into exit status 2 and any other error into 1,
// each reported as one line on stderr.
//
// CLI11 does the parsing, behind this small facade compiled once (cli.cpp): the programs never
// include CLI11, whose header-only build cost each of them 30-45 s of compile time.
#ifndef PEFT_EXAMPLES_CLI_HPP
#define PEFT_EXAMPLES_CLI_HPP

#include <climits>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace task {

/// A bad command line, found after parsing (options that do not fit together, or that the
/// model or a folder rejects), or by an option's own callback: the programs print it and exit
/// with status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace cli {

/// A check of one option value: test() returns "" when the value is accepted, else what is
/// wrong with it ("expects an integer >= 1, got '0'"); shown is what --help prints for it.
struct validator {
  std::function<std::string(const std::string&)> test;
  std::string shown;
};

validator integer(long min, long max = LONG_MAX);              ///< an integer in [min, max]
validator number(double min, double max);                      ///< a finite number in [min, max]
validator one_of(const std::vector<std::string>& names);       ///< one of @p names
validator name_value(const std::string& what = "NAME=VALUE");  ///< NAME=VALUE, both parts non-empty

/// One option of an app; its setters return this, so they chain as CLI11's do.
class option {
public:
  option* required();
  option* group(const std::string& name);  ///< the heading --help lists it under
  option* check(const validator& v);

private:
  friend class app;
  explicit option(CLI::Option* o) : o_(o) {}
  CLI::Option* o_;
};

/// A program's command line.
class app {
public:
  app(const std::string& description, const std::string& name);
  ~app();
  app(const app&) = delete;
  app& operator=(const app&) = delete;

  /// An option storing its value in @p target (a name without dashes is positional).
  option* add_option(const std::string& name, std::string& target, const std::string& help);
  option* add_option(const std::string& name, int& target, const std::string& help);
  option* add_option(const std::string& name, long& target, const std::string& help);
  option* add_option(const std::string& name, long long& target, const std::string& help);
  option* add_option(const std::string& name, unsigned& target, const std::string& help);
  option* add_option(const std::string& name, unsigned long& target, const std::string& help);
  option* add_option(const std::string& name, unsigned long long& target, const std::string& help);
  option* add_option(const std::string& name, float& target, const std::string& help);
  option* add_option(const std::string& name, double& target, const std::string& help);
  /// A flag without a value.
  option* add_flag(const std::string& name, bool& target, const std::string& help);
  /// An option with one value, handed to @p take (after the checks).
  option* add_option_function(const std::string& name, std::function<void(const std::string&)> take,
                              const std::string& help);
  /// A repeatable option, one value per use (`--task a=x --task b=y`); @p take receives them all.
  option* add_repeated(const std::string& name, std::function<void(const std::vector<std::string>&)> take,
                       const std::string& help);
  void footer(const std::string& text);

  /// How many times option @p name was given.
  std::size_t count(const std::string& name) const;
  const std::string& name() const { return name_; }

  /// Parses the command line. Returns -1 when the program should go on, else its exit status:
  /// 0 after --help, 2 for a bad command line (one line on stderr, then a pointer to --help).
  /// A usage_error thrown by an option's callback counts as a bad command line.
  int parse(int argc, char** argv);

private:
  option* keep(CLI::Option* o);
  std::string name_;
  std::unique_ptr<CLI::App> app_;
  std::vector<std::unique_ptr<option>> options_;
};

/// Runs @p body: its return value is the exit status; a usage_error exits with 2, any other
/// exception with 1, each as one line on stderr.
int guarded(const std::string& name, const std::function<int()>& body);

/// parse, then guarded(body): the whole `main` of a program.
inline int run(app& a, int argc, char** argv, const std::function<int()>& body) {
  const int rc = a.parse(argc, argv);
  return rc >= 0 ? rc : guarded(a.name(), body);
}

}  // namespace cli
}  // namespace task

#endif
