// The order analysis (order.hpp): one rule per operation, folded over the
// expression's DAG. A rule gets its operands' leading terms and returns the
// node's; the rewrites for cancelling differences re-enter the same fold.
#include "order.hpp"

namespace netsor::limit {
namespace {

Lead zero_lead() { return {constant(0.0), -INFINITY}; }

// The randomness of a result made of two operands.
Lead join(Lead r, const Lead& a, const Lead& b) {
  r.random = a.random || b.random;
  r.why = a.random ? a.why : b.why;
  r.dropped = r.dropped || a.dropped || b.dropped;
  return r;
}

// A lead built from one operand's: its randomness and dropped terms carry over.
Lead from(Lead r, const Lead& a) {
  r.random = r.random || a.random;
  if (r.random && r.why.empty()) r.why = a.why;
  r.dropped = r.dropped || a.dropped;
  return r;
}

Lead with_rest_dropped(Lead r) {
  r.dropped = true;
  return r;
}

bool is_zero_const(const Expr& e) {
  double v;
  return is_const(e, &v) && v == 0;
}

}  // namespace

Lead OrderAnalysis::constant(const Expr& x) { return x->value == 0 ? zero_lead() : Lead{x, 0.0}; }

// A scalar enters as its limit times n^order, a vector as its leading Z; both
// carry their errors and methods into the record.
Lead OrderAnalysis::variable(const Expr& x) {
  int id = x->var;
  if (p_.vars[id].kind == ir::VarKind::Scalar) {
    const Estimate& s = *s_.scalar[id];
    if (std::isinf(s_.order[id]) && s_.order[id] < 0) return zero_lead();
    // A fluctuation has no value (nor error): it is dropped as lower
    // order, or whatever needs it is refused.
    // (Both a fluctuation and a limit-0 scalar of unknown size stand for
    // terms the lead leaves out: `dropped`, so that differences of vectors
    // built from them are re-derived from their definitions.)
    if (s_.random[id])  // named by the user's scalar where it has a name of its own
      return with_rest_dropped({netsor::constant(0.0), s_.order[id], true,
                                name(id).find('#') == std::string::npos ? name(id) : s_.random_why[id]});
    if (s.method.rfind("exact", 0) != 0) carried_.sources.insert(s.method);
    carried_.sources.insert(s.inputs.begin(), s.inputs.end());
    carried_.worst = std::max(carried_.worst, rel(s.abs_error, s.value, 1.0));
    if (s_.fluct[id]) return with_rest_dropped({netsor::constant(0.0), s_.order[id]});  // value 0, size unknown
    return {netsor::constant(s.value), s_.order[id]};
  }
  carried_.worst = std::max(carried_.worst, s_.rel[id]);
  carried_.sources.insert(s_.src[id].begin(), s_.src[id].end());
  if (std::isinf(s_.order[id]) && s_.order[id] < 0) return zero_lead();
  if (s_.fluct[id]) return with_rest_dropped({netsor::constant(0.0), s_.order[id]});  // see compute_nonlin
  return {var(id), s_.order[id]};
}

Lead OrderAnalysis::neg(const Expr&, const Lead& a) {
  Lead r = a;
  r.e = netsor::neg(a.e);
  return r;
}

// The larger order wins; equal orders add.
Lead OrderAnalysis::sum(Lead a, Lead b) const {
  if (a.zero()) return b;
  if (b.zero()) return a;
  if (a.order > b.order + kTol) return with_rest_dropped(a);
  if (b.order > a.order + kTol) return with_rest_dropped(b);
  return join({netsor::add(a.e, b.e), std::max(a.order, b.order)}, a, b);
}

Lead OrderAnalysis::add(const Expr&, const Lead& a, const Lead& b) { return sum(a, b); }

Lead OrderAnalysis::sub(const Expr& x, const Lead& a, const Lead& b) {
  if (!a.zero() && !b.zero() && !a.random && !b.random && std::abs(a.order - b.order) <= kTol && same(a.e, b.e))
    return cancelled(x);
  if (!a.zero() && !b.zero() && std::abs(a.order - b.order) <= kTol) {
    // A named vector whose definition had lower-order terms
    // (a = x + n^-1/2 d): its leading term may cancel against the other
    // side, which only its definition shows. Inline such vectors.
    Expr xi = substitute(x, [&](int id) {
      int d = p_.vars[id].def;
      return d >= 0 && s_.has_lower[id] ? p_.instrs[d].expr : var(id);
    });
    if (!same(xi, x)) return lead(xi);
  }
  Lead nb = b;
  nb.e = netsor::neg(b.e);
  return sum(a, nb);
}

Lead OrderAnalysis::mul(const Expr& x, const Lead& a, const Lead& b) {
  if (a.zero() || b.zero()) return zero_lead();
  Lead r = join({netsor::mul(a.e, b.e), a.order + b.order}, a, b);
  fluctuation(x->a, a, b, r);
  fluctuation(x->b, b, a, r);
  return r;
}

Lead OrderAnalysis::div(const Expr& x, const Lead& a, const Lead& b) {
  if (b.random && !b.zero()) refuse_random(p_, in_, b);
  if (b.zero() || is_zero_const(b.e))
    refuse(in_, "'" + name(in_.out) + "' divides by a quantity whose limit is 0",
           "the order analysis needs a denominator of known, nonzero limit");
  if (a.zero()) return zero_lead();
  Lead r = join({netsor::div(a.e, b.e), a.order - b.order}, a, b);
  fluctuation(x->a, a, Lead{b.e, -b.order}, r);
  return r;
}

Lead OrderAnalysis::pow(const Expr&, const Lead& a, const Lead& p) {
  double k;
  if (p.order > kTol || !is_const(p.e, &k))
    refuse(in_, "an exponent in '" + name(in_.out) + "' is not a fixed number", "write powers as n^0.5, x^2");
  if (p.zero()) k = 0;
  if (a.zero()) {
    if (k > 0) return zero_lead();
    if (k == 0) return {netsor::constant(1.0), 0.0};
    refuse(in_, "a negative power of a quantity whose limit is 0 in '" + name(in_.out) + "'", "");
  }
  if (k < 0 && is_zero_const(a.e)) refuse(in_, "a negative power of a fluctuation in '" + name(in_.out) + "'", "");
  return from({netsor::pow(a.e, netsor::constant(k)), k * a.order}, a);
}

// log and sqrt are guarded (expr.hpp) at finite width; a limit outside their
// domain is no number.
void OrderAnalysis::check_domain(Fn f, const Lead& a) const {
  double c0;
  if ((f != Fn::Log && f != Fn::Sqrt) || a.random || !(a.zero() || is_const(a.e, &c0))) return;
  double v = a.zero() ? 0.0 : c0;
  if ((f == Fn::Log && v <= 0) || (f == Fn::Sqrt && v < 0))
    refuse(in_, std::string(fn_name(f)) + " of a quantity whose limit is " + fmt(v) + " in '" + name(in_.out) + "'",
           f == Fn::Log ? "the logarithm diverges at 0 and is undefined below" : "sqrt is undefined below 0");
}

Lead OrderAnalysis::call(const Expr& x, const Lead& a) {
  Fn f = x->fn;
  // A random argument (a fluctuation-scale scalar inside) keeps its
  // randomness whatever f(0) is: its value is unknown, not 0.
  check_domain(f, a);
  if (a.zero() || (!a.random && is_zero_const(a.e) && a.order <= kTol)) {
    // step and sign jump at 0: of a quantity that vanishes without being
    // identically 0 (e.g. avg(v) * v, a fluctuation of either sign), they
    // follow the sign of what vanishes, which the limit does not fix.
    if (!a.zero() && (f == Fn::Step || f == Fn::Sign))
      refuse(in_, std::string(fn_name(f)) + " of a quantity whose limit is 0 in '" + name(in_.out) +
                      "': it jumps at 0, and its value follows the sign of a vanishing fluctuation",
             "the limit is random or depends on finite-width detail; write the argument so that its limit is not 0");
    double f0 = apply_fn(f, 0.0);
    if (f0 != 0) return a.zero() ? Lead{netsor::constant(f0), 0.0} : with_rest_dropped({netsor::constant(f0), 0.0});
    // f of exactly 0 is 0 at every order; f of a fluctuation (a value 0
    // of unknown size, e.g. sqrt(avg(v)) ~ n^-1/4) is 0 in the limit,
    // at a rate this analysis does not give.
    return a.zero() ? zero_lead() : with_rest_dropped({netsor::constant(0.0), 0.0});
  }
  bool homogeneous1 = f == Fn::Relu || f == Fn::Abs, scale_free = f == Fn::Step || f == Fn::Sign;
  if (std::abs(a.order) <= kTol) return from({netsor::call(f, a.e), 0.0}, a);
  if (scale_free) return from({netsor::call(f, a.e), 0.0}, a);
  if (homogeneous1) return from({netsor::call(f, a.e), a.order}, a);
  if (a.order > 0)
    refuse(in_, "unstable: the argument of " + std::string(fn_name(f)) + " in '" + name(in_.out) + "' grows like n^" +
                    fmt(a.order),
           "this parametrization blows up; check the exponents (netsor abc classifies MLPs)");
  return vanishing_argument(f, a);
}

// f of a vanishing argument: Taylor at 0 to the first nonzero term.
Lead OrderAnalysis::vanishing_argument(Fn f, const Lead& a) {
  Expr z = var(-3);
  Expr d0 = netsor::call(f, z);
  for (int k = 0; k <= 3; ++k) {
    double ck = evaluate(d0, [](int) { return 0.0; });
    if (ck != 0) {
      double fact = k == 0 ? 1 : k == 1 ? 1 : k == 2 ? 2 : 6;
      if (k == 0) return with_rest_dropped({netsor::constant(ck), 0.0});
      return with_rest_dropped(
          from({netsor::mul(netsor::constant(ck / fact), netsor::pow(a.e, netsor::constant(double(k)))), k * a.order}, a));
    }
    d0 = derivative(d0, -3);
  }
  refuse(in_, "cannot expand " + std::string(fn_name(f)) + " at 0 in '" + name(in_.out) + "'", "");
}

// X - Y whose leading terms are equal: the difference lives at a lower
// order. Rewrites find it: common additive terms cancel
// ((h + n^-1/2 d) - h = n^-1/2 d), products split (XY - ZW = (X-Z)Y + Z(Y-W)),
// and F(A) - F(B) = F'(B) (A - B) + ... for a
// smooth F (a nonlinearity or a power) when A - B is of lower order than A --
// so a program written in difference form, n^1/2 (phi(h0 + n^-1/2 d) - phi(h0)),
// gets its first-order limit phi'(h0) d.
Lead OrderAnalysis::cancelled(const Expr& x) {
  const Expr &X = x->a, &Y = x->b;
  auto tx = additive_terms(X), ty = additive_terms(Y);
  bool removed = false;
  for (auto& [cy, ey] : ty)
    for (auto& [cx, ex] : tx)
      if (cx != 0 && cx == cy && same(ex, ey)) {
        cx = cy = 0;
        removed = true;
        break;
      }
  if (removed) {
    Expr rest = netsor::constant(0.0);
    for (const auto& [c, e] : tx)
      if (c != 0) rest = netsor::add(rest, netsor::mul(netsor::constant(c), e));
    for (const auto& [c, e] : ty)
      if (c != 0) rest = netsor::sub(rest, netsor::mul(netsor::constant(c), e));
    return lead(rest);
  }
  if (X->op == ExprOp::Mul && Y->op == ExprOp::Mul)  // XY - ZW = (X - Z) Y + Z (Y - W), exactly
    return lead(netsor::add(netsor::mul(netsor::sub(X->a, Y->a), X->b), netsor::mul(Y->a, netsor::sub(X->b, Y->b))));
  double p = 0;
  bool smooth_call = X->op == ExprOp::Call && Y->op == ExprOp::Call && X->fn == Y->fn && !is_kinked(X->fn);
  bool power = X->op == ExprOp::Pow && Y->op == ExprOp::Pow && is_const(X->b, &p) && same(X->b, Y->b);
  if (smooth_call || power) return expanded_difference(X, Y, smooth_call, p);
  refuse(in_, "in '" + name(in_.out) + "' the leading terms of a difference cancel, and the next order is not derived",
         "write the program in difference form: n^0.5 * (phi(h0 + n^-0.5 * d) - phi(h0)), or (h0 + e) - h0");
}

// F(A) - F(B) to first order: F'(B) (A - B), for A - B of lower order than A.
Lead OrderAnalysis::expanded_difference(const Expr& X, const Expr& Y, bool smooth_call, double p) {
  Lead d = lead(netsor::sub(X->a, Y->a));
  if (d.zero()) return zero_lead();
  // The expansion needs A - B of lower order than A itself.
  Lead a = lead(X->a);
  if (!a.zero() && d.order > a.order - kTol)
    refuse(in_, "in '" + name(in_.out) + "' F(A) - F(B) cancels at leading order although A - B is not small",
           "the order analysis expands only differences of nearby arguments, F(h0 + e) - F(h0)");
  Expr slope = smooth_call ? substitute(fn_derivative(X->fn, var(-4)), [&](int) { return Y->a; })
                           : netsor::mul(netsor::constant(p), netsor::pow(Y->a, netsor::constant(p - 1)));
  Lead s = lead(slope);
  if (s.zero())
    refuse(in_, "in '" + name(in_.out) + "' the leading terms cancel and so does the first-order term",
           "the order analysis expands differences to first order only");
  return with_rest_dropped(join({netsor::mul(s.e, d.e), s.order + d.order}, s, d));  // first order only
}

// A growing power times a moment whose limit is 0: the product lives on the
// fluctuation (CLT) scale, where the master theorem gives no deterministic
// limit. It becomes a random quantity of order (at most) the CLT scale,
// n^{-1/2} times the power: enough to see growth, never a value.
void OrderAnalysis::fluctuation(const Expr& x, const Lead& a, const Lead& other, Lead& r) const {
  if (!(is_zero_const(a.e) && !a.zero() && !a.random)) return;
  if (other.zero() || other.order + a.order <= kTol) return;
  r.random = true;
  r.order = a.order + other.order - 0.5;
  r.why = x->op == ExprOp::Var ? name(x->var) : "a moment of mean 0";
}

void OrderAnalysis::refuse_random(const ir::Program& p, const ir::Instr& in, const Lead& l) {
  refuse(in,
         "'" + p.vars[in.out].name + "' depends at leading order on '" + l.why +
             "', a fluctuation-scale scalar (a power of n times a moment whose limit is 0): it converges in law, "
             "not to a number, so this quantity has no deterministic limit",
         "such a quantity converges in law, not to a number: measure it across seeds with netsor run, "
         "or center it (e.g. train f - f0)");
}

}  // namespace netsor::limit
