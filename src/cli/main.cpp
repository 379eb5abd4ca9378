// netsor: the command line. Exit codes: 0 ok, 1 error in the user's program,
// 2 usage error.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "netsor/frontend.hpp"
#include "netsor/ir.hpp"
#include "netsor/limit.hpp"
#include "report.hpp"

namespace {

constexpr int kOk = 0, kProgramError = 1, kUsageError = 2;

bool use_color() { return isatty(fileno(stderr)) && !std::getenv("NO_COLOR"); }

void print_error(const netsor::Diagnostic& d) {
  std::string text = netsor::format(d);
  if (use_color()) {
    auto at = text.find("error:");
    if (at != std::string::npos) text.replace(at, 6, "\033[1;31merror:\033[0m");
  }
  std::cerr << text;
}

struct Common {
  std::string file;
  bool json = false;
  std::vector<std::string> defines;
};

void add_common(CLI::App* sub, Common& c) {
  sub->add_option("file", c.file, "the .tp program")->required();
  sub->add_flag("--json", c.json, "machine-readable output");
  sub->add_option("-D,--define", c.defines, "NAME=value: set a constant (overrides `const NAME = ...`)");
}

netsor::FrontendOptions options_of(const Common& c) {
  netsor::FrontendOptions o;
  for (const auto& d : c.defines) {
    auto eq = d.find('=');
    if (eq == std::string::npos || eq == 0) throw CLI::ValidationError("-D", "expected NAME=value, got '" + d + "'");
    try {
      std::size_t used = 0;
      double v = std::stod(d.substr(eq + 1), &used);
      if (used != d.size() - eq - 1) throw std::invalid_argument("trailing");
      o.defines[d.substr(0, eq)] = v;
    } catch (const std::exception&) {
      throw CLI::ValidationError("-D", "the value of '" + d.substr(0, eq) + "' is not a number");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netsor: tensor programs, their infinite-width limits, and finite-width checks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "netsor 0.1.0");

  Common check_o, print_o;
  auto* check = app.add_subcommand("check", "parse and type-check a program (exit 0 if valid, 1 with errors)");
  add_common(check, check_o);
  auto* print = app.add_subcommand("print", "print the lowered IR (variables, Gaussian families, instructions)");
  add_common(print, print_o);

  Common limit_o, derive_o;
  bool force_quadrature = false, latex = false;
  auto* limit = app.add_subcommand("limit", "the infinite-width limit of every report, with error estimate and method");
  add_common(limit, limit_o);
  limit->add_flag("--force-quadrature", force_quadrature,
                  "skip closed forms and exact Gaussian algebra (to cross-check the generic path)");
  auto* derive = app.add_subcommand("derive", "the derived theory: every Z, Gaussian family and scalar limit");
  add_common(derive, derive_o);
  derive->add_flag("--latex", latex, "LaTeX instead of plain text");
  double tol = 1e-12;
  limit->add_option("--tol", tol, "relative accuracy target of the quadrature rules")
      ->check(CLI::Range(1e-15, 1e-2))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kUsageError;
  }

  try {
    if (check->parsed()) {
      auto prog = netsor::compile_file(check_o.file, options_of(check_o));
      if (check_o.json) {
        std::cout << nlohmann::json{{"ok", true}, {"vars", prog.vars.size()}, {"instructions", prog.instrs.size()},
                                    {"reports", prog.reports.size()}}
                         .dump(2)
                  << "\n";
      } else {
        std::cout << check_o.file << ": ok (" << prog.vars.size() << " variables, " << prog.instrs.size()
                  << " instructions, " << prog.reports.size() << " reports)\n";
      }
      return kOk;
    }
    if (limit->parsed()) {
      auto prog = netsor::compile_file(limit_o.file, options_of(limit_o));
      netsor::limit::Options lo;
      lo.force_quadrature = force_quadrature;
      lo.tol = tol;
      auto res = netsor::limit::compute(prog, lo);
      if (limit_o.json) std::cout << netsor::cli::limit_json(res).dump(2) << "\n";
      else std::cout << netsor::cli::limit_table(limit_o.file, res);
      return kOk;
    }
    if (derive->parsed()) {
      auto prog = netsor::compile_file(derive_o.file, options_of(derive_o));
      auto res = netsor::limit::compute(prog);
      if (derive_o.json) std::cout << netsor::cli::derive_json(prog, res).dump(2) << "\n";
      else std::cout << netsor::cli::derive_text(prog, res, latex);
      return kOk;
    }
    if (print->parsed()) {
      auto prog = netsor::compile_file(print_o.file, options_of(print_o));
      if (print_o.json) std::cout << netsor::ir::to_json(prog).dump(2) << "\n";
      else std::cout << netsor::ir::to_text(prog);
      return kOk;
    }
  } catch (const netsor::ProgramError& e) {
    print_error(e.diagnostic());
    return kProgramError;
  } catch (const CLI::ValidationError& e) {
    std::cerr << "netsor: " << e.what() << "\n";
    return kUsageError;
  } catch (const std::bad_alloc&) {
    std::cerr << "netsor: out of memory\n";
    return kProgramError;
  } catch (const std::exception& e) {
    std::cerr << "netsor: internal error: " << e.what() << "\n";
    return kProgramError;
  }
  return kUsageError;
}
