// The order analysis of the limit pass: the leading power of n of a
// coordinatewise or scalar expression and the expression of its coefficient
// (scalars replaced by their limits, terms of lower order dropped). Vectors
// enter as their leading Z; growth of a nonlinearity's argument and
// fluctuation-scale products are refused with the reason. This is what lets
// abc-parametrized programs (primer section 4) carry explicit powers of n.
#pragma once

#include <set>
#include <string>

#include "netsor/expr_walk.hpp"
#include "zstate.hpp"

namespace netsor::limit {

struct Lead {
  Expr e;
  double order = 0;     // -inf: zero
  bool random = false;  // a fluctuation (CLT scale) at this order: no deterministic value
  std::string why;      // for random: the variable that made it so
  // Terms of lower order were dropped on the way (a sum's smaller side, a
  // Taylor or first-order expansion's rest): the expression is not its lead.
  // (Scalars replaced by their limits drop nothing.)
  bool dropped = false;
  bool zero() const { return std::isinf(order) && order < 0; }
};

// What the analysis met on its way through an expression's inputs: the
// largest relative error among them, and the numerical methods behind them
// (provenance). Both only grow, so a shared subexpression adds nothing twice.
struct Carried {
  double worst = 0;
  std::set<std::string> sources;
};

// One instruction's order analysis, memoized over its expression's DAG by the
// walker (expr_walk.hpp): one rule per operation.
class OrderAnalysis {
 public:
  OrderAnalysis(const ir::Program& p, const VarState& s, const ir::Instr& in, Carried& carried)
      : p_(p), s_(s), in_(in), carried_(carried), fold_(*this) {}
  OrderAnalysis(const OrderAnalysis&) = delete;
  OrderAnalysis& operator=(const OrderAnalysis&) = delete;

  Lead lead(const Expr& x) { return fold_(x); }

  Lead constant(const Expr& x);
  Lead variable(const Expr& x);
  Lead add(const Expr& x, const Lead& a, const Lead& b);
  Lead sub(const Expr& x, const Lead& a, const Lead& b);
  Lead mul(const Expr& x, const Lead& a, const Lead& b);
  Lead div(const Expr& x, const Lead& a, const Lead& b);
  Lead neg(const Expr& x, const Lead& a);
  Lead pow(const Expr& x, const Lead& a, const Lead& p);
  Lead call(const Expr& x, const Lead& a);

  // The refusal for a quantity that needs a fluctuation's value.
  [[noreturn]] static void refuse_random(const ir::Program& p, const ir::Instr& in, const Lead& l);

 private:
  const ir::Program& p_;
  const VarState& s_;
  const ir::Instr& in_;
  Carried& carried_;
  Fold<Lead, OrderAnalysis> fold_;

  const std::string& name(ir::VarId v) const { return p_.vars[v].name; }
  Lead sum(Lead a, Lead b) const;
  Lead cancelled(const Expr& x);
  Lead expanded_difference(const Expr& X, const Expr& Y, bool smooth_call, double p);
  Lead vanishing_argument(Fn f, const Lead& a);
  void check_domain(Fn f, const Lead& a) const;
  void fluctuation(const Expr& x, const Lead& a, const Lead& other, Lead& r) const;
};

}  // namespace netsor::limit
