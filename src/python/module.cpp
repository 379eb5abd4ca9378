// The Python module `netsor` (pybind11): the same front end, limit pass and
// executor as the command line, with results as small classes holding numpy
// arrays. Python's side of the package is netsor/__init__.py at the repository
// root; this file builds its compiled part, netsor._netsor.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>

#include "../cli/coordcheck.hpp"
#include "../cli/plot.hpp"
#include "../cli/spectrum.hpp"
#include "../cli/report.hpp"
#include "netsor/abc.hpp"
#include "netsor/converge.hpp"
#include "netsor/exec.hpp"
#include "netsor/frontend.hpp"
#include "netsor/limit.hpp"

namespace py = pybind11;
using namespace netsor;

namespace {

// Every pass recurses over the program; the command line runs them on a big
// stack, and so does Python (whose own thread's stack may be small). The GIL is
// released meanwhile: the passes never touch Python objects.
template <class F>
auto off_the_gil(F&& f) {
  decltype(f()) out{};
  py::gil_scoped_release release;
  run_on_big_stack([&] { out = f(); });
  return out;
}

py::object from_json(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

template <class T>
py::array_t<T> array(const std::vector<T>& v) {
  return py::array_t<T>(py::ssize_t(v.size()), v.data());
}

// A compiled program and how it was made (for repr and for re-running).
struct Program {
  ir::Program ir;
  std::string name;
};

Program compile(const std::string& text, const std::string& name, bool is_file,
                const std::map<std::string, double>& defines, const std::string& stdlib_dir) {
  FrontendOptions o;
  o.defines = defines;
  o.stdlib_dir = stdlib_dir;
  return off_the_gil([&] {
    return Program{is_file ? compile_file(text, o) : compile_string(text, name, o), name};
  });
}

py::dict limit_of(const Program& p, double tol, bool force_quadrature, std::uint64_t seed) {
  limit::Options o;
  o.tol = tol;
  o.force_quadrature = force_quadrature;
  o.seed = seed;
  auto r = off_the_gil([&] { return limit::compute(p.ir, o); });
  py::dict d;
  for (const auto& q : r.quantities) d[py::str(q.name)] = q.estimate;
  return d;
}

exec::Options run_options(std::int64_t width, int seeds, std::uint64_t seed, int threads, bool float32) {
  if (width < 1) throw py::value_error("width must be at least 1");
  if (seeds < 1) throw py::value_error("seeds must be at least 1");
  exec::Options o;
  o.width = width;
  o.seeds = seeds;
  o.seed = seed;
  o.threads = threads;
  o.float32 = float32;
  return o;
}

py::dict run_of(const Program& p, std::int64_t width, int seeds, std::uint64_t seed, int threads, bool float32) {
  auto o = run_options(width, seeds, seed, threads, float32);
  auto r = off_the_gil([&] { return exec::run(p.ir, o); });
  py::dict d;
  for (const auto& q : r.quantities) d[py::str(q.name)] = q;
  return d;
}

exec::ConvergeResult converge_of(const Program& p, std::vector<std::int64_t> widths, int seeds, std::uint64_t seed,
                                 int threads, bool float32, bool more_seeds_when_small) {
  if (widths.empty()) throw py::value_error("give at least one width");
  exec::ConvergeOptions o;
  std::sort(widths.begin(), widths.end());
  o.widths = widths;
  o.run = run_options(widths.front(), seeds, seed, threads, float32);
  o.more_seeds_when_small = more_seeds_when_small;
  return off_the_gil([&] { return exec::converge(p.ir, o); });
}

py::object derive_of(const Program& p, const std::string& format) {
  if (format != "dict" && format != "text" && format != "latex")
    throw py::value_error("format is 'dict', 'text' or 'latex', not '" + format + "'");
  auto r = off_the_gil([&] { return limit::compute(p.ir); });
  if (format == "dict") return from_json(cli::derive_json(p.ir, r));
  return py::str(cli::derive_text(p.ir, r, format == "latex"));
}

// netsor coordcheck --json as a dict, with the plot's SVG text under "svg".
py::object coordcheck_of(const Program& p, const std::vector<std::int64_t>& widths, int seeds, std::uint64_t seed,
                         const std::vector<std::string>& only, int step_index) {
  if (widths.size() < 2) throw py::value_error("give at least two widths to fit an exponent");
  if (seeds < 1) throw py::value_error("seeds must be at least 1");
  cli::CoordOptions o;
  o.widths = widths;
  std::sort(o.widths.begin(), o.widths.end());
  o.seeds = seeds;
  o.seed = seed;
  o.only = only;
  o.step_index = step_index;
  auto r = off_the_gil([&] { return cli::coordcheck(p.ir, o); });
  auto j = cli::coordcheck_json(r);
  j["svg"] = cli::coordcheck_svg(r, p.name);
  return from_json(j);
}

// netsor spectrum --json as a dict (with "svg": the histograms): the finite-width
// eigenvalue laws at `width`, and with limit=True each law's infinite-width limit
// by free probability under "limit" (width=None: the limit alone).
py::object spectrum_of(const Program& p, std::optional<std::int64_t> width, int seeds, std::uint64_t seed, int threads,
                       int bins, bool eigenvalues, bool limit, int limit_points) {
  if (!width && !limit) throw py::value_error("give a width, or limit=True for the limit alone");
  if (seeds < 1 || bins < 1) throw py::value_error("seeds and bins must be at least 1");
  if (p.ir.spectra.empty()) throw py::value_error("the program has no `spectrum` statement");
  std::vector<limit::SpectrumLimit> lim;
  nlohmann::json j{{"spectra", nlohmann::json::object()}};
  off_the_gil([&] {
    if (limit) lim = cli::spectrum_limits(p.ir, limit_points);
    if (width) {
      exec::SpectrumOptions o;
      o.run = run_options(*width, seeds, seed, threads, false);
      o.bins = bins;
      o.keep_eigenvalues = eigenvalues;
      auto r = exec::spectra(p.ir, o);
      j = cli::spectrum_json(r, eigenvalues);
      j["svg"] = cli::spectrum_svg(r, p.name);
    }
    return 0;
  });
  for (const auto& l : lim) j["spectra"][l.name]["limit"] = cli::limit_spectrum_json(l);
  return from_json(j);
}

py::object abc_of(const std::string& preset, int layers, std::optional<double> c) {
  abc::Parametrization p;
  try {
    p = abc::preset(preset, layers, c ? &*c : nullptr);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return from_json(cli::abc_json(p, abc::classify(p)));
}

// netsor.ProgramError(message) with .file, .line, .col, .message, .hint; str()
// is the formatted diagnostic with the caret, as the command line prints it.
void register_errors(py::module_& m) {
  // Handles that are never released: a static py::object would be destroyed
  // after the interpreter is gone.
  static py::handle program_error = py::exception<ProgramError>(m, "ProgramError", PyExc_Exception).release();
  static py::handle usage_error = py::exception<UsageError>(m, "UsageError", PyExc_ValueError).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ProgramError& e) {
      const auto& d = e.diagnostic();
      py::object err = program_error(py::str(format(d)));
      err.attr("file") = d.loc.file;
      err.attr("line") = d.loc.line;
      err.attr("col") = d.loc.col;
      err.attr("message") = d.message;
      err.attr("hint") = d.hint;
      PyErr_SetObject(program_error.ptr(), err.ptr());
    } catch (const UsageError& e) {
      PyErr_SetString(usage_error.ptr(), e.what());
    }
  });
}

