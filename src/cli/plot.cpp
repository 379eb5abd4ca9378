#include "plot.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "report.hpp"

namespace netsor::cli {

std::string svg_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string series_colour(std::size_t i) {
  static const char* base[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  if (i < 10) return base[i];
  std::ostringstream s;
  s << "hsl(" << int(std::fmod(i * 137.508, 360.0)) << ",70%," << (i % 2 ? 35 : 50) << "%)";
  return s.str();
}

namespace {

constexpr double kWidth = 900;
// The error panel, and the grid of small panels below it.
constexpr double kErrX = 80, kErrY = 60, kErrW = 500, kErrH = 280, kLegendX = kErrX + kErrW + 24;
constexpr int kColumns = 3;
constexpr double kCellW = kWidth / kColumns, kCellH = 230, kSmallW = kCellW - 95, kSmallH = 150;
constexpr int kLegendRows = 14;  // then "... and k more", above the guide's entry

// A linear map from [a0, a1] to [b0, b1].
struct Scale {
  double a0, a1, b0, b1;
  double operator()(double v) const { return b0 + (v - a0) / (a1 - a0) * (b1 - b0); }
};

bool failing(const exec::Series& s) {
  return s.verdict.rfind("not converging", 0) == 0 || s.verdict.rfind("unstable", 0) == 0;
}

// The limit at width w: its value, or c w^e for a quantity that vanishes like that.
double limit_at(const exec::Series& s, double w) {
  const auto& l = s.limit;
  return l.order < 0 && l.coefficient != 0 ? l.coefficient * std::pow(w, l.order) : l.value;
}

void error_panel(std::ostringstream& o, const exec::ConvergeResult& r) {
  double ly0 = INFINITY, ly1 = -INFINITY;
  for (const auto& s : r.series)
    for (const auto& row : s.rows)
      if (row.rmse > 0) ly0 = std::min(ly0, std::log10(row.rmse)), ly1 = std::max(ly1, std::log10(row.rmse));
  o << "<text x='" << kErrX << "' y='" << kErrY - 10 << "' font-weight='bold'>rms error over seeds, |value - limit|, "
    << "against width</text>\n";
  if (!std::isfinite(ly0)) {
    o << "<text x='" << kErrX << "' y='" << kErrY + 30 << "'>no nonzero errors to plot (exact at every width)</text>\n";
    return;
  }
  ly0 = std::floor(ly0) - 0.2;
  ly1 = std::ceil(ly1) + 0.2;
  double lx0 = std::log10(double(r.widths.front())) - 0.05, lx1 = std::log10(double(r.widths.back())) + 0.05;
  Scale X{lx0, lx1, kErrX, kErrX + kErrW}, Y{ly0, ly1, kErrY + kErrH, kErrY};
  o << "<rect x='" << kErrX << "' y='" << kErrY << "' width='" << kErrW << "' height='" << kErrH
    << "' fill='none' stroke='#444'/>\n";
  for (int e = int(std::ceil(ly0)); e <= int(std::floor(ly1)); ++e)
    o << "<line x1='" << kErrX << "' x2='" << kErrX + kErrW << "' y1='" << Y(e) << "' y2='" << Y(e)
      << "' stroke='#e4e4e4'/><text x='" << kErrX - 6 << "' y='" << Y(e) + 4 << "' text-anchor='end'>1e" << e
      << "</text>\n";
  for (auto w : r.widths) {
    double x = X(std::log10(double(w)));
    o << "<line x1='" << x << "' x2='" << x << "' y1='" << kErrY << "' y2='" << kErrY + kErrH
      << "' stroke='#eee'/><text x='" << x << "' y='" << kErrY + kErrH + 16 << "' text-anchor='middle'>" << w
      << "</text>\n";
  }
  o << "<text x='" << kErrX + kErrW / 2 << "' y='" << kErrY + kErrH + 34 << "' text-anchor='middle'>width n</text>\n";
  // The n^{-1/2} guide through the median of the smallest width's errors.
  std::vector<double> first;
  for (const auto& s : r.series)
    if (!s.rows.empty() && s.rows.front().rmse > 0) first.push_back(std::log10(s.rows.front().rmse));
  if (!first.empty()) {
    std::nth_element(first.begin(), first.begin() + first.size() / 2, first.end());
    double y0 = first[first.size() / 2], x0 = std::log10(double(r.widths.front())), x1 = std::log10(double(r.widths.back()));
    o << "<line x1='" << X(x0) << "' y1='" << Y(y0) << "' x2='" << X(x1) << "' y2='" << Y(y0 - 0.5 * (x1 - x0))
      << "' stroke='#000' stroke-dasharray='6 4'/>\n";
  }
  int shown = 0;
  for (std::size_t i = 0; i < r.series.size(); ++i) {
    const auto& s = r.series[i];
    std::string c = series_colour(i), pts;
    for (const auto& row : s.rows)
      if (row.rmse > 0) {
        double x = X(std::log10(double(row.width))), y = Y(std::log10(row.rmse));
        pts += num(x, 6) + "," + num(y, 6) + " ";
        o << "<circle cx='" << x << "' cy='" << y << "' r='2.5' fill='" << c << "'/>\n";
      }
    if (pts.empty()) continue;
    o << "<polyline points='" << pts << "' fill='none' stroke='" << c << "' stroke-width='" << (failing(s) ? 3 : 1.5)
      << "'><title>" << svg_escape(s.name + ": " + s.verdict) << "</title></polyline>\n";
    if (shown < kLegendRows) {
      double y = kErrY + 10 + 17 * shown;
      std::string slope = std::isnan(s.slope) ? "n/a" : num(std::round(s.slope * 100) / 100 + 0.0, 3);
      o << "<line x1='" << kLegendX << "' x2='" << kLegendX + 18 << "' y1='" << y - 4 << "' y2='" << y - 4
        << "' stroke='" << c << "' stroke-width='3'/><text x='" << kLegendX + 24 << "' y='" << y << "'"
        << (failing(s) ? " fill='#c00' font-weight='bold'" : "") << ">" << svg_escape(s.name) << "  slope " << slope
        << (failing(s) ? "  NOT CONVERGING" : "") << "</text>\n";
    }
    ++shown;
  }
  if (shown > kLegendRows)
    o << "<text x='" << kLegendX << "' y='" << kErrY + 10 + 17 * kLegendRows << "'>... and " << shown - kLegendRows
      << " more (each has its own panel below)</text>\n";
  double gy = kErrY + kErrH - 6;
  o << "<line x1='" << kLegendX << "' x2='" << kLegendX + 18 << "' y1='" << gy - 4 << "' y2='" << gy - 4
    << "' stroke='#000' stroke-dasharray='6 4'/><text x='" << kLegendX + 24 << "' y='" << gy
    << "'>n^-1/2 guide</text>\n";
}

// One series: mean +- sem at each width, the limit as a line with its error band.
void series_panel(std::ostringstream& o, const exec::ConvergeResult& r, std::size_t i, double x0, double y0) {
  const auto& s = r.series[i];
  std::string c = series_colour(i);
  double lo = INFINITY, hi = -INFINITY;
  auto widen = [&](double v) { lo = std::min(lo, v), hi = std::max(hi, v); };
  for (const auto& row : s.rows) widen(row.mean - row.sem), widen(row.mean + row.sem);
  for (auto w : r.widths) widen(limit_at(s, double(w)) - s.limit.abs_error), widen(limit_at(s, double(w)) + s.limit.abs_error);
  if (!(hi > lo)) lo -= 1, hi += 1;  // a constant series
  double pad = 0.1 * (hi - lo);
  lo -= pad, hi += pad;
  double lx0 = std::log10(double(r.widths.front())) - 0.08, lx1 = std::log10(double(r.widths.back())) + 0.08;
  Scale X{lx0, lx1, x0, x0 + kSmallW}, Y{lo, hi, y0 + kSmallH, y0};
  bool bad = failing(s);
  std::string verdict = s.verdict.size() > 44 ? s.verdict.substr(0, 41) + "..." : s.verdict;
  o << "<text x='" << x0 << "' y='" << y0 - 22 << "' font-weight='bold'>" << svg_escape(s.name) << "</text>\n";
  o << "<text x='" << x0 << "' y='" << y0 - 8 << "' font-size='11'" << (bad ? " fill='#c00' font-weight='bold'" : " fill='#555'")
    << "><title>" << svg_escape(s.verdict) << "</title>" << svg_escape(verdict) << "</text>\n";
  o << "<rect x='" << x0 << "' y='" << y0 << "' width='" << kSmallW << "' height='" << kSmallH
    << "' fill='none' stroke='" << (bad ? "#c00" : "#444") << "' stroke-width='" << (bad ? 2 : 1) << "'/>\n";
  for (double v : {lo + pad, (lo + hi) / 2, hi - pad})
    o << "<text x='" << x0 - 5 << "' y='" << Y(v) + 4 << "' text-anchor='end' font-size='10'>" << num(v, 4) << "</text>\n";
  for (auto w : r.widths)
    o << "<text x='" << X(std::log10(double(w))) << "' y='" << y0 + kSmallH + 13 << "' text-anchor='middle' font-size='10'>"
      << w << "</text>\n";
  // The limit (a curve for c n^e) and its error band, at least a pixel thick.
  std::string line, band_top, band_bottom;
  for (int k = 0; k <= 32; ++k) {
    double lx = lx0 + (lx1 - lx0) * k / 32, L = limit_at(s, std::pow(10.0, lx));
    double yt = Y(L + s.limit.abs_error), yb = Y(L - s.limit.abs_error);
    if (yb - yt < 1) yt = Y(L) - 0.5, yb = Y(L) + 0.5;
    line += num(X(lx), 6) + "," + num(Y(L), 6) + " ";
    band_top += num(X(lx), 6) + "," + num(yt, 6) + " ";
    band_bottom = num(X(lx), 6) + "," + num(yb, 6) + " " + band_bottom;
  }
  o << "<polygon points='" << band_top << band_bottom << "' fill='#999' opacity='0.35'/>\n";
  o << "<polyline points='" << line << "' fill='none' stroke='#222' stroke-width='1.2'><title>limit "
    << num(s.limit.value, 10) << " +- " << err(s.limit.abs_error) << "</title></polyline>\n";
  for (const auto& row : s.rows) {
    double x = X(std::log10(double(row.width)));
    o << "<line x1='" << x << "' x2='" << x << "' y1='" << Y(row.mean - row.sem) << "' y2='" << Y(row.mean + row.sem)
      << "' stroke='" << c << "' stroke-width='1.5'/><circle cx='" << x << "' cy='" << Y(row.mean) << "' r='3' fill='"
      << c << "'><title>n = " << row.width << ": " << num(row.mean, 8) << " +- " << err(row.sem) << "</title></circle>\n";
  }
}

}  // namespace

std::string converge_svg(const exec::ConvergeResult& r, const std::string& title) {
  std::size_t n = r.series.size();
  int rows = int((n + kColumns - 1) / kColumns);
  double grid_y = kErrY + kErrH + 90;
  double height = r.widths.empty() ? 120 : grid_y + rows * kCellH + 10;
  std::ostringstream o;
  o << "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='" << kWidth
    << "' height='" << height << "' viewBox='0 0 " << kWidth << " " << height
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  o << "<text x='10' y='22' font-size='15' font-weight='bold'>" << svg_escape(title)
    << ": finite widths against the limit</text>\n";
  if (r.widths.empty()) {
    o << "<text x='10' y='60'>no width ran</text>\n</svg>\n";
    return o.str();
  }
  error_panel(o, r);
  o << "<text x='10' y='" << grid_y - 40 << "' font-weight='bold'>each quantity: mean +- standard error over seeds; "
    << "the limit with its error band (grey)</text>\n";
  for (std::size_t i = 0; i < n; ++i)
    series_panel(o, r, i, 70 + (i % kColumns) * kCellW, grid_y + (i / kColumns) * kCellH);
  o << "</svg>\n";
  return o.str();
}

}  // namespace netsor::cli
