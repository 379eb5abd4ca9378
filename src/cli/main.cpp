// netsor: the command line. Exit codes: 0 ok, 1 error in the user's program,
// 2 usage error.
#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "netsor/frontend.hpp"
#include "netsor/ir.hpp"
#include "netsor/abc.hpp"
#include "netsor/converge.hpp"
#include "netsor/exec.hpp"
#include "netsor/limit.hpp"
#include "coordcheck.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "sweep.hpp"
#include "spectrum.hpp"

namespace {

using netsor::cli::finite_number;
using netsor::cli::Progress;

constexpr int kOk = 0, kProgramError = 1, kUsageError = 2, kInternalError = 3;

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
  sub->add_option("-D,--define", c.defines,
                  "NAME=value: set a constant (overrides `const NAME = ...`); limit, run and converge also sweep "
                  "NAME=a,b,c or NAME=FROM:TO:COUNT[:log] (several make a grid)")
      // One NAME=value per -D, repeatable: otherwise `-D a=1 prog.tp` would take
      // the file as a second definition.
      ->allow_extra_args(false);
}

// CLI11 range checks let nan through (every comparison with it is false).
const CLI::Validator kFinite(
    [](std::string& s) {
      double v;
      return finite_number(s, v) ? std::string() : "'" + s + "' is not a finite number";
    },
    "FINITE");

// A seed is a whole number from 0 to 2^64 - 1, written in decimal: -1, 2^64
// or 1e23 would otherwise all become 2^64 - 1.
const CLI::Validator kSeed(
    [](std::string& s) {
      std::uint64_t v;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      return !s.empty() && ec == std::errc() && end == s.data() + s.size()
                 ? std::string()
                 : "'" + s + "' is not a whole number from 0 to 18446744073709551615";
    },
    "SEED");

// An output file: a path that can be written, checked before the computation.
const CLI::Validator kOutputFile(
    [](std::string& s) {
      if (s.empty()) return std::string("an empty path");
      try {
        netsor::cli::check_writable(s);
      } catch (const netsor::ProgramError& e) {
        return "'" + s + "': " + e.diagnostic().message;
      }
      return std::string();
    },
    "PATH");

// The -D constants of a command that takes no sweep.
netsor::FrontendOptions options_of(const Common& c) {
  auto sweep = netsor::cli::parse_defines(c.defines);
  if (!sweep.axes.empty())
    throw netsor::UsageError("-D " + sweep.axes[0].name + ": sweeps (NAME=a,b,c or NAME=FROM:TO:COUNT) work with " +
                             "limit, run and converge");
  netsor::FrontendOptions o;
  o.defines = sweep.fixed;
  return o;
}

// "20G", "512M", "1000000" -> bytes; the reason if s is none of these.
std::string parse_bytes(const std::string& s, std::size_t& bytes) {
  std::size_t digits = s.find_last_of("0123456789.") + 1;
  std::string unit = s.substr(std::min(digits, s.size()));
  double v, mult = unit.empty() || unit == "B" ? 1 : unit == "K" ? 1024.0 : unit == "M" ? 1048576.0
                 : unit == "G" ? 1073741824.0 : -1;
  if (mult < 0 || !finite_number(s.substr(0, digits), v) || !(v > 0))
    return "'" + s + "': expected bytes like 20G, 512M or 1000000";
  if (v * mult >= 0x1p62) return "'" + s + "' is more than any machine has";
  bytes = std::size_t(v * mult);
  return {};
}

struct RunFlags {
  int seeds = 8;
  std::uint64_t seed = 0;
  int threads = 0;
  bool float32 = false;
  std::string memory;
};