// A converge series as columns: one numpy array per column, one entry per width.
py::array_t<double> column(const exec::Series& s, double exec::Row::*field) {
  std::vector<double> v;
  for (const auto& r : s.rows) v.push_back(r.*field);
  return array(v);
}

void bind_converge(py::module_& m) {
  py::class_<exec::Series>(m, "Series", "one report over widths: finite-width means beside the limit")
      .def_readonly("name", &exec::Series::name)
      .def_readonly("limit", &exec::Series::limit)
      .def_property_readonly("widths", [](const exec::Series& s) {
        std::vector<std::int64_t> w;
        for (const auto& r : s.rows) w.push_back(r.width);
        return array(w);
      })
      .def_property_readonly("seeds", [](const exec::Series& s) {
        std::vector<int> k;
        for (const auto& r : s.rows) k.push_back(r.seeds);
        return array(k);
      })
      .def_property_readonly("mean", [](const exec::Series& s) { return column(s, &exec::Row::mean); })
      .def_property_readonly("sem", [](const exec::Series& s) { return column(s, &exec::Row::sem); })
      .def_property_readonly("error", [](const exec::Series& s) { return column(s, &exec::Row::error); },
                             "|mean - limit| per width")
      .def_property_readonly("rmse", [](const exec::Series& s) { return column(s, &exec::Row::rmse); },
                             "root mean square over seeds of (value - limit) per width")
      .def_readonly("slope", &exec::Series::slope, "fitted d log(rmse) / d log(width)")
      .def_readonly("growth", &exec::Series::growth, "fitted d log|mean| / d log(width)")
      .def_readonly("verdict", &exec::Series::verdict)
      .def("__repr__", [](const exec::Series& s) { return "Series('" + s.name + "', verdict='" + s.verdict + "')"; });
  py::class_<exec::ConvergeResult>(m, "Convergence", "netsor converge: every report over widths")
      .def_property_readonly("widths", [](const exec::ConvergeResult& r) { return array(r.widths); })
      .def_readonly("seeds", &exec::ConvergeResult::seeds, "seeds at the largest width")
      .def_readonly("notes", &exec::ConvergeResult::notes, "widths skipped (memory) and why")
      .def_property_readonly("series", [](const exec::ConvergeResult& r) {
        py::dict d;
        for (const auto& s : r.series) d[py::str(s.name)] = s;
        return d;
      })
      .def("__getitem__", [](const exec::ConvergeResult& r, const std::string& name) {
        for (const auto& s : r.series)
          if (s.name == name) return s;
        throw py::key_error(name);
      })
      .def("svg", [](const exec::ConvergeResult& r, const std::string& title) { return cli::converge_svg(r, title); },
           py::arg("title") = "", "the plot of netsor converge --plot (errors against width, and each quantity against its limit), as SVG text");
}

