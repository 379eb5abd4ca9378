// What the limit pass knows about each variable of the program as it walks
// the instructions in order (primer section 2): the Z of a vector, the limit
// of a scalar, the order of n it lives at, and where its errors come from.
// Shared by the Z rules (zcalculus.cpp) and the order analysis (order.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bounds.hpp"
#include "netsor/limit.hpp"

namespace netsor::limit {

// Orders of n closer than this are the same order.
constexpr double kTol = 1e-9;

struct VarState {
  explicit VarState(std::size_t nv)
      : Z(nv), rel(nv, 0.0), scalar(nv), src(nv), order(nv, 0.0), fluct(nv, false),
        range(nv, Range{-INFINITY, INFINITY, true}), has_lower(nv, false), random(nv, false), random_why(nv) {}

  std::vector<Expr> Z;                          // a vector's Z, over Gaussian leaves
  std::vector<double> rel;                      // relative error carried in from earlier estimates
  std::vector<std::optional<Estimate>> scalar;  // a scalar's limit
  std::vector<std::set<std::string>> src;       // numerical methods behind a vector's Z (provenance)
  // Order analysis (primer section 4): each variable is n^order times its
  // limit (order 0 for an ordinary program). -inf: zero at every order we see.
  std::vector<double> order;
  // Scalars whose limit is 0 although they are not identically 0 (a moment of
  // mean 0), and vectors whose leading term is such a 0 (avg(v) * v): their
  // true size and sign are unknown (often the CLT scale n^{-1/2}).
  std::vector<bool> fluct;
  std::vector<Range> range;  // of each vector's coordinates (unbounded unless a Nonlin bounds it)
  std::vector<bool> has_lower;  // a Nonlin output whose definition had terms of lower order (dropped)
  std::vector<bool> random;     // fluctuation-scale scalars: order known, value not
  std::vector<std::string> random_why;
};

// The relative error an estimate carries into what is built from it. Zdot
// coefficients and covariances are O(1) quantities: measure their error against
// `ref`, not against a value that may be (near) zero.
inline double rel(double err, double v, double ref) { return err / std::max({std::abs(v), ref, 1e-300}); }

inline std::string fmt(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

// A program outside what the limit pass derives: the user's error, at loc.
[[noreturn]] inline void refuse(const SourceLoc& loc, const std::string& msg, const std::string& hint) {
  Diagnostic d;
  d.loc = loc;
  d.message = msg;
  d.hint = hint;
  throw ProgramError(d);
}
[[noreturn]] inline void refuse(const ir::Instr& in, const std::string& msg, const std::string& hint) {
  refuse(in.loc, msg, hint);
}

// Shared by the Z rules (zcalculus.cpp) and the sampled evaluator (sampled.cpp).

// A report: a number only where its order of n is 0 and it is not a
// fluctuation; a vanishing report is 0 with its rate.
inline Quantity reported_quantity(const VarState& s, const ir::Report& rep) {
  Estimate e = *s.scalar[rep.var];
  double k = s.order[rep.var];
  if (k > kTol && (s.fluct[rep.var] || e.value == 0))
    refuse(rep.loc, "report '" + rep.name + "' is n^" + fmt(k) +
               " times a quantity whose limit is 0: a fluctuation scale with no deterministic limit",
           "it converges in law (or to 0), not to a number: measure it across seeds with netsor run");
  if (k > kTol)
    refuse(rep.loc, "unstable: report '" + rep.name + "' grows like n^" + fmt(k) + " (coefficient " + fmt(e.value) + ")",
           "a quantity growing with the width has no limit; netsor abc shows which stability condition fails");
  if (s.random[rep.var] && k >= -kTol)
    refuse(rep.loc, "report '" + rep.name + "' is a fluctuation (CLT scale, from '" + s.random_why[rep.var] +
               "'): it has no deterministic limit",
           "it converges in law, not to a number: measure it across seeds with netsor run, or center it (f - f0)");
  if (k < -kTol) {
    e.method = "vanishes like n^" + fmt(k) + " (coefficient " + fmt(e.value) + " by " + e.method + ")";
    e.order = k;
    e.coefficient = e.value;
    e.value = 0;
    e.abs_error = 0;
  }
  return {rep.name, e, rep.loc};
}

// The master theorem needs polynomially bounded nonlinearities (primer
// section 2): decided from the ranges of arguments (bounds.hpp), so that
// exp(tanh x) or log(1 + x^2) pass and exp(x) or 1/x do not. Records the
// range of a Nonlin's output for the instructions that use it.
inline void check_bounded(const ir::Program& p, VarState& s, const ir::Instr& in) {
  std::string problem;
  Range r = range_of(in.expr, [&](int id) {
    if (p.vars[id].kind != ir::VarKind::Scalar) return s.range[id];
    if (s.scalar[id] && !s.random[id]) return Range{s.scalar[id]->value, s.scalar[id]->value, false};
    return Range{-INFINITY, INFINITY, false};
  }, problem);
  if (!problem.empty())
    refuse(in, problem + " (in '" + p.vars[in.out].name + "')",
           "the master theorem (primer section 2) covers polynomially bounded nonlinearities; "
           "the finite-width executor (netsor run) still runs this program");
  if (in.op == ir::Op::Nonlin) s.range[in.out] = r;
}

// MatMul (primer section 2): the variance scale of the Zhat family of W (or
// of W^T, a separate family). W in R^{n1 x n2} with entries N(0, sigma^2/n2)
// gives Cov Zhat^{Wx} = sigma^2 E[Z^x Z^x']; Zhat^{W^T y} has the extra factor
// n1/n2. Orthogonal matrices have no rule here: refused.
inline double zhat_scale(const ir::Program& p, const ir::Instr& in) {
  const ir::Matrix& M = p.matrix_of(in.matrix);
  const ir::Var& W = p.vars[in.matrix];
  if (M.dist != ir::MatrixDist::Gaussian)
    refuse(in, "the limit pass covers Gaussian matrices; '" + W.name + "' is orthogonal",
           "orthogonal matrices run in the finite-width executor (netsor run); declare gaussian(...) for a limit");
  double rho = p.dim_ratio(W.rows) / p.dim_ratio(W.cols);
  return in.transposed ? M.variance * rho : M.variance;
}

// A vector that grows with n makes every later step blow up.
inline void check_vector_growth(const ir::Program& p, const VarState& s, const ir::Instr& in) {
  if (s.order[in.out] > kTol)
    refuse(in, "unstable: the coordinates of '" + p.vars[in.out].name + "' grow like n^" + fmt(s.order[in.out]),
           "this parametrization blows up as the width grows; netsor abc shows which condition fails");
}

}  // namespace netsor::limit
