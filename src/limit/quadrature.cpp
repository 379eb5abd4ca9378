// Gaussian quadrature rules (include/netsor/quadrature.hpp).
#include "netsor/quadrature.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <boost/math/quadrature/gauss_kronrod.hpp>
#include <boost/math/quadrature/tanh_sinh.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <boost/random/sobol.hpp>
#include <cmath>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>

namespace netsor::quad {

namespace {
// Normal quantile in double precision: Boost's default policy promotes to long
// double, which made it most of the cost of randomized QMC.
using DoublePolicy = boost::math::policies::policy<boost::math::policies::promote_double<false>>;
double normal_quantile(double u) { return -std::sqrt(2.0) * boost::math::erfc_inv(2.0 * u, DoublePolicy()); }
}  // namespace

const Rule& gauss_hermite(int order) {
  static std::mutex mu;
  static std::map<int, Rule> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(order);
  if (it != cache.end()) return it->second;
  // Probabilists' Hermite polynomials satisfy x He_k = He_{k+1} + k He_{k-1}:
  // the Jacobi matrix has zero diagonal and off-diagonal sqrt(k). Its
  // eigenvalues are the nodes; the squared first eigenvector components are the
  // weights (for the normalised weight phi, they sum to 1).
  Eigen::MatrixXd J = Eigen::MatrixXd::Zero(order, order);
  for (int k = 1; k < order; ++k) J(k, k - 1) = J(k - 1, k) = std::sqrt(double(k));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(J);
  Rule r;
  r.x.resize(order);
  r.w.resize(order);
  for (int i = 0; i < order; ++i) {
    r.x[i] = es.eigenvalues()(i);
    double v = es.eigenvectors()(0, i);
    r.w[i] = v * v;
  }
  // Symmetrise (the rule is exactly symmetric; remove eigen-solver noise).
  for (int i = 0; i < order / 2; ++i) {
    int j = order - 1 - i;
    double x = 0.5 * (r.x[j] - r.x[i]), w = 0.5 * (r.w[i] + r.w[j]);
    r.x[i] = -x;
    r.x[j] = x;
    r.w[i] = r.w[j] = w;
  }
  if (order % 2) r.x[order / 2] = 0.0;
  return cache.emplace(order, std::move(r)).first->second;
}

namespace {

std::vector<int> gh_orders(int dim) {
  switch (dim) {
    // Orders grow by ~1.5: the first pair that agrees stops the sequence, so
    // a finer progression wastes fewer evaluations than doubling.
    case 1: return {20, 30, 45, 68, 100, 150, 225, 340};
    case 2: return {16, 24, 36, 54, 80, 120, 180};
    // In 3 and more dimensions a stalled tensor rule is expensive: stop early
    // and let sparse grids or randomized QMC take over. (Evaluated in chunks,
    // so memory does not grow with the order.) Order 60 in 3-d is 216 000
    // points: what a smooth integrand with O(1) curvature needs for 1e-7.
    case 3: return {12, 18, 27, 40, 60};
    case 4: return {8, 12, 18, 27};
    // 5 and 6 dimensions: up to 3.2M and 3M points (a fraction of a second for
    // a handful of nonlinearities), where randomized QMC's 10^-3 is the
    // alternative; orders grow by ~1.35 so that a stalled rule stops cheaply.
    case 5: return {6, 8, 11, 15, 20};
    case 6: return {5, 7, 9, 12};
    default: return {};
  }
}

}  // namespace

Result tensor_gauss_hermite_batch(const BatchIntegrand& h, int dim, double tol, int only_order, double owed) {
  Result res;
  auto orders = only_order > 0 ? std::vector<int>{only_order} : gh_orders(dim);
  if (orders.empty()) throw std::invalid_argument("tensor Gauss-Hermite: no order sequence in " + std::to_string(dim) + "-d");
  // In chunks, as the sparse grid and QMC: the integrand's evaluation tape
  // holds one array per node, so memory is (nodes x chunk), not (nodes x order^dim).
  auto rule = [&](int order) {
    const Rule& r = gauss_hermite(order);
    long total = 1;
    for (int d = 0; d < dim; ++d) total *= order;
    constexpr long kChunk = 1 << 14;
    double sum = 0;
    std::vector<Eigen::ArrayXd> xi(dim);
    for (long start = 0; start < total; start += kChunk) {
      long m = std::min(kChunk, total - start);
      for (auto& x : xi) x.resize(m);
      Eigen::ArrayXd w = Eigen::ArrayXd::Ones(m);
      for (long p = 0; p < m; ++p) {
        long rem = start + p;
        for (int d = 0; d < dim; ++d) {
          int k = int(rem % order);
          rem /= order;
          xi[d](p) = r.x[k];
          w(p) *= r.w[k];
        }
      }
      sum += (w * h(xi)).sum();
    }
    res.evals += total;
    return sum;
  };
  double prev = rule(orders[0]);
  int used = orders[0];
  double err = INFINITY;
  if (only_order > 0) res.converged = std::isfinite(prev);
  double ratio_before = INFINITY;  // d_{N-1} / d_{N-2}
  for (std::size_t i = 1; i < orders.size(); ++i) {
    double cur = rule(orders[i]);
    double before = err;
    err = std::abs(cur - prev);
    // Gauss-Hermite converges geometrically on an entire integrand: the
    // error of order N is then about d_N * (d_N / d_{N-1}), far below d_N.
    // On one analytic only in a strip (tanh, sigmoid, softplus: poles off the
    // real axis) it converges like exp(-c sqrt N), more slowly with each order,
    // and its error can alternate in sign, so that one small ratio of
    // differences is chance (calibration case f192: ratios 0.07, 0.03, then a
    // true error 0.28 d_N). Hence the larger of the last two ratios, both
    // required below 1/4, and a factor 10.
    double ratio = std::isfinite(before) && before > 0 ? err / before : INFINITY;
    double worst_ratio = std::max(ratio, ratio_before);
    res.geometric_error = worst_ratio <= 0.25 ? std::max(10 * err * worst_ratio, 1e-15 * std::abs(cur)) : INFINITY;
    ratio_before = ratio;
    prev = cur;
    used = orders[i];
    if (err <= tol * std::max(1.0, std::abs(cur))) {
      res.converged = true;
      break;
    }
    // The last difference at best (10x an order). Before the last, most
    // expensive order, at the rate just seen: convergence often speeds up
    // over the early orders, so only the last step is judged by it.
    bool last_step = i + 2 == orders.size();
    double rate = last_step && std::isfinite(ratio) ? std::clamp(ratio, 0.1, 1.0) : 0.1;
    double reachable = err * std::pow(rate, double(orders.size() - 1 - i));
    if (owed > 0 && reachable > 10 * owed * std::max(1.0, std::abs(cur))) {
      break;
    }
  }
  res.value = prev;
  res.abs_error = err;
  res.order = used;
  std::ostringstream m;
  m << "Gauss-Hermite order " << used << (dim > 1 ? " (tensor, " + std::to_string(dim) + "-d)" : "");
  res.method = m.str();
  return res;
}

namespace {

constexpr double kBox = 12.0;  // P(|xi| > 12) ~ 4e-33: the truncated tail is negligible

struct Budget {};  // thrown when the evaluation budget is spent

struct Nested {
  const Integrand& h;
  int dim;
  const std::vector<Hyperplane>& kinks;
  double tol;
  long max_evals;
  long evals = 0;
  double inner_err = 0;
  std::vector<double> xi;
  bool tanh_sinh = false;  // the rule per coordinate: Gauss-Kronrod 31, or tanh-sinh

