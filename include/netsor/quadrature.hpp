// Gaussian integration rules for master-theorem expectations: integrals
//   I = integral over R^r of h(xi) phi_r(xi) d xi,  phi_r the standard normal density,
// each returning an estimate with an error bound estimate and the method used.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace netsor::quad {

struct Result {
  double value = 0;
  double abs_error = 0;
  long evals = 0;
  bool converged = false;
  std::string method;
  int order = 0;  // the Gauss-Hermite order or sparse-grid level that gave value
  // Tensor Gauss-Hermite short of its tolerance: the error of the last order
  // from the geometric decay of its differences (10 d_N times the larger of
  // the last two ratios d_N / d_{N-1}), where both are below 1/4; infinite
  // otherwise.
  double geometric_error = INFINITY;
};

using Integrand = std::function<double(const double* xi)>;

// Probabilists' Gauss-Hermite rule (weight phi(x), weights summing to 1),
// nodes and weights by Golub-Welsch on the Jacobi matrix (Eigen). Cached.
struct Rule {
  std::vector<double> x, w;
};
const Rule& gauss_hermite(int order);

// An integrand evaluated on many nodes at once: it receives the node
// coordinates as dim arrays (one per coordinate) and returns the values.
using BatchIntegrand = std::function<Eigen::ArrayXd(const std::vector<Eigen::ArrayXd>& xi)>;
// Tensor Gauss-Hermite at increasing orders until two successive orders agree
// to `tol` (relative to max(1, |I|)); the error estimate is their difference.
// For smooth integrands. only_order > 0 evaluates that one order (no error
// estimate): a second, independent estimate in rotated coordinates.
// owed: the accuracy (relative to max(1, |I|)) a caller would accept short
// of tol; the orders stop early (unconverged) where the decay of the
// differences so far cannot bring the last one within 10x of it (the higher
// orders cost millions of points in 5-6-d).
Result tensor_gauss_hermite_batch(const BatchIntegrand& h, int dim, double tol, int only_order = 0,
                                  double owed = 0);

// A kink of the integrand: the hyperplane offset + normal . xi = 0.
struct Hyperplane {
  double offset = 0;
  std::vector<double> normal;
};

// Nested adaptive Gauss-Kronrod (Boost.Math, 31 points) over [-12, 12]^dim,
// split at the kinks so that each piece is smooth. Gives up (converged =
// false) past max_evals. tanh_sinh: the same nesting and splits with Boost's
// tanh-sinh rule per coordinate (a second, independent estimate).
Result nested_gauss_kronrod(const Integrand& h, int dim, const std::vector<Hyperplane>& kinks, double tol,
                            long max_evals, bool tanh_sinh = false);

// Smolyak sparse grid (combination technique) on Gauss-Hermite rules of
// orders 1, 3, 5, ...: for smooth integrands in moderate dimension. Levels rise
// until two successive ones agree to tol (the error estimate is their
// difference) or the grid would exceed max_points. only_level > 0 evaluates
// that one level.
Result sparse_grid(const BatchIntegrand& h, int dim, double tol, long max_points = 2'000'000, int only_level = 0);

// Randomized quasi-Monte Carlo: a Sobol sequence under `shifts` independent
// random shifts (Cranley-Patterson), `points` points each, evaluated in
// chunks; the error estimate is three standard errors across shifts.
// Deterministic for a given seed.
Result randomized_qmc_batch(const BatchIntegrand& h, int dim, std::uint64_t seed, int shifts = 16,
                            int points = 1 << 16);

}  // namespace netsor::quad
