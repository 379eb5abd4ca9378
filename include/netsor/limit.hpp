// The limit pass: the infinite-width limit of a tensor program by the Z rules
// of Tensor Programs (primer section 2), every reported quantity a master-theorem
// expectation with an error estimate and the method that produced it.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "netsor/expr.hpp"
#include "netsor/ir.hpp"

namespace netsor::limit {

// How the errors of earlier estimates (covariances, Zdot coefficients,
// moments) reach a reported value:
//   Perturbation  the derivation is run a second time with every numerical
//                 estimate moved by its error in a random direction; the
//                 change of each report, times 3, is its propagated error
//                 (first order through the whole computation, so values
//                 insensitive to an input get no error from it);
//   Bound         every input's relative error reaches every output at full
//                 size (cheap, very pessimistic); the fallback where the
//                 perturbed run takes another path.
enum class Propagation { Perturbation, Bound };

// Which evaluator computes the limit (netsor limit --method): the
// deterministic rules per expectation (zcalculus.cpp, expectation.cpp), one
// randomized point set for the whole program (sampled.cpp), or the choice by
// the dimension of the program's integrals (Auto, docs/accuracy.md).
enum class Method { Quadrature, Sampled, Auto };

struct ZView;  // include/netsor/free_probability.hpp

struct Options {
  double tol = 1e-12;             // relative target for quadrature
  bool force_quadrature = false;  // skip closed forms and exact Gaussian algebra
  std::uint64_t seed = 1;         // for randomized QMC in high dimension
  Propagation propagation = Propagation::Perturbation;
  std::uint64_t perturb = 0;      // internal: nonzero in the perturbed run (its seed)
  // The sampled evaluator: M points per randomization (a power of 2; 0:
  // doubling from 4096 until every report reaches `target` relative error or
  // `budget` seconds are spent), R independent scrambles, error 3 s.e. over them.
  Method method = Method::Quadrature;
  int points = 0;
  int randomizations = 16;
  double target = 1e-4;
  double budget = 60;
  int threads = 0;  // 0: all cores; the numbers do not depend on it
  std::function<void(const std::string&)> progress;  // sampled: what it is doing
  // Called when the walk is done (not in perturbed runs) with what the Z
  // calculus knows: the free-probability back end reads spectra's laws there.
  std::function<void(const ZView&)> at_end;
};

// A value, its estimated absolute error, and how it was obtained:
// "exact (Gaussian algebra)", "closed form (relu pair)", "Gauss-Hermite order 64", ...
struct Estimate {
  double value = 0;
  double abs_error = 0;
  std::string method;
  // Methods that produced the covariances, Zdot coefficients and scalars this
  // value was computed from (empty when everything upstream was exact).
  std::set<std::string> inputs;
  // Order analysis: a quantity that vanishes like coefficient * n^order
  // (order < 0) has value 0; converge compares finite widths with the power law.
  double order = 0;
  double coefficient = 0;
};

// The joint law of the Gaussians an expectation may involve, by leaf id.
struct GaussianLaw {
  std::function<double(int)> mean;
  std::function<double(int, int)> cov;
};

// E[f(g)] for f an expression over Gaussian leaves g ~ law. The engine reduces f
// to the affine combinations ("atoms") of leaves it depends on, integrates in
// the range of their covariance (so rank-deficient families work), and picks:
// exact algebra for polynomials of degree <= 2; closed forms for the known
// pairs (primer section 3); tensor Gauss-Hermite for smooth integrands in <= 4
// dimensions; nested adaptive Gauss-Kronrod split at the kinks of relu/step/abs
// in <= 3 dimensions; randomized QMC above.
// The 5-10-d smooth integrals that ended in plain randomized QMC (the
// deterministic rules failed), in the order they were met. compute()'s
// perturbed runs repeat the first run's integrals with moved inputs; replaying
// the log, they go straight to QMC there instead of failing again at the cost
// of millions of points.
struct IntegralLog {
  std::vector<bool> qmc;
  std::size_t next = 0;
  bool replay = false;
};

class MasterExpectation {
 public:
  explicit MasterExpectation(Options o = {}, IntegralLog* log = nullptr) : opt_(o), log_(log) {}
  Estimate expect(const Expr& f, const GaussianLaw& law) const;

 private:
  Options opt_;
  IntegralLog* log_;
};

// A Gaussian leaf of the Z calculus: an initial vector, or the Zhat of a MatMul.
struct Leaf {
  std::string name;  // "v", "Zhat[W@x]"
  int family = -1;
  int index = -1;        // within its family
  ir::VarId var = -1;    // the vector this leaf is the Zhat (or initial value) of
  ir::VarId arg = -1;    // for a Zhat: the vector multiplied
};

// A Gaussian family: the initial vectors of one declaration, or all Zhat of one
// matrix W (or of W^T, a separate family). Families are independent.
struct Family {
  std::string name;
  ir::VarId matrix = -1;  // -1: initial vectors, or (with `applied`) operators applied to vectors
  bool applied = false;   // the Zhat's of rotation-invariant operators with inv(...) applied to vectors
  bool transposed = false;
  double scale = 1;  // sigma_W^2, times n1/n2 for W^T (primer section 2)
  std::vector<int> leaves;
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;
};

// The Zdot correction of one MatMul: sum of coef * Z^{arg of leaf}.
// (Plain numbers, not an Estimate: a linear iteration of T steps with
// transposes has ~T^2 of these, and the derivation record must stay small.)
struct ZdotTerm {
  int leaf = -1;           // a leaf of the opposite family (W^T for W x, and back)
  int method = 0;          // how E was computed: Result::methods[method]
  double expectation = 0;  // E[dZ^x / d leaf]
  double abs_error = 0;    // its error
  double coef = 0;         // scale * expectation
};

// The Z random variable of one vector of the program.
struct ZVar {
  ir::VarId var = -1;
  int zhat = -1;               // MatMul, Apply: its Zhat leaf
  std::vector<ZdotTerm> zdot;  // MatMul: nonzero correction terms; Apply: tr(T) Z^u (leaf: the Zhat, whose arg is u)
};

struct Quantity {
  std::string name;
  Estimate estimate;
  SourceLoc loc;
};

struct Result {
  std::vector<Quantity> quantities;  // the program's reports, in order
  // The derivation, for `netsor derive`:
  std::vector<Leaf> leaves;
  std::vector<Family> families;
  std::vector<ZVar> zvars;                          // one per G/H var, in program order
  std::vector<std::string> methods;                 // named by ZdotTerm::method
  std::vector<std::pair<ir::VarId, Estimate>> scalars;  // every scalar's limit
  // The largest relative error of any numerical estimate in the derivation
  // (covariances, Zdot coefficients, moments): below ~1e-13 (closed forms,
  // exact algebra) there is nothing for error propagation to carry.
  double numeric_rel_error = 0;
  // The sampled evaluator: "M x R points, target reached" or what it reached.
  std::string sampling;
  // A perturbed run (error propagation, compute()): how far each moment's own
  // estimate was moved, so that what its inputs' errors did can be told apart.
  std::map<ir::VarId, double> own_shift;
};

// Throws ProgramError for programs outside the master theorem's assumptions and
// for expectations that diverge, naming the variable.
Result compute(const ir::Program& p, const Options& o = {});

}  // namespace netsor::limit