void bind_results(py::module_& m) {
  py::class_<limit::Estimate>(m, "Estimate", "an infinite-width limit: value, estimated absolute error, method")
      .def_readonly("value", &limit::Estimate::value)
      .def_readonly("error", &limit::Estimate::abs_error)
      .def_readonly("method", &limit::Estimate::method)
      .def_readonly("order", &limit::Estimate::order, "a vanishing quantity is coefficient * n^order (order < 0)")
      .def_readonly("coefficient", &limit::Estimate::coefficient)
      .def("__float__", [](const limit::Estimate& e) { return e.value; })
      .def("__repr__", [](const limit::Estimate& e) {
        return "Estimate(value=" + py::repr(py::float_(e.value)).cast<std::string>() +
               ", error=" + py::repr(py::float_(e.abs_error)).cast<std::string>() + ", method='" + e.method + "')";
      });
  py::class_<exec::QuantityStats>(m, "Stats", "a report at one finite width: mean, standard error, per-seed values")
      .def_readonly("name", &exec::QuantityStats::name)
      .def_readonly("mean", &exec::QuantityStats::mean)
      .def_readonly("sem", &exec::QuantityStats::sem)
      .def_readonly("sd", &exec::QuantityStats::sd)
      .def_property_readonly("per_seed", [](const exec::QuantityStats& q) { return array(q.per_seed); })
      .def("__repr__", [](const exec::QuantityStats& q) {
        return "Stats(mean=" + py::repr(py::float_(q.mean)).cast<std::string>() +
               ", sem=" + py::repr(py::float_(q.sem)).cast<std::string>() + ", seeds=" + std::to_string(q.per_seed.size()) + ")";
      });
  bind_converge(m);
}

}  // namespace

