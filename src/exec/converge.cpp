// netsor converge: the executor over widths, beside the limit (include/netsor/converge.hpp).
#include "netsor/converge.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace netsor::exec {
namespace {

// Least-squares slope of y against x.
double slope_of(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() < 2) return NAN;
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
  mx /= x.size();
  my /= y.size();
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < x.size(); ++i) sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx);
  return sxx > 0 ? sxy / sxx : NAN;
}

std::string fixed(double v, int prec) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << v;
  return s.str();
}

}  // namespace

ConvergeResult converge(const ir::Program& p, const ConvergeOptions& o) {
  limit::Result lim = limit::compute(p, o.limit);
  ConvergeResult res;
  res.seeds = o.run.seeds;
  for (const auto& q : lim.quantities) res.series.push_back({q.name, q.estimate, {}, 0, 0, ""});
  std::size_t limit_bytes = o.run.memory_limit ? o.run.memory_limit : default_memory_limit();
  for (auto w : o.widths) {
    std::size_t need = peak_bytes(p, w, o.run.float32);
    if (need > limit_bytes) {
      res.notes.push_back("width " + std::to_string(w) + " skipped: it needs " + std::to_string(need) +
                          " bytes per seed, over the memory limit of " + std::to_string(limit_bytes));
      continue;
    }
    Options ro = o.run;
    ro.width = w;
    std::int64_t largest = *std::max_element(o.widths.begin(), o.widths.end());
    if (o.more_seeds_when_small) ro.seeds = o.run.seeds * int(std::clamp<std::int64_t>(largest / w, 1, 8));
    if (o.progress) ro.progress = [&, w](int done, int total) { o.progress(w, done, total); };
    RunResult rr = run(p, ro);
    res.widths.push_back(w);
    for (std::size_t q = 0; q < rr.quantities.size(); ++q) {
      const auto& st = rr.quantities[q];
      // A quantity vanishing like c n^e is compared with that power law (in
      // units of the base width n: w is n here).
      const auto& lim = res.series[q].limit;
      double L = lim.order < 0 && lim.coefficient != 0 ? lim.coefficient * std::pow(double(w), lim.order) : lim.value;
      double ss = 0;
      for (double v : st.per_seed) ss += (v - L) * (v - L);
      res.series[q].rows.push_back(
          {w, ro.seeds, st.mean, st.sem, std::abs(st.mean - L), std::sqrt(ss / st.per_seed.size())});
    }
  }
  for (auto& s : res.series) {
    if (s.rows.empty()) {
      s.verdict = "not run";
      continue;
    }
    std::vector<double> lx, ly, gx, gy;
    double scale = std::max(1.0, std::abs(s.limit.value));
    for (const auto& r : s.rows) {
      if (r.rmse > 1e-13 * scale) {
        lx.push_back(std::log(double(r.width)));
        ly.push_back(std::log(r.rmse));
      }
      if (std::abs(r.mean) > 0) {
        gx.push_back(std::log(double(r.width)));
        gy.push_back(std::log(std::abs(r.mean)));
      }
    }
    s.slope = slope_of(lx, ly);
    s.growth = slope_of(gx, gy);
    const Row& last = s.rows.back();
    double tol = 4 * last.sem + 4 * s.limit.abs_error + 1e-12 * scale;
    bool close = last.error <= tol;
    if (lx.empty()) {
      s.verdict = "exact at every width";
    } else if (s.limit.order < 0 && s.limit.coefficient != 0) {
      bool rate = !std::isnan(s.growth) && std::abs(s.growth - s.limit.order) <= 0.2;
      s.verdict = std::string(close && rate ? "converging" : "not converging") + ": value ~ " +
                  fixed(s.limit.coefficient, 4) + " n^" + fixed(s.limit.order, 2) + ", measured n^" + fixed(s.growth, 2);
    } else if (!std::isnan(s.growth) && s.growth > 0.25 && !std::isnan(s.slope) && s.slope > 0.1 &&
               std::abs(last.mean) > 4 * std::abs(s.limit.value) + 4 * last.sem) {
      // The values and their distance to the limit both grow with n.
      s.verdict = "unstable: grows like n^" + fixed(s.growth, 2);
    } else if (std::isnan(s.slope)) {
      s.verdict = close ? "within noise (one width)" : "not converging";
    } else if (close && s.slope <= -0.3) {
      s.verdict = "converging (error ~ n^" + fixed(s.slope, 2) + ")";
    } else if (close) {
      s.verdict = "within noise";
    } else {
      s.verdict = "not converging: |mean - limit| = " + fixed(last.error / std::max(last.sem, 1e-300), 1) +
                  " standard errors at the largest width";
    }
  }
  return res;
}

