// netsor spectrum (src/cli/spectrum.hpp).
#include "spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "netsor/operators.hpp"
#include "progress.hpp"
#include "report.hpp"

namespace netsor::cli {

void add_spectrum_flags(CLI::App* sub, SpectrumFlags& f) {
  sub->add_flag("--limit", f.limit, "the infinite-width law of each operator (free probability); with --width, both");
  sub->add_option("--limit-points", f.limit_points, "points of the limit density's grid")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  f.width_opt = sub->add_option("--width", f.width, "the width n")
      ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 40))
      ->capture_default_str();
  sub->add_option("--bins", f.bins, "histogram bins")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--plot", f.plot, "write the histograms (density scale) as SVG");
  sub->add_option("--csv", f.csv, "write the histograms as CSV");
  sub->add_flag("--eigenvalues", f.eigenvalues, "with --json: every eigenvalue (or Lanczos node and weight)");
  sub->add_option("--dense-max", f.dense_max, "largest operator diagonalized densely; beyond, Lanczos")
      ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("--lanczos-steps", f.lanczos_steps, "Lanczos steps per probe")
      ->check(CLI::Range(2, 10000))
      ->capture_default_str();
  sub->add_option("--probes", f.lanczos_probes, "Lanczos start vectors per seed")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
}

namespace {

// sup_x |F_width(x) - F_limit(x)|: the pooled eigenvalues (or Lanczos nodes)
// against the limit CDF (atoms, and the density integrated on its grid by the
// trapezoidal rule), at every eigenvalue from both sides.
double kolmogorov(const exec::SpectrumStats& s, const limit::SpectrumLimit& l) {
  std::vector<std::pair<double, double>> ev;
  for (std::size_t k = 0; k < s.values.size(); ++k)
    for (std::size_t i = 0; i < s.values[k].size(); ++i)
      ev.push_back({s.values[k][i], s.weights[k][i] / double(s.values.size())});
  // Eigenvalues within roundoff of 0 are the atom at 0 (as for near_zero).
  double big = 0;
  for (const auto& e : ev) big = std::max(big, std::abs(e.first));
  for (auto& e : ev)
    if (std::abs(e.first) <= 1e-8 * big) e.first = 0;
  std::sort(ev.begin(), ev.end());
  std::vector<double> cum(l.x.size(), 0.0);
  for (std::size_t i = 1; i < l.x.size(); ++i) {
    double a = std::isfinite(l.density[i - 1]) ? l.density[i - 1] : 0, b = std::isfinite(l.density[i]) ? l.density[i] : 0;
    cum[i] = cum[i - 1] + 0.5 * (a + b) * (l.x[i] - l.x[i - 1]);
  }
  double total = 0;
  for (const auto& a : l.atoms) total += a.mass;
  double scale = cum.empty() || cum.back() <= 0 ? 0 : (1 - total) / cum.back();  // grid quadrature error
  auto F = [&](double x, bool with_atom_at_x) {  // F(x) or F(x-)
    double v = 0;
    for (const auto& a : l.atoms)
      if (a.at < x || (with_atom_at_x && a.at == x)) v += a.mass;
    if (l.x.empty() || x < l.x.front()) return v;
    if (x >= l.x.back()) return v + scale * cum.back();
    std::size_t i = std::upper_bound(l.x.begin(), l.x.end(), x) - l.x.begin();
    double t = (x - l.x[i - 1]) / (l.x[i] - l.x[i - 1]);
    return v + scale * (cum[i - 1] + t * (cum[i] - cum[i - 1]));
  };
  double d = 0, Fw = 0;
  for (std::size_t i = 0; i < ev.size();) {  // a group of equal eigenvalues at a time
    double x = ev[i].first;
    d = std::max(d, std::abs(Fw - F(x, false)));
    for (; i < ev.size() && ev[i].first == x; ++i) Fw += ev[i].second;
    d = std::max(d, std::abs(Fw - F(x, true)));
  }
  return d;
}

}  // namespace

