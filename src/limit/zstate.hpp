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

}  // namespace netsor::limit
