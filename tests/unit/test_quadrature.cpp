// Each quadrature rule of include/netsor/quadrature.hpp on integrands with known
// Gaussian expectations (closed forms; the constants were evaluated with mpmath
// at 30 digits). Each check asks two things of a result: the true error is
// within the reported error (plus rounding), and the reported error is not
// uselessly large.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "netsor/quadrature.hpp"

using namespace netsor;

namespace {

constexpr double kRound = 1e-14;  // rounding allowance for sums of O(1) terms

void check_covers(const quad::Result& r, double exact, double max_error) {
  INFO(r.method << ": value " << r.value << " +- " << r.abs_error << ", exact " << exact << ", true error "
                << std::abs(r.value - exact));
  CHECK(r.converged);
  CHECK(std::abs(r.value - exact) <= r.abs_error + kRound * std::max(1.0, std::abs(exact)));
  CHECK(r.abs_error <= max_error);
}

double odd_double_factorial(int k) {  // (k-1)!! for even k: E xi^k
  double v = 1;
  for (int i = k - 1; i > 1; i -= 2) v *= i;
  return v;
}

// Batch integrand from a pointwise one.
quad::BatchIntegrand batch(std::function<double(const double*)> f) {
  return [f](const std::vector<Eigen::ArrayXd>& xi) {
    Eigen::ArrayXd out(xi[0].size());
    std::vector<double> p(xi.size());
    for (Eigen::Index i = 0; i < out.size(); ++i) {
      for (std::size_t d = 0; d < xi.size(); ++d) p[d] = xi[d](i);
      out(i) = f(p.data());
    }
    return out;
  };
}

}  // namespace

TEST_CASE("Gauss-Hermite rules: weights sum to 1, symmetric nodes, exact moments up to degree 2 order - 1") {
  for (int order : {1, 2, 5, 12, 20, 45}) {
    INFO("order " << order);
    const auto& r = quad::gauss_hermite(order);
    REQUIRE(r.x.size() == std::size_t(order));
    double sum = 0;
    for (double w : r.w) {
      CHECK(w > 0);
      sum += w;
    }
    CHECK(std::abs(sum - 1) <= 1e-14);
    for (int i = 0; i < order; ++i) CHECK(r.x[i] == -r.x[order - 1 - i]);
    for (int k = 2; k <= std::min(2 * order - 1, 40); k += 2) {
      double m = 0;
      for (int i = 0; i < order; ++i) m += r.w[i] * std::pow(r.x[i], k);
      INFO("moment " << k);
      // Golub-Welsch gives the small weights of the outer nodes to absolute, not
      // relative, accuracy; moments of degree 28-40 (carried by those nodes) come
      // out 1e-12 .. 1e-10 relative today, hence the looser bound there.
      CHECK(std::abs(m / odd_double_factorial(k) - 1) <= (k <= 24 ? 1e-12 : 1e-9));
    }
  }
}

TEST_CASE("tensor Gauss-Hermite: smooth integrands in 1-4 dimensions") {
  // 1-d, poles at +-i (slow for Gauss-Hermite): E 1/(1 + xi^2) = sqrt(pi/2) e^{1/2} erfc(1/sqrt 2).
  check_covers(quad::tensor_gauss_hermite_batch([](const std::vector<Eigen::ArrayXd>& x) { return 1 / (1 + x[0] * x[0]); },
                                                1, 1e-10),
               0.655679542418798471543871230731, 1e-8);
  // 2-d ridge: E cos(a.xi) = exp(-|a|^2 / 2).
  check_covers(quad::tensor_gauss_hermite_batch(
                   [](const std::vector<Eigen::ArrayXd>& x) { return (1.3 * x[0] - 0.7 * x[1]).cos(); }, 2, 1e-10),
               std::exp(-(1.3 * 1.3 + 0.7 * 0.7) / 2), 1e-8);
  // 3-d: E xi1^2 xi2^2 cos(xi3) = e^{-1/2}; E exp(b.xi) = exp(|b|^2 / 2).
  check_covers(quad::tensor_gauss_hermite_batch(
                   [](const std::vector<Eigen::ArrayXd>& x) { return x[0] * x[0] * x[1] * x[1] * x[2].cos(); }, 3, 1e-10),
               std::exp(-0.5), 1e-8);
  check_covers(quad::tensor_gauss_hermite_batch(
                   [](const std::vector<Eigen::ArrayXd>& x) { return (0.3 * x[0] - 0.2 * x[1] + 0.25 * x[2]).exp(); }, 3,
                   1e-10),
               std::exp((0.09 + 0.04 + 0.0625) / 2), 1e-8);
  // 4-d product: E prod cos(xi_i / 2) = exp(-4 / 8).
  check_covers(quad::tensor_gauss_hermite_batch(
                   [](const std::vector<Eigen::ArrayXd>& x) {
                     return (0.5 * x[0]).cos() * (0.5 * x[1]).cos() * (0.5 * x[2]).cos() * (0.5 * x[3]).cos();
                   },
                   4, 1e-10),
               std::exp(-0.5), 1e-8);
}