  // Breakpoints for coordinate `level` with coordinates < level fixed: kink
  // hyperplanes that do not involve later coordinates cross this one at a
  // point; in 2-d, pairs of kink lines meet at points that are breakpoints
  // of the outer integrand.
  std::vector<double> breaks(int level) const {
    std::vector<double> b{-kBox, kBox};
    auto scale = [](const Hyperplane& k) {
      double s = 0;
      for (double v : k.normal) s = std::max(s, std::abs(v));
      return s;
    };
    for (const auto& k : kinks) {
      double s = scale(k);
      bool later = false;
      for (int i = level + 1; i < dim; ++i) later |= std::abs(k.normal[i]) > 1e-13 * s;
      if (later || std::abs(k.normal[level]) <= 1e-13 * s) continue;
      double rhs = k.offset;
      for (int i = 0; i < level; ++i) rhs += k.normal[i] * xi[i];
      b.push_back(-rhs / k.normal[level]);
    }
    if (dim == 2 && level == 0) {
      for (std::size_t p = 0; p < kinks.size(); ++p)
        for (std::size_t q = p + 1; q < kinks.size(); ++q) {
          const auto &P = kinks[p], &Q = kinks[q];
          double det = P.normal[0] * Q.normal[1] - Q.normal[0] * P.normal[1];
          if (std::abs(det) < 1e-14 * (scale(P) * scale(Q) + 1e-300)) continue;
          b.push_back((Q.offset * P.normal[1] - P.offset * Q.normal[1]) / det);
        }
    }
    std::sort(b.begin(), b.end());
    std::vector<double> out;
    for (double v : b)
      if (v >= -kBox && v <= kBox && (out.empty() || v - out.back() > 1e-12)) out.push_back(v);
    return out;
  }