int spectrum_command(const ir::Program& p, const std::string& file, exec::Options run, const SpectrumFlags& f,
                     bool json) {
  for (const auto* path : {&f.plot, &f.csv})
    if (!path->empty()) check_writable(*path);
  exec::SpectrumOptions o;
  o.run = std::move(run);
  o.run.width = f.width;
  o.bins = f.bins;
  o.dense_max = f.dense_max;
  o.lanczos_steps = f.lanczos_steps;
  o.lanczos_probes = f.lanczos_probes;
  o.keep_eigenvalues = f.eigenvalues;
  std::vector<limit::SpectrumLimit> lim;
  if (f.limit) lim = spectrum_limits(p, f.limit_points);
  if (f.limit && !f.width_opt->count()) {  // the limit alone
    if (json) {
      nlohmann::json j{{"spectra", nlohmann::json::object()}};
      for (const auto& l : lim) j["spectra"][l.name]["limit"] = limit_spectrum_json(l);
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << file << ": infinite width\n" << limit_spectrum_table(lim);
    }
    return 0;
  }
  o.keep_eigenvalues = f.eigenvalues || f.limit;  // the distance to the limit law needs them
  auto r = exec::spectra(p, o);
  if (json) {
    auto j = spectrum_json(r, f.eigenvalues);
    for (const auto& l : lim) {
      j["spectra"][l.name]["limit"] = limit_spectrum_json(l);
      for (const auto& s : r.spectra)
        if (s.name == l.name) j["spectra"][l.name]["kolmogorov_distance"] = kolmogorov(s, l);
    }
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << spectrum_table(file, r) << limit_spectrum_table(lim);
    for (const auto& l : lim)
      for (const auto& s : r.spectra)
        if (s.name == l.name)
          std::cout << "  Kolmogorov distance between width " << r.width << " and the limit (" << l.name
                    << "): " << kolmogorov(s, l) << "\n";
  }
  std::cout.flush();
  if (!f.csv.empty()) write_file(f.csv, spectrum_csv(r));
  if (!f.plot.empty()) write_file(f.plot, spectrum_svg(r, file + ": width " + std::to_string(r.width), lim));
  return 0;
}

std::string spectrum_table(const std::string& file, const exec::SpectrumResult& r) {
  std::ostringstream o;
  o << file << ": width " << r.width << ", " << r.seeds << " seed" << (r.seeds == 1 ? "" : "s") << "\n";
  o << streamed_note(r.streamed_matrices);
  o << std::setprecision(8);
  for (const auto& s : r.spectra) {
    o << "spectrum " << s.name << "  (dim " << s.dim << ", " << s.method << ")\n";
    o << "  moment  mean of (1/dim) Tr S^k    sem\n";
    for (const auto& m : s.moments)
      o << "  k = " << m.k << "   " << std::left << std::setw(24) << m.mean << std::right << "  "
        << std::setprecision(3) << m.sem << std::setprecision(8) << "\n";
    o << "  min " << s.min << "   max " << s.max << "   fraction near 0: " << s.near_zero << "\n";
  }
  return o.str();
}

std::vector<limit::SpectrumLimit> spectrum_limits(const ir::Program& p, int points) {
  std::vector<limit::SpectrumLimit> out;
  limit::Options lo;
  lo.at_end = [&](const limit::ZView& z) {
    limit::SpectrumLimitOptions so;
    so.points = points;
    Progress bar;
    for (const auto& s : p.spectra) {
      so.progress = [&](const std::string& stage, int done, int total) {
        bar.show("limit of " + s.name + ": " + stage, done, total);
      };
      try {
        out.push_back(limit::free_spectrum(p, s, z, so));
        bar.clear();
      } catch (const limit::FreeRefusal& r) {
        bar.clear();
        Diagnostic d;
        d.loc = s.loc;
        d.message = "no limit law for spectrum '" + s.name + "': " + r.message;
        d.hint = r.hint;
        throw ProgramError(d);
      }
    }
  };
  limit::compute(p, lo);
  return out;
}