void add_run_flags(CLI::App* sub, RunFlags& f) {
  sub->add_option("--seeds", f.seeds, "independent samples of all random objects")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--seed", f.seed, "base seed: fixes every number, whatever the thread count")
      ->check(kSeed)
      ->capture_default_str();
  sub->add_option("--threads", f.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--float32", f.float32, "matrices and their products in single precision");
  sub->add_option("--memory", f.memory, "memory limit, e.g. 20G (default: 80% of physical memory)")
      ->check(CLI::Validator(
          [](std::string& s) {
            std::size_t bytes;
            return parse_bytes(s, bytes);
          },
          "BYTES"));
}

// --max-seconds: refuse, before starting, runs predicted to take longer.
void check_time(double predicted, double max_seconds, const std::string& file, const std::string& what) {
  if (max_seconds <= 0 || predicted <= max_seconds) return;
  netsor::Diagnostic d;
  d.loc.file = file;
  std::ostringstream m;
  m << what << " predicted to take about " << std::setprecision(3) << predicted << " s, over --max-seconds "
    << max_seconds << " (from pilot runs of one seed at small widths, scaled as n^2)";
  d.message = m.str();
  d.hint = "use fewer --seeds or smaller widths, or raise --max-seconds";
  throw netsor::ProgramError(d);
}

netsor::exec::Options run_options(const RunFlags& f) {
  netsor::exec::Options o;
  o.seeds = f.seeds;
  o.seed = f.seed;
  o.threads = f.threads;
  o.float32 = f.float32;
  if (!f.memory.empty()) parse_bytes(f.memory, o.memory_limit);  // checked when parsed
  return o;
}

std::function<void(const std::string&)> verify_progress() {
  bool tty = isatty(fileno(stderr));
  return [tty](const std::string& what) {
    if (tty) std::cerr << "\r" << what << std::string(20, ' ') << std::flush;
  };
}

// --method and the sampled evaluator's settings (limit, converge).
struct SampledFlags {
  std::string method = "auto";
  int points = 0, randomizations = 16;
  double budget = 60, target = 1e-4;
  std::uint64_t seed = 1;
};

void add_sampled_flags(CLI::App* sub, SampledFlags& f) {
  sub->add_option("--method", f.method,
                  "auto: sampled where the program's integrals exceed 12 dimensions; quadrature: the rules per "
                  "expectation; sampled: one randomized point set for the whole program (docs/accuracy.md)")
      ->check(CLI::IsMember({"auto", "quadrature", "sampled"}))
      ->capture_default_str();
  sub->add_option("--points", f.points, "sampled: points per randomization, a power of 2 (default: doubled from 4096 "
                                        "until --tol or --budget)")
      ->check(CLI::Range(2, 1 << 24) & CLI::Validator([](std::string& s) {
                long v = std::stol(s);
                return v > 0 && (v & (v - 1)) == 0 ? std::string() : "'" + s + "' is not a power of 2";
              }, "POW2"));
  sub->add_option("--randomizations", f.randomizations, "sampled: independent scrambles (error bar: 3 s.e. over them)")
      ->check(CLI::Range(4, 1024))
      ->capture_default_str();
  sub->add_option("--budget", f.budget, "sampled: seconds the doubling of points may spend")
      ->check(kFinite & CLI::Range(0.0, 1e6))
      ->capture_default_str();
  sub->add_option("--sample-seed", f.seed, "sampled: the scrambles' seed (the same numbers for any thread count)")
      ->check(kSeed)
      ->capture_default_str();
}

// tol > 0: the user's --tol, the sampled evaluator's relative target.
void sampled_options(const SampledFlags& f, netsor::limit::Options& o, double tol) {
  o.method = f.method == "sampled" ? netsor::limit::Method::Sampled
             : f.method == "quadrature" ? netsor::limit::Method::Quadrature : netsor::limit::Method::Auto;
  o.points = f.points;
  o.randomizations = f.randomizations;
  o.budget = f.budget;
  o.seed = f.seed;
  if (tol > 0) o.target = tol;
  if (isatty(fileno(stderr)))
    o.progress = [](const std::string& what) { std::cerr << "\r" << what << "   " << std::flush; };
}

// One struct per subcommand: its flags (registered by `add`, in the order
// --help lists them) and what it does (`run`, called after parsing).
struct Command {
  CLI::App* sub = nullptr;
  virtual ~Command() = default;
  virtual void add(CLI::App& app) = 0;
  virtual int run() = 0;
};

// A subcommand on one .tp file: the common flags (file, --json, -D) and the
// program compiled with them.
struct FileCommand : Command {
  Common o;
  void open(CLI::App& app, const char* name, const char* description) {
    sub = app.add_subcommand(name, description);
    add_common(sub, o);
  }
  netsor::ir::Program compiled() const { return netsor::compile_file(o.file, options_of(o)); }
};

struct CheckCommand : FileCommand {
  void add(CLI::App& app) override {
    open(app, "check", "parse and type-check a program (exit 0 if valid, 1 with errors)");
  }
  int run() override {
    auto prog = compiled();
    if (o.json)
      std::cout << nlohmann::json{{"ok", true}, {"vars", prog.vars.size()}, {"instructions", prog.instrs.size()},
                                  {"reports", prog.reports.size()}}
                       .dump(2)
                << "\n";
    else
      std::cout << o.file << ": ok (" << prog.vars.size() << " variables, " << prog.instrs.size() << " instructions, "
                << prog.reports.size() << " reports)\n";
    return kOk;
  }
};

struct PrintCommand : FileCommand {
  void add(CLI::App& app) override {
    open(app, "print", "print the lowered IR (variables, Gaussian families, instructions)");
  }
  int run() override {
    auto prog = compiled();
    if (o.json) std::cout << netsor::ir::to_json(prog).dump(2) << "\n";
    else std::cout << netsor::ir::to_text(prog);
    return kOk;
  }
};

struct LimitCommand : FileCommand {
  bool force_quadrature = false;
  double tol = 1e-12;
  SampledFlags sampled;
  std::string csv;
  void add(CLI::App& app) override {
    open(app, "limit", "the infinite-width limit of every report, with error estimate and method");
    sub->add_flag("--force-quadrature", force_quadrature,
                  "skip closed forms and exact Gaussian algebra (to cross-check the generic path)");
    sub->add_option("--tol", tol, "relative accuracy target of the quadrature rules")
        ->check(kFinite & CLI::Range(1e-15, 1e-2))
        ->capture_default_str();
    add_sampled_flags(sub, sampled);
    sub->add_option("--csv", csv, "write the values as CSV (one row per point of a sweep)")->check(kOutputFile);
  }
  int run() override {
    netsor::limit::Options lo;
    lo.force_quadrature = force_quadrature;
    lo.tol = tol;
    sampled_options(sampled, lo, sub->count("--tol") ? tol : 0.0);
    return netsor::cli::run_sweep(
        o.file, "limit", netsor::cli::parse_defines(o.defines), {},
        [&](const netsor::ir::Program& prog) { return netsor::cli::limit_point(o.file, netsor::limit::compute(prog, lo)); },
        o.json, csv);
  }
};

struct DeriveCommand : FileCommand {
  bool latex = false;
  void add(CLI::App& app) override {
    open(app, "derive", "the derived theory: every Z, Gaussian family and scalar limit");
    sub->add_flag("--latex", latex, "LaTeX instead of plain text");
  }
  int run() override {
    auto prog = compiled();
    std::string free_text;  // the pencils of tr(...) and spectra (free probability)
    netsor::limit::Options lo;
    lo.at_end = [&](const netsor::limit::ZView& z) { free_text = netsor::cli::free_derivations(prog, z, latex); };
    auto res = netsor::limit::compute(prog, lo);
    if (o.json) std::cout << netsor::cli::derive_json(prog, res).dump(2) << "\n";
    else std::cout << netsor::cli::derive_text(prog, res, latex) << free_text;
    return kOk;
  }
};

struct RunCommand : FileCommand {
  RunFlags flags;
  std::int64_t width = 1024;
  double max_seconds = 0;
  std::string csv;
  void add(CLI::App& app) override {
    open(app, "run", "run the program at one finite width: each report's mean and standard error over seeds");
    sub->add_option("--max-seconds", max_seconds, "refuse before starting if the runs are predicted to take longer")
        ->check(kFinite & CLI::PositiveNumber);
    sub->add_option("--csv", csv, "write the means as CSV (one row per point of a sweep)")->check(kOutputFile);
    sub->add_option("--width", width, "the width n")
        ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 40))
        ->capture_default_str();
    add_run_flags(sub, flags);
  }
  int run() override {
    auto opts = run_options(flags);
    opts.width = width;
    auto sweep = netsor::cli::parse_defines(o.defines);
    return netsor::cli::run_sweep(
        o.file, "run", sweep, {},
        [&](const netsor::ir::Program& prog) {
          Progress bar;
          auto one = opts;
          if (max_seconds > 0)
            check_time(netsor::exec::predicted_seconds(prog, opts), max_seconds, o.file, "the runs are");
          if (sweep.axes.empty())
            one.progress = [&](int d, int t) { bar.show("width " + std::to_string(width), d, t); };
          auto r = netsor::exec::run(prog, one);
          bar.clear();
          return netsor::cli::run_point(o.file, r);
        },
        o.json, csv);
  }
};

