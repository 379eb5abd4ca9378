#include "bounds.hpp"

#include <algorithm>

#include "netsor/expr_walk.hpp"

namespace netsor::limit {
namespace {

// Products of endpoints with 0 * inf = 0 (an exact zero times anything).
double times(double a, double b) { return a == 0 || b == 0 ? 0.0 : a * b; }

Range product(const Range& a, const Range& b) {
  double p[] = {times(a.lo, b.lo), times(a.lo, b.hi), times(a.hi, b.lo), times(a.hi, b.hi)};
  return {*std::min_element(p, p + 4), *std::max_element(p, p + 4), a.random || b.random};
}

bool contains_zero(const Range& r) { return r.lo <= 0 && r.hi >= 0; }

Range power(const Range& a, double p, std::string& problem) {
  Range r{-INFINITY, INFINITY, a.random};
  bool integer = p == std::floor(p);
  if (p < 0 && contains_zero(a)) {
    if (a.random) problem = "a negative power of a random quantity that can be 0";
    return r;
  }
  if (!integer && a.lo < 0) {
    if (a.random) problem = "a fractional power of a random quantity that can be negative";
    return r;
  }
  double x = std::pow(a.lo, p), y = std::pow(a.hi, p);
  if (integer && std::fmod(p, 2.0) == 0 && contains_zero(a)) return {0.0, std::max(x, y), a.random};
  return {std::min(x, y), std::max(x, y), a.random};
}

Range call_range(Fn f, const Range& a, std::string& problem) {
  auto monotone = [&](Fn g) { return Range{apply_fn(g, a.lo), apply_fn(g, a.hi), a.random}; };
  switch (f) {
    case Fn::Tanh: case Fn::Erf: case Fn::Sigmoid: case Fn::Step: case Fn::Sign: case Fn::Softplus:
    case Fn::Relu:
      return monotone(f);
    case Fn::Sin: case Fn::Cos: return {-1.0, 1.0, a.random};
    case Fn::Abs: {
      double m = std::max(std::abs(a.lo), std::abs(a.hi));
      return {contains_zero(a) ? 0.0 : std::min(std::abs(a.lo), std::abs(a.hi)), m, a.random};
    }
    case Fn::Gelu: return {-0.17, std::max(0.0, a.hi), a.random};  // min of z Phi(z) is -0.16997
    case Fn::Exp:
      if (a.hi == INFINITY && a.random) problem = "exp of a random quantity unbounded above grows faster than any polynomial";
      return monotone(f);
    case Fn::Log:
      if (a.lo <= 0 && a.random) problem = "log of a random quantity that can be 0 or negative is not polynomially bounded";
      return {a.lo <= 0 ? -INFINITY : std::log(a.lo), a.hi <= 0 ? -INFINITY : std::log(a.hi), a.random};
    case Fn::Sqrt: return {std::sqrt(std::max(a.lo, 0.0)), std::sqrt(std::max(a.hi, 0.0)), a.random};
  }
  return {-INFINITY, INFINITY, a.random};
}

// NaN endpoints (inf - inf, 0 * inf in a power) mean no bound.
Range clean(Range r) {
  if (std::isnan(r.lo)) r.lo = -INFINITY;
  if (std::isnan(r.hi)) r.hi = INFINITY;
  return r;
}

// The range of each node from its operands' (primer section 2: the growth
// assumption is decided on ranges).
struct Ranges {
  const std::function<Range(int)>& leaf;
  std::string& problem;
  Range constant(const Expr& e) { return clean({e->value, e->value, false}); }
  Range variable(const Expr& e) { return clean(leaf(e->var)); }
  Range add(const Expr&, const Range& a, const Range& b) { return clean({a.lo + b.lo, a.hi + b.hi, a.random || b.random}); }
  Range sub(const Expr&, const Range& a, const Range& b) { return clean({a.lo - b.hi, a.hi - b.lo, a.random || b.random}); }
  Range neg(const Expr&, const Range& a) { return clean({-a.hi, -a.lo, a.random}); }
  Range mul(const Expr& e, const Range& a, const Range& b) {
    return clean(same(e->a, e->b) ? power(a, 2.0, problem) : product(a, b));
  }
  Range div(const Expr&, const Range& a, const Range& b) {
    if (!contains_zero(b)) return clean(product(a, Range{1.0 / b.hi, 1.0 / b.lo, b.random}));
    if (b.random) problem = "division by a random quantity that can be 0 is not polynomially bounded";
    return {-INFINITY, INFINITY, a.random || b.random};
  }
  Range pow(const Expr& e, const Range& a, const Range& p) {
    double k;
    if (is_const(e->b, &k)) return clean(power(a, k, problem));
    if (a.random || p.random) problem = "a power with a random or non-constant exponent is not polynomially bounded";
    return {-INFINITY, INFINITY, a.random || p.random};
  }
  Range call(const Expr& e, const Range& a) { return clean(call_range(e->fn, a, problem)); }
};

}  // namespace

Range range_of(const Expr& root, const std::function<Range(int)>& leaf, std::string& problem) {
  return fold<Range>(root, Ranges{leaf, problem});
}

}  // namespace netsor::limit
