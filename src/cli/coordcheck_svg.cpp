// The coordinate-check plot (coordcheck.hpp): one row per panel (step), the
// log-log plot of rms size against width on the left with each vector's
// predicted slope as a dashed guide through its points, and on the right a
// legend giving each vector's fitted and predicted exponent, disagreements in
// red. All panels share one y scale, so steps compare at a glance.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>

#include "coordcheck.hpp"
#include "plot.hpp"
#include "report.hpp"

namespace netsor::cli {
namespace {

constexpr double kPlotW = 380, kPlotH = 250, kLeft = 70, kTop = 50, kLegendW = 330, kLine = 15;

struct Axes {
  double lx0, lx1, ly0, ly1, x0, y0;  // log ranges; the plot's top-left corner
  double x(double w) const { return x0 + (std::log10(w) - lx0) / (lx1 - lx0) * kPlotW; }
  double y(double v) const { return y0 + kPlotH - (std::log10(v) - ly0) / (ly1 - ly0) * kPlotH; }
};

void frame(std::ostringstream& o, const Axes& a, const CoordResult& r, const std::string& panel) {
  o << "<rect x='" << a.x0 << "' y='" << a.y0 << "' width='" << kPlotW << "' height='" << kPlotH
    << "' fill='none' stroke='#444'/>\n";
  o << "<text x='" << a.x0 + kPlotW / 2 << "' y='" << a.y0 - 8 << "' text-anchor='middle' font-weight='bold'>"
    << svg_escape(panel.empty() ? "all vectors" : panel) << "</text>\n";
  for (auto w : r.widths)
    o << "<line x1='" << a.x(w) << "' x2='" << a.x(w) << "' y1='" << a.y0 << "' y2='" << a.y0 + kPlotH
      << "' stroke='#eee'/><text x='" << a.x(w) << "' y='" << a.y0 + kPlotH + 14 << "' text-anchor='middle'>" << w
      << "</text>\n";
  for (int e = int(std::ceil(a.ly0)); e <= int(std::floor(a.ly1)); ++e)
    o << "<line x1='" << a.x0 << "' x2='" << a.x0 + kPlotW << "' y1='" << a.y(std::pow(10.0, e)) << "' y2='"
      << a.y(std::pow(10.0, e)) << "' stroke='#eee'/><text x='" << a.x0 - 6 << "' y='" << a.y(std::pow(10.0, e)) + 4
      << "' text-anchor='end'>1e" << e << "</text>\n";
  o << "<text x='" << a.x0 + kPlotW / 2 << "' y='" << a.y0 + kPlotH + 30 << "' text-anchor='middle'>width n</text>\n";
  o << "<text transform='translate(" << a.x0 - 48 << "," << a.y0 + kPlotH / 2
    << ") rotate(-90)' text-anchor='middle'>rms of coordinates</text>\n";
}

// The series' points and line, and its predicted slope through them (least
// squares intercept with the slope fixed), dashed.
void curve(std::ostringstream& o, const Axes& a, const CoordResult& r, const CoordSeries& s, const std::string& c) {
  std::string pts;
  double icpt = 0;
  int k = 0;
  for (std::size_t i = 0; i < r.widths.size(); ++i) {
    if (!(s.rms[i] > 0)) continue;
    pts += num(a.x(r.widths[i]), 6) + "," + num(a.y(s.rms[i]), 6) + " ";
    o << "<circle cx='" << a.x(r.widths[i]) << "' cy='" << a.y(s.rms[i]) << "' r='2.5' fill='" << c << "'/>\n";
    icpt += std::log10(s.rms[i]) - s.predicted * std::log10(double(r.widths[i]));
    ++k;
  }
  o << "<polyline points='" << pts << "' fill='none' stroke='" << c << "' stroke-width='" << (s.disagree ? 3 : 1.5)
    << "'><title>" << svg_escape(s.name) << "</title></polyline>\n";
  if (!s.predicted_ok || s.predicted_zero || k == 0) return;
  icpt /= k;
  double w0 = double(r.widths.front()), w1 = double(r.widths.back());
  double v0 = std::pow(10.0, icpt + s.predicted * std::log10(w0)), v1 = std::pow(10.0, icpt + s.predicted * std::log10(w1));
  if (v0 <= 0 || v1 <= 0) return;
  o << "<line x1='" << a.x(w0) << "' y1='" << std::clamp(a.y(v0), a.y0, a.y0 + kPlotH) << "' x2='" << a.x(w1) << "' y2='"
    << std::clamp(a.y(v1), a.y0, a.y0 + kPlotH) << "' stroke='" << c << "' stroke-dasharray='5,4' opacity='0.8'/>\n";
}

void legend_entry(std::ostringstream& o, double x, double y, const CoordSeries& s, const std::string& c) {
  o << "<line x1='" << x << "' x2='" << x + 18 << "' y1='" << y - 4 << "' y2='" << y - 4 << "' stroke='" << c
    << "' stroke-width='3'/>\n";
  auto two = [](double v) { return num(std::round(v * 100) / 100 + 0.0, 3); };  // + 0.0: no "-0"
  std::string fit = s.fitted_ok ? two(s.fitted) : "n/a";
  std::string pred = s.predicted_zero ? "zero" : s.predicted_ok ? two(s.predicted) : "-";
  o << "<text x='" << x + 24 << "' y='" << y << "'" << (s.disagree ? " fill='#c00' font-weight='bold'" : "") << ">"
    << svg_escape(s.name) << "  " << fit << " (pred " << pred << ")" << (s.disagree ? "  DISAGREE" : "") << "</text>\n";
}

}  // namespace

std::string coordcheck_svg(const CoordResult& r, const std::string& title) {
  std::vector<std::string> panels;
  std::map<std::string, std::vector<std::size_t>> members;
  double lo = INFINITY, hi = -INFINITY;
  for (std::size_t i = 0; i < r.series.size(); ++i) {
    const auto& s = r.series[i];
    if (!members.count(s.panel)) panels.push_back(s.panel);
    members[s.panel].push_back(i);
    for (double v : s.rms)
      if (v > 0) lo = std::min(lo, std::log10(v)), hi = std::max(hi, std::log10(v));
  }
  if (!(lo <= hi)) lo = -1, hi = 1;
  lo = std::floor(lo - 0.05), hi = std::ceil(hi + 0.05);
  double lx0 = std::log10(double(r.widths.front())) - 0.1, lx1 = std::log10(double(r.widths.back())) + 0.1;
  std::vector<double> tops;
  double y = kTop;
  for (const auto& p : panels) {
    tops.push_back(y);
    y += std::max(kPlotH + 70, kLine * members[p].size() + 60);
  }
  std::ostringstream o;
  o << "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='"
    << kLeft + kPlotW + 30 + kLegendW << "' height='" << y << "' font-family='sans-serif' font-size='11'>\n";
  o << "<rect width='100%' height='100%' fill='white'/>\n";
  o << "<text x='10' y='20' font-size='14' font-weight='bold'>" << svg_escape(title) << ": coordinate size vs width</text>\n";
  o << "<text x='10' y='36'>" << r.seeds << " seeds per width; dashed: predicted slope; legend: fitted exponent "
    << "(predicted), DISAGREE beyond " << num(r.tolerance, 2) << " + 3 s.e.</text>\n";
  for (std::size_t p = 0; p < panels.size(); ++p) {
    Axes a{lx0, lx1, lo, hi, kLeft, tops[p] + 20};
    frame(o, a, r, panels[p]);
    double ly = a.y0 + 10;
    for (std::size_t k = 0; k < members[panels[p]].size(); ++k) {
      std::size_t i = members[panels[p]][k];
      curve(o, a, r, r.series[i], series_colour(k));
      legend_entry(o, kLeft + kPlotW + 30, ly + kLine * k, r.series[i], series_colour(k));
    }
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace netsor::cli