struct ConvergeCommand : FileCommand {
  RunFlags flags;
  SampledFlags sampled;
  std::vector<std::int64_t> widths{256, 512, 1024, 2048, 4096, 8192};
  std::string csv, plot;
  double max_seconds = 0;
  std::vector<std::string> only;
  void add(CLI::App& app) override {
    open(app, "converge", "the finite-width runs beside the limit: errors, fitted rate, verdict");
    sub->add_option("--widths", widths, "widths to run")
        ->delimiter(',')
        ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 40));
    add_run_flags(sub, flags);
    add_sampled_flags(sub, sampled);
    sub->add_option("--csv", csv, "write the table as CSV")->check(kOutputFile);
    sub->add_option("--max-seconds", max_seconds,
                    "refuse before starting if the finite-width runs are predicted to take longer")
        ->check(kFinite & CLI::PositiveNumber);
    sub->add_option("--plot", plot, "write a plot (SVG): errors against width, and each quantity against its limit")
        ->check(kOutputFile);
    sub->add_option("--only", only, "only these reports (names as the table prints them)");
  }
  int run() override {
    netsor::exec::ConvergeOptions co;
    co.widths = widths;
    std::sort(co.widths.begin(), co.widths.end());
    co.run = run_options(flags);
    sampled_options(sampled, co.limit, 0.0);
    auto within_time = [&](const netsor::ir::Program& prog) {
      if (max_seconds > 0)
        check_time(netsor::exec::predicted_seconds(prog, co), max_seconds, o.file, "the finite-width runs are");
    };
    auto sweep = netsor::cli::parse_defines(o.defines);
    if (!sweep.axes.empty()) {
      if (!plot.empty()) throw netsor::UsageError("--plot draws one program; a sweep writes its table with --csv");
      return netsor::cli::run_sweep(
          o.file, "converge", sweep, {},
          [&](netsor::ir::Program prog) {
            netsor::cli::keep_reports(prog, only);
            within_time(prog);
            return netsor::cli::converge_point(netsor::exec::converge(prog, co));
          },
          o.json, csv);
    }
    auto prog = compiled();
    netsor::cli::keep_reports(prog, only);
    within_time(prog);
    Progress bar;
    co.progress = [&](std::int64_t w, int d, int t) { bar.show("width " + std::to_string(w), d, t); };
    auto r = netsor::exec::converge(prog, co);
    bar.clear();
    // The table first: if a file cannot be written after all, the results are not lost.
    if (o.json) std::cout << netsor::cli::converge_json(r).dump(2) << "\n";
    else std::cout << netsor::cli::converge_table(o.file, r);
    std::cout.flush();
    if (!csv.empty()) netsor::cli::write_file(csv, netsor::cli::converge_csv(r));
    if (!plot.empty()) netsor::cli::write_file(plot, netsor::cli::converge_svg(r, o.file));
    return kOk;
  }
};