TEST_CASE("nested Gauss-Kronrod: kinked integrands split at their hyperplanes") {
  const double tol = 1e-10;
  const long budget = 20'000'000;
  // 1-d: E relu(xi - 0.3) = phi(0.3) - 0.3 (1 - Phi(0.3)).
  check_covers(quad::nested_gauss_kronrod([](const double* x) { return std::max(x[0] - 0.3, 0.0); }, 1,
                                          {{-0.3, {1.0}}}, tol, budget),
               0.266761242117209881042024563762, 1e-8);
  // 2-d, an oblique kink: xi1 + xi2/2 - 0.3 ~ N(-0.3, 1.25), E relu = mu Phi(mu/s) + s phi(mu/s).
  check_covers(quad::nested_gauss_kronrod([](const double* x) { return std::max(x[0] + 0.5 * x[1] - 0.3, 0.0); }, 2,
                                          {{-0.3, {1.0, 0.5}}}, tol, budget),
               0.311992492614311012578996947371, 1e-8);
  // 2-d, two crossing discontinuities: E step(u) step(v), corr(u, v) = 0.6: (pi - arccos 0.6) / (2 pi).
  check_covers(quad::nested_gauss_kronrod(
                   [](const double* x) { return (x[0] > 0 && 0.6 * x[0] + 0.8 * x[1] > 0) ? 1.0 : 0.0; }, 2,
                   {{0.0, {1.0, 0.0}}, {0.0, {0.6, 0.8}}}, tol, budget),
               0.352416382349566721407161866187, 1e-8);
  // 3-d: E |xi1 - xi2| step(xi3) = (2 / sqrt(pi)) / 2.
  check_covers(quad::nested_gauss_kronrod(
                   [](const double* x) { return std::abs(x[0] - x[1]) * (x[2] > 0 ? 1.0 : 0.0); }, 3,
                   {{0.0, {1.0, -1.0, 0.0}}, {0.0, {0.0, 0.0, 1.0}}}, tol, budget),
               0.564189583547756286948079451561, 1e-8);
  // An exhausted budget is reported as not converged, never as a value.
  auto r = quad::nested_gauss_kronrod([](const double* x) { return std::abs(x[0] - x[1]) * std::cos(5 * x[2]); }, 3,
                                      {{0.0, {1.0, -1.0, 0.0}}}, tol, 1000);
  CHECK(!r.converged);
}

TEST_CASE("sparse grid: smooth integrands in 4-6 dimensions") {
  // Products and ridges of analytic functions, E exp(b.xi) = exp(|b|^2/2), E cos(a.xi) = exp(-|a|^2/2).
  check_covers(quad::sparse_grid(
                   [](const std::vector<Eigen::ArrayXd>& x) {
                     return (0.3 * x[0] + 0.2 * x[1] - 0.1 * x[2] + 0.25 * x[3]).exp();
                   },
                   4, 1e-10),
               std::exp((0.09 + 0.04 + 0.01 + 0.0625) / 2), 1e-8);
  check_covers(quad::sparse_grid(
                   [](const std::vector<Eigen::ArrayXd>& x) {
                     Eigen::ArrayXd p = Eigen::ArrayXd::Ones(x[0].size());
                     for (int d = 0; d < 5; ++d) p *= (0.4 * x[d]).cos();
                     return p;
                   },
                   5, 1e-10),
               std::exp(-5 * 0.16 / 2), 1e-8);
  check_covers(quad::sparse_grid(
                   [](const std::vector<Eigen::ArrayXd>& x) {
                     return (0.5 * x[0] - 0.4 * x[1] + 0.3 * x[2] + 0.2 * x[3] - 0.3 * x[4] + 0.1 * x[5]).cos();
                   },
                   6, 1e-9),
               std::exp(-(0.25 + 0.16 + 0.09 + 0.04 + 0.09 + 0.01) / 2), 1e-7);
}

TEST_CASE("randomized QMC: the error bar covers the truth at its nominal rate and is not inflated") {
  // 5-d, kinked: E relu(a.xi) = |a| / sqrt(2 pi); 6-d smooth: E cos(a.xi) = exp(-|a|^2 / 2).
  const double a[6] = {1.0, -0.5, 0.7, 0.3, -0.9, 0.4};
  double a5 = 0, a6 = 0;
  for (int d = 0; d < 6; ++d) (d < 5 ? a5 : a6) += a[d] * a[d];
  a6 += a5;
  const double relu_exact = std::sqrt(a5) / std::sqrt(2 * M_PI), cos_exact = std::exp(-a6 / 2);
  auto relu = [&](const double* x) {
    double s = 0;
    for (int d = 0; d < 5; ++d) s += a[d] * x[d];
    return std::max(s, 0.0);
  };
  auto ridge = [&](const double* x) {
    double s = 0;
    for (int d = 0; d < 6; ++d) s += a[d] * x[d];
    return std::cos(s);
  };
  // (quadrature.hpp also declares a pointwise randomized_qmc, which has no definition.)
  for (int which = 1; which < 3; ++which) {
    INFO((which == 1 ? "relu" : "cos ridge"));
    const int seeds = 20;
    int covered = 0;
    double sq = 0;
    std::vector<double> errs;
    for (int s = 1; s <= seeds; ++s) {
      quad::Result r = which == 1 ? quad::randomized_qmc_batch(batch(relu), 5, s, 16, 1 << 12)
                                  : quad::randomized_qmc_batch(batch(ridge), 6, s, 16, 1 << 12);
      double exact = which == 2 ? cos_exact : relu_exact;
      double e = std::abs(r.value - exact);
      CHECK(r.converged);
      covered += e <= r.abs_error;
      CHECK(e <= 2 * r.abs_error);  // four standard errors
      sq += e * e;
      errs.push_back(r.abs_error);
    }
    // Two standard errors cover ~95%: at least 16 of 20 (a binomial tail of 1.6%).
    CHECK(covered >= 16);
    // The reported error is about twice the root-mean-square true error, not orders above it.
    std::sort(errs.begin(), errs.end());
    double rms = std::sqrt(sq / seeds), median = errs[seeds / 2];
    INFO("median reported error " << median << ", rms true error " << rms);
    CHECK(median <= 10 * rms);
    CHECK(median >= 0.5 * rms);
  }
}