PYBIND11_MODULE(_netsor, m) {
  m.doc() = "netsor: tensor programs, their infinite-width limits and finite-width checks";
  register_errors(m);
  bind_results(m);
  py::class_<Program>(m, "Program", "a compiled .tp program")
      .def_static(
          "from_file",
          [](const std::string& path, const std::map<std::string, double>& defines, const std::string& stdlib_dir) {
            return compile(path, path, true, defines, stdlib_dir);
          },
          py::arg("path"), py::arg("defines") = std::map<std::string, double>{}, py::arg("stdlib_dir") = "",
          "read, check and lower a .tp file; defines are -D NAME=value")
      .def_static(
          "from_source",
          [](const std::string& text, const std::map<std::string, double>& defines, const std::string& name,
             const std::string& stdlib_dir) { return compile(text, name, false, defines, stdlib_dir); },
          py::arg("text"), py::arg("defines") = std::map<std::string, double>{}, py::arg("name") = "<source>",
          py::arg("stdlib_dir") = "", "compile program text; name is the file name errors show")
      .def_property_readonly("name", [](const Program& p) { return p.name; })
      .def_property_readonly("reports", [](const Program& p) {
        std::vector<std::string> names;
        for (const auto& r : p.ir.reports) names.push_back(r.name);
        return names;
      })
      .def("limit", &limit_of, py::arg("tol") = 1e-12, py::arg("force_quadrature") = false, py::arg("seed") = 1,
           "every report's infinite-width limit: {name: Estimate}")
      .def("run", &run_of, py::arg("width") = 1024, py::arg("seeds") = 8, py::arg("seed") = 0, py::arg("threads") = 0,
           py::arg("float32") = false, "the program at one finite width: {name: Stats}")
      .def("converge", &converge_of,
           py::arg("widths") = std::vector<std::int64_t>{256, 512, 1024, 2048, 4096, 8192}, py::arg("seeds") = 8,
           py::arg("seed") = 0, py::arg("threads") = 0, py::arg("float32") = false,
           py::arg("more_seeds_when_small") = true, "run at each width beside the limit: a Convergence")
      .def("derive", &derive_of, py::arg("format") = "dict",
           "the derived theory (families, each Z, scalar limits) as a dict, or 'text' / 'latex'")
      .def("coordcheck", &coordcheck_of, py::arg("widths") = std::vector<std::int64_t>{256, 512, 1024, 2048},
           py::arg("seeds") = 4, py::arg("seed") = 0, py::arg("only") = std::vector<std::string>{},
           py::arg("step_index") = 0,
           "netsor coordcheck: each vector's rms over widths, fitted and predicted exponents (a dict; 'svg': the plot)")
      .def("spectrum", &spectrum_of, py::arg("width") = std::optional<std::int64_t>(1024), py::arg("seeds") = 8,
           py::arg("seed") = 0, py::arg("threads") = 0, py::arg("bins") = 60, py::arg("eigenvalues") = false,
           py::arg("limit") = false, py::arg("limit_points") = 400,
           "netsor spectrum: each `spectrum` operator's eigenvalue law at a finite width (moments, histogram, 'svg'), "
           "and with limit=True its limit law (width=None: the limit alone)")
      .def("ir", [](const Program& p) { return from_json(ir::to_json(p.ir)); }, "the lowered IR (netsor print --json)")
      .def("__repr__", [](const Program& p) {
        return "Program('" + p.name + "', " + std::to_string(p.ir.vars.size()) + " variables, " +
               std::to_string(p.ir.reports.size()) + " reports)";
      });
  m.def("abc", &abc_of, py::arg("preset"), py::arg("layers") = 2, py::arg("c") = py::none(),
        "classify an abc-parametrization preset (sp, ntk, mup, mf): netsor abc --preset --json as a dict");
}
