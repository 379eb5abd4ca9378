// Interval bounds of coordinatewise expressions, for the master theorem's
// growth assumption (primer section 2: nonlinearities polynomially bounded).
// exp(tanh x), exp(-|x|), log(1 + x^2) and x / (1 + |x|) are bounded or
// polynomial although exp, log and division are not in general: what decides
// is the range of the argument, which this computes.
#pragma once

#include <cmath>
#include <functional>
#include <string>

#include "netsor/expr.hpp"

namespace netsor::limit {

struct Range {
  double lo = -INFINITY, hi = INFINITY;
  bool random = false;  // depends on a vector (not only on scalars)
};

// The range of e, given the range of each leaf. If some part of e is not
// polynomially bounded in its random leaves (exp of an argument unbounded
// above, division by or a negative power of a random quantity that may
// vanish, log of one that may be <= 0, a fractional power of one that may be
// negative), `problem` receives why (else it is left empty).
Range range_of(const Expr& e, const std::function<Range(int)>& leaf, std::string& problem);

}  // namespace netsor::limit