struct SpectrumCommand : FileCommand {
  RunFlags flags;
  netsor::cli::SpectrumFlags spectrum;
  void add(CLI::App& app) override {
    open(app, "spectrum", "eigenvalue laws of the program's `spectrum` operators at one finite width");
    add_run_flags(sub, flags);
    netsor::cli::add_spectrum_flags(sub, spectrum);
  }
  int run() override {
    return netsor::cli::spectrum_command(compiled(), o.file, run_options(flags),
                                         spectrum, o.json);
  }
};

struct AbcCommand : Command {
  int layers = 2;
  std::vector<double> a, b;
  double c = 0;
  std::string preset;
  bool json = false, verify = false;
  CLI::Option *opt_a = nullptr, *opt_b = nullptr, *opt_c = nullptr;
  void add(CLI::App& app) override {
    sub = app.add_subcommand("abc", "classify an abc-parametrization of an MLP: stable, nontrivial, feature learning or kernel");
    sub->add_option("--layers", layers, "L, the number of hidden layers")->check(CLI::Range(1, 64))->capture_default_str();
    opt_a = sub->add_option("--a", a, "a_1,...,a_{L+1}: W^l = n^{-a_l} w^l")->delimiter(',')->check(kFinite);
    opt_b = sub->add_option("--b", b, "b_1,...,b_{L+1}: w^l entries N(0, n^{-2 b_l})")->delimiter(',')->check(kFinite);
    opt_c = sub->add_option("--c", c, "learning rate eta n^{-c} (with --preset: overrides its c)")->check(kFinite);
    sub->add_option("--preset", preset, "sp, ntk, mup or mf instead of --a/--b")
        ->check(CLI::IsMember({"sp", "ntk", "mup", "mf"}));
    sub->add_flag("--json", json, "machine-readable output");
    sub->add_flag("--verify", verify, "run the unrolled one-step SGD program over widths and measure each layer's exponent");
    opt_a->excludes("--preset");
    opt_b->excludes("--preset");
  }
  int run() override {
    netsor::abc::Parametrization p;
    if (!preset.empty()) {
      try {
        p = netsor::abc::preset(preset, layers, opt_c->count() ? &c : nullptr);
      } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError("--preset", e.what());
      }
    } else {
      if (!opt_a->count() || !opt_b->count() || !opt_c->count())
        throw CLI::ValidationError("abc", "give --a, --b and --c, or --preset");
      if ((int)a.size() != layers + 1 || (int)b.size() != layers + 1)
        throw CLI::ValidationError("abc", "--a and --b need L + 1 = " + std::to_string(layers + 1) +
                                              " values each (--layers " + std::to_string(layers) + ")");
      p.L = layers;
      p.a = a;
      p.b = b;
      p.c = c;
    }
    auto v = netsor::abc::classify(p);
    if (json) {
      auto j = netsor::cli::abc_json(p, v);
      if (verify) j["verify"] = netsor::cli::abc_verify_json(p, v, verify_progress());
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << netsor::cli::abc_text(p, v);
      if (verify) std::cout << netsor::cli::abc_verify_text(p, v, verify_progress());
    }
    return kOk;
  }
};

