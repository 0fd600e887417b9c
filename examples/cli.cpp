// SPDX-License-Identifier: Apache-2.0
// The command-line facade of cli.hpp over CLI11: the only file of the examples that includes it.
#include "cli.hpp"

#include <cmath>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

namespace task::cli {
namespace {

/// A number as the messages print it (no trailing zeros: 1e-06, 0.5, 1000000).
std::string show(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

/// Runs an option's callback; whatever it throws (a usage_error, std::stol's errors) becomes
/// CLI11's error for that option, so parse() reports it as a bad command line.
template <class T>
std::function<void(const T&)> reported(const std::string& name, std::function<void(const T&)> take) {
  return [name, take = std::move(take)](const T& v) {
    try {
      take(v);
    } catch (const CLI::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw CLI::ValidationError(name, e.what());
    }
  };
}

}  // namespace

validator integer(long min, long max) {
  const std::string range = max == LONG_MAX ? ">= " + std::to_string(min)
                                            : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  return {[min, max, range](const std::string& v) -> std::string {
            try {
              std::size_t used = 0;
              const long x = std::stol(v, &used);
              if (used == v.size() && x >= min && x <= max) return {};
            } catch (const std::exception&) {
            }
            return "expects an integer " + range + ", got '" + v + "'";
          },
          max == LONG_MAX ? "(>= " + std::to_string(min) + ")"
                          : "[" + std::to_string(min) + ", " + std::to_string(max) + "]"};
}

validator number(double min, double max) {
  const std::string range = "in [" + show(min) + ", " + show(max) + "]";
  return {[min, max, range](const std::string& v) -> std::string {
            try {
              std::size_t used = 0;
              const double x = std::stod(v, &used);
              if (used == v.size() && std::isfinite(x) && x >= min && x <= max) return {};
            } catch (const std::exception&) {
            }
            return "expects a number " + range + ", got '" + v + "'";
          },
          "[" + show(min) + ", " + show(max) + "]"};
}

validator one_of(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  return {[names, list](const std::string& v) -> std::string {
            for (const auto& n : names)
              if (v == n) return {};
            return "expects one of " + list + ", got '" + v + "'";
          },
          "{" + list + "}"};
}

validator name_value(const std::string& what) {
  return {[what](const std::string& v) -> std::string {
            const auto eq = v.find('=');
            if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
              return "expects " + what + ", got '" + v + "'";
            return {};
          },
          what};
}

option* option::required() {
  o_->required();
  return this;
}

option* option::group(const std::string& name) {
  o_->group(name);
  return this;
}

option* option::check(const validator& v) {
  o_->check(CLI::Validator([test = v.test](std::string& value) { return test(value); }, v.shown));
  return this;
}

app::app(const std::string& description, const std::string& name)
    : name_(name), app_(std::make_unique<CLI::App>(description, name)) {
  app_->option_defaults()->always_capture_default();
  app_->set_config("--config", "", "read options from FILE: one 'name = value' per line (long option names)");
  app_->get_formatter()->column_width(36);
}

app::~app() = default;

option* app::keep(CLI::Option* o) {
  options_.push_back(std::unique_ptr<option>(new option(o)));
  return options_.back().get();
}

option* app::add_option(const std::string& name, std::string& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, int& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, long& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, long long& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, unsigned& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, unsigned long& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, unsigned long long& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, float& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}
option* app::add_option(const std::string& name, double& target, const std::string& help) {
  return keep(app_->add_option(name, target, help));
}

option* app::add_flag(const std::string& name, bool& target, const std::string& help) {
  return keep(app_->add_flag(name, target, help));
}

option* app::add_option_function(const std::string& name, std::function<void(const std::string&)> take,
                                 const std::string& help) {
  return keep(
      app_->add_option_function<std::string>(name, reported<std::string>(name, std::move(take)), help));
}

option* app::add_repeated(const std::string& name, std::function<void(const std::vector<std::string>&)> take,
                          const std::string& help) {
  auto* o = app_->add_option_function<std::vector<std::string>>(
      name, reported<std::vector<std::string>>(name, std::move(take)), help);
  o->allow_extra_args(false);
  return keep(o);
}

void app::footer(const std::string& text) { app_->footer(text); }

std::size_t app::count(const std::string& name) const { return app_->count(name); }

int app::parse(int argc, char** argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app_->help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << name_ << ": " << e.what() << "\n(" << name_ << " --help lists the options)\n";
    return 2;
  }
  return -1;
}

int guarded(const std::string& name, const std::function<int()>& body) {
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

}  // namespace task::cli