std::string limit_spectrum_table(const std::vector<limit::SpectrumLimit>& lim) {
  std::ostringstream o;
  o << std::setprecision(10);
  for (const auto& l : lim) {
    o << "limit of spectrum " << l.name << "  (" << l.method << ")\n";
    o << "  support:";
    for (auto [a, b] : l.support) o << " [" << a << ", " << b << "]";
    o << "   (edges to " << std::setprecision(2) << l.edge_error << std::setprecision(10) << ")\n";
    for (const auto& a : l.atoms)
      o << "  atom at " << a.at << ": mass " << a.mass << " +- " << std::setprecision(2) << a.abs_error
        << std::setprecision(10) << "  (" << a.method << ")\n";
    o << "  moment  tr S^k                     abs_error\n";
    for (std::size_t k = 0; k < l.moments.size(); ++k)
      o << "  k = " << k + 1 << "   " << std::left << std::setw(24) << l.moments[k].value << std::right << "  "
        << std::setprecision(2) << l.moments[k].abs_error << std::setprecision(10) << "\n";
  }
  return o.str();
}

std::string free_derivations(const ir::Program& p, const limit::ZView& z, bool latex) {
  std::string out;
  for (const auto& in : p.instrs)
    if (in.op == ir::Op::Trace)
      out += "tr(" + ir::op_text(p, in.op_node) + ")  [" + p.vars[in.out].name + ", line " + std::to_string(in.loc.line) +
             "]\n" + limit::free_derivation(p, in.op_node, z, latex);
  for (const auto& s : p.spectra)
    out += "spectrum " + s.name + " = " + ir::op_text(p, s.node) + "\n" + limit::free_derivation(p, s.node, z, latex);
  return out.empty() ? out : "\nFree probability (pencils and fixed points)\n" + out;
}

nlohmann::json limit_spectrum_json(const limit::SpectrumLimit& l) {
  using nlohmann::json;
  json j{{"x", l.x}, {"method", l.method}, {"edge_error", l.edge_error}};
  // NaN (a grid point where the fixed point failed) is null in JSON.
  json d = json::array(), e = json::array();
  for (std::size_t i = 0; i < l.x.size(); ++i) {
    d.push_back(std::isfinite(l.density[i]) ? json(l.density[i]) : json());
    e.push_back(std::isfinite(l.density_error[i]) ? json(l.density_error[i]) : json());
  }
  j["density"] = d;
  j["density_error"] = e;
  j["support"] = json::array();
  for (auto [a, b] : l.support) j["support"].push_back({a, b});
  j["atoms"] = json::array();
  for (const auto& a : l.atoms)
    j["atoms"].push_back({{"at", a.at}, {"mass", a.mass}, {"abs_error", a.abs_error}, {"method", a.method}});
  j["moments"] = json::array();
  for (std::size_t k = 0; k < l.moments.size(); ++k)
    j["moments"].push_back({{"k", k + 1}, {"value", l.moments[k].value}, {"abs_error", l.moments[k].abs_error},
                            {"method", l.moments[k].method}});
  return j;
}

nlohmann::json spectrum_json(const exec::SpectrumResult& r, bool eigenvalues) {
  using nlohmann::json;
  json j{{"width", r.width}, {"seeds", r.seeds}, {"streamed_matrices", r.streamed_matrices}, {"spectra", json::object()}};
  for (const auto& s : r.spectra) {
    json js{{"dim", s.dim}, {"method", s.method}, {"min", s.min}, {"max", s.max}, {"near_zero", s.near_zero}};
    js["moments"] = json::array();
    for (const auto& m : s.moments) js["moments"].push_back({{"k", m.k}, {"mean", m.mean}, {"sem", m.sem}});
    js["histogram"] = {{"edges", s.edges}, {"density", s.density}};
    if (eigenvalues) {
      js["eigenvalues"] = s.values;
      if (s.method != "dense") js["weights"] = s.weights;
    }
    j["spectra"][s.name] = js;
  }
  return j;
}

std::string spectrum_csv(const exec::SpectrumResult& r) {
  std::ostringstream o;
  o << std::setprecision(12) << "spectrum,bin_lo,bin_hi,density\n";
  for (const auto& s : r.spectra)
    for (std::size_t b = 0; b < s.density.size(); ++b)
      o << '"' << s.name << "\"," << s.edges[b] << "," << s.edges[b + 1] << "," << s.density[b] << "\n";
  return o.str();
}

namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

