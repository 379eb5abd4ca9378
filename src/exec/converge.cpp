// netsor converge: the executor over widths, beside the limit (include/netsor/converge.hpp).
#include "netsor/converge.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
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

namespace {

// Seeds run at width w for a converge at the largest width `largest`.
int seeds_at(const ConvergeOptions& o, std::int64_t w, std::int64_t largest) {
  return o.more_seeds_when_small ? o.run.seeds * int(std::clamp<std::int64_t>(largest / w, 1, 8)) : o.run.seeds;
}

double time_one_seed(const ir::Program& p, const Options& o, std::int64_t width) {
  Options one = o;
  one.width = width;
  one.seeds = 1;
  one.threads = 1;
  one.progress = nullptr;
  one.on_operators = nullptr;
  auto t0 = std::chrono::steady_clock::now();
  run(p, one);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

namespace {

// One seed's time as a + b n^2, from pilots at two small widths (the second
// timed twice, the faster kept: a cold cache or a busy core only slows a run).
struct SeedCost {
  double a = 0, b = 0;
  double at(std::int64_t w) const { return a + b * double(w) * double(w); }
};

SeedCost seed_cost(const ir::Program& p, const Options& o) {
  constexpr std::int64_t kSmall = 512, kLarge = 1024;
  double t1 = time_one_seed(p, o, kSmall);
  double t2 = std::min(time_one_seed(p, o, kLarge), time_one_seed(p, o, kLarge));
  SeedCost c;
  c.b = std::max(0.0, (t2 - t1) / double(kLarge * kLarge - kSmall * kSmall));
  c.a = std::max(0.0, t1 - c.b * double(kSmall * kSmall));
  return c;
}

double wall(const Options& o, double per_seed) {
  int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  int concurrent = std::max(1, std::min(threads, o.seeds));
  return per_seed * std::ceil(double(o.seeds) / concurrent);
}

}  // namespace

double predicted_seconds(const ir::Program& p, const Options& o) {
  // A small width is cheaper to time than to model.
  return wall(o, o.width <= 1024 ? time_one_seed(p, o, o.width) : seed_cost(p, o).at(o.width));
}

double predicted_seconds(const ir::Program& p, const ConvergeOptions& o) {
  if (o.widths.empty()) return 0;
  std::int64_t largest = *std::max_element(o.widths.begin(), o.widths.end());
  SeedCost cost = seed_cost(p, o.run);
  double total = 0;
  for (auto w : o.widths) {
    Options ro = o.run;
    ro.seeds = seeds_at(o, w, largest);
    total += wall(ro, cost.at(w));
  }
  return total;
}

ConvergeResult converge(const ir::Program& p, const ConvergeOptions& o) {
  limit::Result lim = limit::compute(p, o.limit);
  ConvergeResult res;
  res.seeds = o.run.seeds;
  for (const auto& q : lim.quantities) res.series.push_back({q.name, q.estimate, {}, 0, 0, ""});
  std::size_t limit_bytes = o.run.memory_limit ? o.run.memory_limit : default_memory_limit();
  for (auto w : o.widths) {
    std::size_t need = peak_bytes(p, w, o.run.float32, limit_bytes);
    if (need > limit_bytes) {
      res.notes.push_back("width " + std::to_string(w) + " skipped: it needs " + std::to_string(need) +
                          " bytes per seed, over the memory limit of " + std::to_string(limit_bytes));
      continue;
    }
    Options ro = o.run;
    ro.width = w;
    ro.seeds = seeds_at(o, w, *std::max_element(o.widths.begin(), o.widths.end()));
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

}  // namespace netsor::exec