struct CoordcheckCommand : FileCommand {
  netsor::cli::CoordCommand c;
  void add(CLI::App& app) override {
    sub = netsor::cli::add_coordcheck(app, c);
    add_common(sub, o);
  }
  int run() override {
    auto prog = compiled();
    netsor::cli::run_coordcheck(c, o.file, o.json, prog);
    return kOk;
  }
};

int run_command(int argc, char** argv) {
  CLI::App app{"netsor: tensor programs, their infinite-width limits, and finite-width checks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "netsor 0.1.0");
  CheckCommand check;
  PrintCommand print;
  LimitCommand limit;
  DeriveCommand derive;
  RunCommand run;
  ConvergeCommand converge;
  SpectrumCommand spectrum;
  AbcCommand abc;
  CoordcheckCommand coordcheck;
  Command* commands[] = {&check, &print, &limit, &derive, &run, &converge, &spectrum, &abc, &coordcheck};
  for (Command* c : commands) c->add(app);

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
    for (Command* c : commands)
      if (c->sub->parsed()) return c->run();
  } catch (const netsor::ProgramError& e) {
    print_error(e.diagnostic());
    return kProgramError;
  } catch (const CLI::ValidationError& e) {
    std::cerr << "netsor: " << e.what() << "\n";
    return kUsageError;
  } catch (const netsor::UsageError& e) {
    std::cerr << "netsor: " << e.what() << "\n";
    return kUsageError;
  } catch (const std::bad_alloc&) {
    std::cerr << "netsor: out of memory\n";
    return kProgramError;
  } catch (const std::exception& e) {
    // Anything else is netsor's bug, never the program's: say so, apart from 1.
    std::cerr << "netsor: internal error (a bug in netsor; please report it with the program): " << e.what() << "\n";
    return kInternalError;
  }
  return kUsageError;
}

}  // namespace

// Every pass recurses over the program's expressions: run them all, not just
// the parser, on a stack sized for what the front end accepts.
int main(int argc, char** argv) {
  netsor::cli::install_signal_handlers();
  int status = kUsageError;
  netsor::run_on_big_stack([&] { status = run_command(argc, argv); });
  return status;
}