// One panel: bars on the density scale, axes with their ranges.
void svg_panel(std::ostringstream& o, const exec::SpectrumStats& s, const limit::SpectrumLimit* lim, double top,
               double W, double H) {
  const double ml = 70, mr = 30, mt = 30, mb = 40;
  double lo = s.edges.front(), hi = s.edges.back(), ymax = 0;
  for (double d : s.density) ymax = std::max(ymax, d);
  if (lim)  // the limit density's peak within the histogram's range, capped (it may diverge at an edge)
    for (std::size_t i = 0; i < lim->x.size(); ++i)
      if (lim->x[i] >= lo && lim->x[i] <= hi && std::isfinite(lim->density[i]))
        ymax = std::max(ymax, std::min(lim->density[i], 2 * ymax));
  if (!(ymax > 0)) ymax = 1;
  ymax *= 1.1;
  auto X = [&](double x) { return ml + (x - lo) / (hi - lo) * (W - ml - mr); };
  auto Y = [&](double y) { return top + H - mb - y / ymax * (H - mt - mb); };
  o << "<text x=\"" << ml << "\" y=\"" << top + 20 << "\" font-size=\"14\">spectrum " << escape(s.name) << " (dim "
    << s.dim << ", " << escape(s.method) << ")</text>\n";
  o << "<rect x=\"" << ml << "\" y=\"" << top + mt << "\" width=\"" << W - ml - mr << "\" height=\"" << H - mt - mb
    << "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (std::size_t b = 0; b < s.density.size(); ++b)
    o << "<rect x=\"" << X(s.edges[b]) << "\" y=\"" << Y(s.density[b]) << "\" width=\""
      << std::max(0.0, X(s.edges[b + 1]) - X(s.edges[b])) << "\" height=\"" << Y(0) - Y(s.density[b])
      << "\" fill=\"#1f77b4\" fill-opacity=\"0.6\" stroke=\"#1f77b4\" stroke-width=\"0.5\"/>\n";
  o << "<g class=\"limit\">";  // the limit density over the histogram (netsor spectrum --limit)
  if (lim) {
    o << "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"";
    for (std::size_t i = 0; i < lim->x.size(); ++i)
      if (lim->x[i] >= lo && lim->x[i] <= hi && std::isfinite(lim->density[i]))
        o << X(lim->x[i]) << "," << std::max(Y(std::min(lim->density[i], ymax)), top + mt) << " ";
    o << "\"/>";
    for (const auto& a : lim->atoms)
      if (a.at >= lo && a.at <= hi)
        o << "<line x1=\"" << X(a.at) << "\" x2=\"" << X(a.at) << "\" y1=\"" << Y(0) << "\" y2=\"" << top + mt
          << "\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/><text x=\"" << X(a.at) + 4 << "\" y=\"" << top + mt + 14
          << "\" fill=\"#d62728\">atom " << a.mass << "</text>";
  }
  o << "</g>\n";
  for (double x : {lo, (lo + hi) / 2, hi})
    o << "<text x=\"" << X(x) << "\" y=\"" << Y(0) + 16 << "\" text-anchor=\"middle\">" << std::setprecision(4) << x
      << "</text>\n";
  o << "<text x=\"" << ml - 6 << "\" y=\"" << Y(ymax / 1.1) + 4 << "\" text-anchor=\"end\">" << ymax / 1.1
    << "</text>\n<text x=\"" << ml - 6 << "\" y=\"" << Y(0) + 4 << "\" text-anchor=\"end\">0</text>\n";
  o << "<text transform=\"translate(16," << top + (mt + H - mb) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">density</text>\n";
}

}  // namespace

std::string spectrum_svg(const exec::SpectrumResult& r, const std::string& title,
                         const std::vector<limit::SpectrumLimit>& lim) {
  const double W = 760, H = 320, head = 40;
  std::ostringstream o;
  double total = head + H * double(r.spectra.size());
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << total << "\" viewBox=\"0 0 "
    << W << " " << total << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"70\" y=\"26\" font-size=\"15\">" << escape(title) << ", " << r.seeds << " seeds</text>\n";
  for (std::size_t k = 0; k < r.spectra.size(); ++k) {
    const limit::SpectrumLimit* l = nullptr;
    for (const auto& x : lim)
      if (x.name == r.spectra[k].name) l = &x;
    svg_panel(o, r.spectra[k], l, head + H * double(k), W, H);
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace netsor::cli