std::string svg_plot(const ConvergeResult& r, const std::string& title) {
  const double W = 760, H = 480, ml = 80, mr = 220, mt = 40, mb = 60;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& s : r.series)
    for (const auto& row : s.rows) {
      if (row.rmse <= 0) continue;
      xmin = std::min(xmin, std::log10(double(row.width)));
      xmax = std::max(xmax, std::log10(double(row.width)));
      ymin = std::min(ymin, std::log10(row.rmse));
      ymax = std::max(ymax, std::log10(row.rmse));
    }
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << ml << "\" y=\"24\" font-size=\"15\">" << title << "</text>\n";
  if (!std::isfinite(xmin)) {
    o << "<text x=\"" << ml << "\" y=\"" << H / 2 << "\">no nonzero errors to plot</text>\n</svg>\n";
    return o.str();
  }
  xmin = std::floor(xmin * 10) / 10 - 0.05;
  xmax = std::ceil(xmax * 10) / 10 + 0.05;
  ymin = std::floor(ymin) - 0.2;
  ymax = std::ceil(ymax) + 0.2;
  auto X = [&](double lx) { return ml + (lx - xmin) / (xmax - xmin) * (W - ml - mr); };
  auto Y = [&](double ly) { return H - mb - (ly - ymin) / (ymax - ymin) * (H - mt - mb); };
  o << "<rect x=\"" << ml << "\" y=\"" << mt << "\" width=\"" << W - ml - mr << "\" height=\"" << H - mt - mb
    << "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (int e = (int)std::ceil(ymin); e <= (int)std::floor(ymax); ++e) {
    o << "<line x1=\"" << ml << "\" x2=\"" << W - mr << "\" y1=\"" << Y(e) << "\" y2=\"" << Y(e)
      << "\" stroke=\"#ddd\"/>\n<text x=\"" << ml - 8 << "\" y=\"" << Y(e) + 4 << "\" text-anchor=\"end\">1e"
      << e << "</text>\n";
  }
  for (auto w : r.widths) {
    double lx = std::log10(double(w));
    o << "<line x1=\"" << X(lx) << "\" x2=\"" << X(lx) << "\" y1=\"" << mt << "\" y2=\"" << H - mb
      << "\" stroke=\"#eee\"/>\n<text x=\"" << X(lx) << "\" y=\"" << H - mb + 18 << "\" text-anchor=\"middle\">" << w
      << "</text>\n";
  }
  o << "<text x=\"" << (ml + W - mr) / 2 << "\" y=\"" << H - 16 << "\" text-anchor=\"middle\">width n</text>\n";
  o << "<text transform=\"translate(20," << (mt + H - mb) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">rms error over seeds, |value - limit|</text>\n";
  // The n^{-1/2} guide through the median of the first width's errors.
  std::vector<double> first;
  for (const auto& s : r.series)
    if (!s.rows.empty() && s.rows.front().rmse > 0) first.push_back(std::log10(s.rows.front().rmse));
  if (!first.empty()) {
    std::sort(first.begin(), first.end());
    double y0 = first[first.size() / 2], x0 = std::log10(double(r.widths.front()));
    double x1 = std::log10(double(r.widths.back()));
    o << "<line x1=\"" << X(x0) << "\" y1=\"" << Y(y0) << "\" x2=\"" << X(x1) << "\" y2=\"" << Y(y0 - 0.5 * (x1 - x0))
      << "\" stroke=\"#000\" stroke-dasharray=\"6 4\"/>\n";
  }
  const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  int k = 0, shown = 0;
  for (const auto& s : r.series) {
    std::string col = palette[k++ % 10];
    std::ostringstream pts;
    bool any = false;
    for (const auto& row : s.rows)
      if (row.rmse > 0) {
        pts << X(std::log10(double(row.width))) << "," << Y(std::log10(row.rmse)) << " ";
        any = true;
      }
    if (!any) continue;
    o << "<polyline fill=\"none\" stroke=\"" << col << "\" stroke-width=\"1.5\" points=\"" << pts.str() << "\"/>\n";
    for (const auto& row : s.rows)
      if (row.rmse > 0)
        o << "<circle cx=\"" << X(std::log10(double(row.width))) << "\" cy=\"" << Y(std::log10(row.rmse))
          << "\" r=\"2.5\" fill=\"" << col << "\"/>\n";
    if (shown < 24) {
      double ly = mt + 14 + 16 * shown;
      o << "<line x1=\"" << W - mr + 12 << "\" x2=\"" << W - mr + 32 << "\" y1=\"" << ly - 4 << "\" y2=\"" << ly - 4
        << "\" stroke=\"" << col << "\" stroke-width=\"2\"/>\n<text x=\"" << W - mr + 38 << "\" y=\"" << ly
        << "\">" << s.name << " (" << fixed(s.slope, 2) << ")</text>\n";
    }
    ++shown;
  }
  if (shown > 24)
    o << "<text x=\"" << W - mr + 12 << "\" y=\"" << mt + 14 + 16 * 24 << "\">... " << shown - 24 << " more</text>\n";
  o << "<line x1=\"" << W - mr + 12 << "\" x2=\"" << W - mr + 32 << "\" y1=\"" << H - mb - 4 << "\" y2=\"" << H - mb - 4
    << "\" stroke=\"#000\" stroke-dasharray=\"6 4\"/>\n<text x=\"" << W - mr + 38 << "\" y=\"" << H - mb
    << "\">n^-1/2 guide</text>\n";
  o << "</svg>\n";
  return o.str();
}

}  // namespace netsor::exec