  double integrate(int level, double& err) {
    using GK = boost::math::quadrature::gauss_kronrod<double, 31>;
    auto pts = breaks(level);
    double sum = 0;
    err = 0;
    for (std::size_t i = 0; i + 1 < pts.size(); ++i) {
      double e = 0;
      auto f = [&](double t) -> double {
        xi[level] = t;
        double w = std::exp(-0.5 * t * t) * 0.3989422804014327;
        if (level + 1 == dim) {
          if (++evals > max_evals) throw Budget{};
          return w * h(xi.data());
        }
        double ie = 0;
        double v = integrate(level + 1, ie);
        inner_err = std::max(inner_err, ie);
        return w * v;
      };
      double L1 = 0;
      if (tanh_sinh) {
        // Double-exponential: endpoint singularities (|t|^0.5 at a split
        // point) cost it little; a rule of another family than Gauss-Kronrod.
        thread_local boost::math::quadrature::tanh_sinh<double> ts(12);
        std::function<double(double)> g = f;
        sum += ts.integrate(g, pts[i], pts[i + 1], tol, &e, &L1);
      } else {
        sum += GK::integrate(f, pts[i], pts[i + 1], level + 1 == dim ? 15 : 10, tol, &e, &L1);
      }
      err += e;
    }
    return sum;
  }
};

}  // namespace

Result nested_gauss_kronrod(const Integrand& h, int dim, const std::vector<Hyperplane>& kinks, double tol,
                            long max_evals, bool tanh_sinh) {
  Nested n{h, dim, kinks, tol, max_evals, 0, 0.0, {}, tanh_sinh};
  n.xi.assign(dim, 0.0);
  Result r;
  try {
    double err = 0;
    r.value = n.integrate(0, err);
    r.abs_error = err + n.inner_err;
    r.converged = std::isfinite(r.value);
  } catch (const Budget&) {
    r.converged = false;
  }
  r.evals = n.evals;
  std::ostringstream m;
  m << (tanh_sinh ? "tanh-sinh" : "adaptive Gauss-Kronrod 31") << (dim > 1 ? " (nested, " + std::to_string(dim) + "-d)" : "");
  if (!kinks.empty()) m << " split at " << kinks.size() << " kink" << (kinks.size() > 1 ? "s" : "");
  r.method = m.str();
  return r;
}


namespace {

// All multi-indices k (k_i >= 1) with sum_i (k_i - 1) == s.
void compositions(int dim, int s, std::vector<int>& k, int i, const std::function<void()>& f) {
  if (i == dim - 1) {
    k[i] = 1 + s;
    f();
    return;
  }
  for (int a = 0; a <= s; ++a) {
    k[i] = 1 + a;
    compositions(dim, s - a, k, i + 1, f);
  }
}

double binomial(int n, int r) {
  double v = 1;
  for (int i = 1; i <= r; ++i) v = v * (n - r + i) / i;
  return v;
}

}  // namespace

Result sparse_grid(const BatchIntegrand& h, int dim, double tol, long max_points, int only_level) {
  // A(l, d) = sum over l-d+1 <= s <= l of (-1)^(l-s) C(d-1, l-s) sum_{|k|-d = s} Q_k1 x ... x Q_kd,
  // with Q_k the Gauss-Hermite rule of order 2k - 1.
  auto level = [&](int l, long& points) -> double {
    std::vector<double> X;  // dim-major point coordinates, gathered over all grids
    std::vector<double> W;
    std::vector<int> k(dim);
    for (int s = std::max(0, l - dim + 1); s <= l; ++s) {
      double coef = ((l - s) % 2 ? -1.0 : 1.0) * binomial(dim - 1, l - s);
      compositions(dim, s, k, 0, [&] {
        long n = 1;
        for (int d = 0; d < dim; ++d) n *= 2 * k[d] - 1;
        std::vector<int> idx(dim, 0);
        for (long p = 0; p < n; ++p) {
          double w = coef;
          for (int d = 0; d < dim; ++d) {
            const Rule& r = gauss_hermite(2 * k[d] - 1);
            X.push_back(r.x[idx[d]]);
            w *= r.w[idx[d]];
          }
          W.push_back(w);
          for (int d = 0; d < dim && ++idx[d] == 2 * k[d] - 1; ++d) idx[d] = 0;
        }
      });
    }
    long total = (long)W.size();
    points = total;
    double sum = 0;
    constexpr long kChunk = 1 << 14;
    std::vector<Eigen::ArrayXd> xi(dim);
    for (long start = 0; start < total; start += kChunk) {
      long m = std::min(kChunk, total - start);
      for (int d = 0; d < dim; ++d) {
        xi[d].resize(m);
        for (long p = 0; p < m; ++p) xi[d](p) = X[(start + p) * dim + d];
      }
      Eigen::ArrayXd v = h(xi);
      for (long p = 0; p < m; ++p) sum += W[start + p] * v(p);
    }
    return sum;
  };
  Result r;
  long pts = 0;
  int l = only_level > 0 ? only_level : 2;
  double prev = level(l, pts);
  r.evals += pts;
  double err = INFINITY;
  if (only_level > 0) r.converged = std::isfinite(prev);
  while (only_level <= 0) {
    // Estimate the next level's size before building it.
    long next = 0;
    {
      std::vector<int> k(dim);
      for (int s = std::max(0, l + 1 - dim + 1); s <= l + 1; ++s)
        compositions(dim, s, k, 0, [&] {
          long n = 1;
          for (int d = 0; d < dim; ++d) n *= 2 * k[d] - 1;
          next += n;
        });
    }
    if (r.evals + next > max_points) break;
    ++l;
    double cur = level(l, pts);
    r.evals += pts;
    err = std::abs(cur - prev);
    prev = cur;
    if (err <= tol * std::max(1.0, std::abs(cur))) {
      r.converged = true;
      break;
    }
  }
  r.value = prev;
  r.abs_error = err;
  r.order = l;
  std::ostringstream m;
  m << "sparse grid (Smolyak on Gauss-Hermite, level " << l << ", " << pts << " points, " << dim << "-d)";
  r.method = m.str();
  return r;
}

namespace {
// The normal points of one randomized Sobol set (dim arrays per shift). They
// are the same for every expectation of a given dimension and seed, so they
// are made once (the inverse normal CDF was most of QMC's cost) and kept while
// the cache stays under 256 MiB.
using PointSet = std::vector<std::vector<Eigen::ArrayXd>>;  // [shift][coordinate]
std::shared_ptr<const PointSet> qmc_points(int dim, std::uint64_t seed, int shifts, int points) {
  static std::mutex mu;
  static std::map<std::tuple<int, std::uint64_t, int, int>, std::shared_ptr<const PointSet>> cache;
  static std::size_t cached_bytes = 0;
  auto key = std::make_tuple(dim, seed, shifts, points);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  auto set = std::make_shared<PointSet>(shifts, std::vector<Eigen::ArrayXd>(dim, Eigen::ArrayXd(points)));
  std::vector<double> shift(dim);
  for (int s = 0; s < shifts; ++s) {
    for (auto& v : shift) v = U(rng);
    boost::random::sobol gen(dim);
    for (int p = 0; p < points; ++p)
      for (int d = 0; d < dim; ++d) {
        double v = double(gen()) / (double(gen.max()) + 1.0) + shift[d];
        v -= std::floor(v);
        (*set)[s][d](p) = normal_quantile(std::clamp(v, 1e-300, 1.0 - 1e-16));
      }
  }
  std::size_t bytes = std::size_t(shifts) * dim * points * sizeof(double);
  std::lock_guard<std::mutex> lock(mu);
  if (cached_bytes + bytes <= (std::size_t(256) << 20)) {
    cache.emplace(key, set);
    cached_bytes += bytes;
  }
  return set;
}
}  // namespace

Result randomized_qmc_batch(const BatchIntegrand& h, int dim, std::uint64_t seed, int shifts, int points) {
  constexpr int kChunk = 4096;
  auto set = qmc_points(dim, seed, shifts, points);
  std::vector<double> means;
  std::vector<Eigen::ArrayXd> xi(dim);
  Result r;
  for (int s = 0; s < shifts; ++s) {
    double sum = 0;
    for (int done = 0; done < points; done += kChunk) {
      int m = std::min(kChunk, points - done);
      for (int d = 0; d < dim; ++d) xi[d] = (*set)[s][d].segment(done, m);
      sum += h(xi).sum();
    }
    r.evals += points;
    means.push_back(sum / points);
  }
  double mean = 0;
  for (double m : means) mean += m;
  mean /= shifts;
  double var = 0;
  for (double m : means) var += (m - mean) * (m - mean);
  var /= (shifts - 1);
  r.value = mean;
  // Three standard errors: with 16 independent randomizations the estimate's
  // t-statistic has 15 degrees of freedom, and 3 s.e. covers ~99% of cases.
  r.abs_error = 3.0 * std::sqrt(var / shifts);
  r.converged = std::isfinite(mean);
  std::ostringstream m;
  m << "randomized QMC (Sobol, " << shifts << " shifts x " << points << " points, " << dim << "-d, 3 s.e.)";
  r.method = m.str();
  return r;
}

}  // namespace netsor::quad
