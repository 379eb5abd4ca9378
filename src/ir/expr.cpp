// Coordinatewise expressions: construction with folding, symbolic derivative,
// substitution, evaluation (include/netsor/expr.hpp).
#include "netsor/expr.hpp"

#include <algorithm>
#include <boost/math/constants/constants.hpp>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

namespace netsor {
namespace {

using boost::math::constants::one_div_root_two;
using boost::math::constants::one_div_root_two_pi;
using boost::math::constants::two_div_root_pi;

struct FnInfo {
  const char* name;
  Fn fn;
};
constexpr FnInfo kFns[] = {
    {"relu", Fn::Relu},         {"step", Fn::Step},   {"abs", Fn::Abs},   {"sign", Fn::Sign},
    {"tanh", Fn::Tanh},         {"erf", Fn::Erf},     {"sigmoid", Fn::Sigmoid},
    {"gelu", Fn::Gelu},         {"softplus", Fn::Softplus},               {"sin", Fn::Sin},
    {"cos", Fn::Cos},           {"exp", Fn::Exp},     {"log", Fn::Log},   {"sqrt", Fn::Sqrt},
};

Expr make(ExprOp op, Expr a = nullptr, Expr b = nullptr) {
  auto n = std::make_shared<ExprNode>();
  n->op = op;
  n->a = std::move(a);
  n->b = std::move(b);
  return n;
}

}  // namespace

bool lookup_fn(const std::string& name, Fn& out) {
  for (const auto& f : kFns)
    if (name == f.name) {
      out = f.fn;
      return true;
    }
  return false;
}

const char* fn_name(Fn f) {
  for (const auto& i : kFns)
    if (i.fn == f) return i.name;
  return "?";
}

bool is_kinked(Fn f) { return f == Fn::Relu || f == Fn::Step || f == Fn::Abs || f == Fn::Sign; }

double apply_fn(Fn f, double z) {
  switch (f) {
    case Fn::Relu: return z > 0 ? z : 0.0;
    case Fn::Step: return z > 0 ? 1.0 : 0.0;
    case Fn::Abs: return std::abs(z);
    case Fn::Sign: return z > 0 ? 1.0 : (z < 0 ? -1.0 : 0.0);
    case Fn::Tanh: return std::tanh(z);
    case Fn::Erf: return std::erf(z);
    case Fn::Sigmoid: return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
    case Fn::Gelu: return 0.5 * z * std::erfc(-z * one_div_root_two<double>());
    case Fn::Softplus: return z > 30 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
    case Fn::Sin: return std::sin(z);
    case Fn::Cos: return std::cos(z);
    case Fn::Exp: return std::exp(z);
    case Fn::Log: return std::log(std::max(z, 1e-300));
    case Fn::Sqrt: return std::sqrt(std::max(z, 0.0));
  }
  return 0.0;
}

Expr constant(double v) {
  auto n = std::make_shared<ExprNode>();
  n->op = ExprOp::Const;
  n->value = v;
  return n;
}

Expr var(int id) {
  auto n = std::make_shared<ExprNode>();
  n->op = ExprOp::Var;
  n->var = id;
  return n;
}

bool is_const(const Expr& e, double* value) {
  if (e->op != ExprOp::Const) return false;
  if (value) *value = e->value;
  return true;
}

Expr add(Expr a, Expr b) {
  double x, y;
  bool ca = is_const(a, &x), cb = is_const(b, &y);
  if (ca && cb) return constant(x + y);
  if (ca && x == 0) return b;
  if (cb && y == 0) return a;
  return make(ExprOp::Add, std::move(a), std::move(b));
}

Expr sub(Expr a, Expr b) {
  double x, y;
  bool ca = is_const(a, &x), cb = is_const(b, &y);
  if (ca && cb) return constant(x - y);
  if (cb && y == 0) return a;
  if (ca && x == 0) return neg(std::move(b));
  return make(ExprOp::Sub, std::move(a), std::move(b));
}

Expr mul(Expr a, Expr b) {
  double x, y;
  bool ca = is_const(a, &x), cb = is_const(b, &y);
  if (ca && cb) return constant(x * y);
  if ((ca && x == 0) || (cb && y == 0)) return constant(0.0);
  if (ca && x == 1) return b;
  if (cb && y == 1) return a;
  if (ca && x == -1) return neg(std::move(b));
  if (cb && y == -1) return neg(std::move(a));
  // Keep constants on the left: 2 * x, never x * 2.
  if (cb) return make(ExprOp::Mul, std::move(b), std::move(a));
  return make(ExprOp::Mul, std::move(a), std::move(b));
}

Expr div(Expr a, Expr b) {
  double x, y;
  bool ca = is_const(a, &x), cb = is_const(b, &y);
  if (ca && cb && y != 0) return constant(x / y);
  if (ca && x == 0) return constant(0.0);
  if (cb && y == 1) return a;
  if (cb && y != 0) return mul(constant(1.0 / y), std::move(a));
  return make(ExprOp::Div, std::move(a), std::move(b));
}

Expr neg(Expr a) {
  double x;
  if (is_const(a, &x)) return constant(-x);
  if (a->op == ExprOp::Neg) return a->a;
  return make(ExprOp::Neg, std::move(a));
}

Expr pow(Expr a, Expr b) {
  double x, y;
  bool ca = is_const(a, &x), cb = is_const(b, &y);
  if (ca && cb) return constant(std::pow(x, y));
  if (cb && y == 0) return constant(1.0);
  if (cb && y == 1) return a;
  return make(ExprOp::Pow, std::move(a), std::move(b));
}

Expr call(Fn f, Expr a) {
  double x;
  if (is_const(a, &x)) return constant(apply_fn(f, x));
  auto n = std::make_shared<ExprNode>();
  n->op = ExprOp::Call;
  n->fn = f;
  n->a = std::move(a);
  return n;
}

Expr fn_derivative(Fn f, const Expr& z) {
  switch (f) {
    case Fn::Relu: return call(Fn::Step, z);
    case Fn::Step: return constant(0.0);  // a.e.; the delta at 0 is not a derivative
    case Fn::Abs: return call(Fn::Sign, z);
    case Fn::Sign: return constant(0.0);
    case Fn::Tanh: return sub(constant(1.0), pow(call(Fn::Tanh, z), constant(2.0)));
    case Fn::Erf:  // 2/sqrt(pi) exp(-z^2)
      return mul(constant(two_div_root_pi<double>()), call(Fn::Exp, neg(pow(z, constant(2.0)))));
    case Fn::Sigmoid: {
      Expr s = call(Fn::Sigmoid, z);
      return mul(s, sub(constant(1.0), s));
    }
    case Fn::Gelu: {  // Phi(z) + z phi(z)
      Expr Phi = mul(constant(0.5), add(constant(1.0), call(Fn::Erf, mul(constant(one_div_root_two<double>()), z))));
      Expr phi = mul(constant(one_div_root_two_pi<double>()), call(Fn::Exp, mul(constant(-0.5), pow(z, constant(2.0)))));
      return add(Phi, mul(z, phi));
    }
    case Fn::Softplus: return call(Fn::Sigmoid, z);
    case Fn::Sin: return call(Fn::Cos, z);
    case Fn::Cos: return neg(call(Fn::Sin, z));
    case Fn::Exp: return call(Fn::Exp, z);
    case Fn::Log: return div(constant(1.0), z);
    case Fn::Sqrt: return div(constant(0.5), call(Fn::Sqrt, z));
  }
  return constant(0.0);
}

namespace {

struct Differentiator {
  int id;
  std::unordered_map<const ExprNode*, Expr> memo;

  Expr d(const Expr& e) {
    auto it = memo.find(e.get());
    if (it != memo.end()) return it->second;
    Expr r;
    switch (e->op) {
      case ExprOp::Const: r = constant(0.0); break;
      case ExprOp::Var: r = constant(e->var == id ? 1.0 : 0.0); break;
      case ExprOp::Add: r = add(d(e->a), d(e->b)); break;
      case ExprOp::Sub: r = sub(d(e->a), d(e->b)); break;
      case ExprOp::Mul: r = add(mul(d(e->a), e->b), mul(e->a, d(e->b))); break;
      case ExprOp::Div:  // (a' b - a b') / b^2
        r = div(sub(mul(d(e->a), e->b), mul(e->a, d(e->b))), pow(e->b, constant(2.0)));
        break;
      case ExprOp::Neg: r = neg(d(e->a)); break;
      case ExprOp::Pow: {
        Expr da = d(e->a), db = d(e->b);
        double p;
        if (is_const(db, &p) && p == 0) {
          // p a^(p-1) a'
          r = mul(mul(e->b, pow(e->a, sub(e->b, constant(1.0)))), da);
        } else {
          // a^b (b' log a + b a'/a)
          r = mul(e, add(mul(db, call(Fn::Log, e->a)), div(mul(e->b, da), e->a)));
        }
        break;
      }
      case ExprOp::Call: r = mul(fn_derivative(e->fn, e->a), d(e->a)); break;
    }
    memo.emplace(e.get(), r);
    return r;
  }
};

template <class F>
void visit_dag(const Expr& e, std::set<const ExprNode*>& seen, F&& f) {
  if (!e || !seen.insert(e.get()).second) return;
  f(e);
  visit_dag(e->a, seen, f);
  visit_dag(e->b, seen, f);
}

}  // namespace

Expr derivative(const Expr& e, int id) { return Differentiator{id, {}}.d(e); }

Expr substitute(const Expr& e, const std::function<Expr(int)>& subst) {
  std::unordered_map<const ExprNode*, Expr> memo;
  std::function<Expr(const Expr&)> go = [&](const Expr& x) -> Expr {
    auto it = memo.find(x.get());
    if (it != memo.end()) return it->second;
    Expr r;
    switch (x->op) {
      case ExprOp::Const: r = x; break;
      case ExprOp::Var: r = subst(x->var); break;
      case ExprOp::Add: r = add(go(x->a), go(x->b)); break;
      case ExprOp::Sub: r = sub(go(x->a), go(x->b)); break;
      case ExprOp::Mul: r = mul(go(x->a), go(x->b)); break;
      case ExprOp::Div: r = div(go(x->a), go(x->b)); break;
      case ExprOp::Neg: r = neg(go(x->a)); break;
      case ExprOp::Pow: r = pow(go(x->a), go(x->b)); break;
      case ExprOp::Call: r = call(x->fn, go(x->a)); break;
    }
    memo.emplace(x.get(), r);
    return r;
  };
  return go(e);
}

std::vector<int> free_vars(const Expr& e) {
  std::set<const ExprNode*> seen;
  std::set<int> ids;
  visit_dag(e, seen, [&](const Expr& x) {
    if (x->op == ExprOp::Var) ids.insert(x->var);
  });
  return {ids.begin(), ids.end()};
}

bool same(const Expr& a, const Expr& b) {
  if (a.get() == b.get()) return true;
  if (!a || !b || a->op != b->op) return false;
  switch (a->op) {
    case ExprOp::Const: return a->value == b->value;
    case ExprOp::Var: return a->var == b->var;
    case ExprOp::Call: return a->fn == b->fn && same(a->a, b->a);
    case ExprOp::Neg: return same(a->a, b->a);
    default: return same(a->a, b->a) && same(a->b, b->b);
  }
}

// e as sum coef_i * term_i with products distributed over sums, as long as
// the expansion stays within `limit` terms (beyond, a product stays one term).
std::vector<std::pair<double, Expr>> additive_terms(const Expr& e, std::size_t limit) {
  double v;
  switch (e->op) {
    case ExprOp::Add: case ExprOp::Sub: {
      auto a = additive_terms(e->a, limit), b = additive_terms(e->b, limit);
      double s = e->op == ExprOp::Add ? 1 : -1;
      for (auto& [c, t] : b) a.push_back({s * c, t});
      return a;
    }
    case ExprOp::Neg: {
      auto a = additive_terms(e->a, limit);
      for (auto& [c, t] : a) c = -c;
      return a;
    }
    case ExprOp::Div:
      if (is_const(e->b, &v) && v != 0) {
        auto a = additive_terms(e->a, limit);
        for (auto& [c, t] : a) c /= v;
        return a;
      }
      break;
    case ExprOp::Mul: {
      auto a = additive_terms(e->a, limit), b = additive_terms(e->b, limit);
      if (a.size() * b.size() > limit) break;
      std::vector<std::pair<double, Expr>> out;
      for (const auto& [ca, ta] : a)
        for (const auto& [cb, tb] : b) out.push_back({ca * cb, mul(ta, tb)});
      return out;
    }
    case ExprOp::Const: return {{e->value, constant(1.0)}};
    default: break;
  }
  return {{1.0, e}};
}

std::size_t node_count(const Expr& e) {
  std::set<const ExprNode*> seen;
  visit_dag(e, seen, [](const Expr&) {});
  return seen.size();
}

TreeExtent tree_extent(const Expr& e, std::size_t cap) {
  std::unordered_map<const ExprNode*, TreeExtent> memo;
  std::function<TreeExtent(const Expr&)> go = [&](const Expr& x) -> TreeExtent {
    if (!x) return {};
    auto it = memo.find(x.get());
    if (it != memo.end()) return it->second;
    TreeExtent a = go(x->a), b = go(x->b);
    TreeExtent r{std::min(cap, 1 + std::min(cap, a.size + b.size)), 1 + std::max(a.depth, b.depth)};
    memo.emplace(x.get(), r);
    return r;
  };
  return go(e);
}

double evaluate(const Expr& e, const std::function<double(int)>& value) {
  std::unordered_map<const ExprNode*, double> memo;
  std::function<double(const Expr&)> go = [&](const Expr& x) -> double {
    auto it = memo.find(x.get());
    if (it != memo.end()) return it->second;
    double r = 0;
    switch (x->op) {
      case ExprOp::Const: r = x->value; break;
      case ExprOp::Var: r = value(x->var); break;
      case ExprOp::Add: r = go(x->a) + go(x->b); break;
      case ExprOp::Sub: r = go(x->a) - go(x->b); break;
      case ExprOp::Mul: r = go(x->a) * go(x->b); break;
      case ExprOp::Div: r = go(x->a) / go(x->b); break;
      case ExprOp::Neg: r = -go(x->a); break;
      case ExprOp::Pow: r = std::pow(go(x->a), go(x->b)); break;
      case ExprOp::Call: r = apply_fn(x->fn, go(x->a)); break;
    }
    memo.emplace(x.get(), r);
    return r;
  };
  return go(e);
}

bool as_affine(const Expr& e, std::vector<double>& coef, double& offset) {
  // Walk with a multiplier; fail at the first nonlinear node.
  coef.clear();
  offset = 0;
  std::function<bool(const Expr&, double)> go = [&](const Expr& x, double m) -> bool {
    switch (x->op) {
      case ExprOp::Const: offset += m * x->value; return true;
      case ExprOp::Var:
        if ((int)coef.size() <= x->var) coef.resize(x->var + 1, 0.0);
        coef[x->var] += m;
        return true;
      case ExprOp::Add: return go(x->a, m) && go(x->b, m);
      case ExprOp::Sub: return go(x->a, m) && go(x->b, -m);
      case ExprOp::Neg: return go(x->a, -m);
      case ExprOp::Mul: {
        double c;
        if (is_const(x->a, &c)) return go(x->b, m * c);
        if (is_const(x->b, &c)) return go(x->a, m * c);
        return false;
      }
      case ExprOp::Div: {
        double c;
        if (is_const(x->b, &c) && c != 0) return go(x->a, m / c);
        return false;
      }
      default: return false;
    }
  };
  return go(e, 1.0);
}

namespace {
int precedence(const Expr& e) {
  switch (e->op) {
    case ExprOp::Add: case ExprOp::Sub: return 1;
    case ExprOp::Mul: case ExprOp::Div: return 2;
    case ExprOp::Neg: return 3;
    case ExprOp::Pow: return 4;
    default: return 5;
  }
}
std::string num(double v) {
  std::ostringstream s;
  s.precision(12);
  s << v;
  return s.str();
}
}  // namespace

std::string to_string(const Expr& e, const std::function<std::string(int)>& name) {
  std::function<std::string(const Expr&, int)> go = [&](const Expr& x, int ctx) -> std::string {
    std::string s;
    int p = precedence(x);
    switch (x->op) {
      case ExprOp::Const: s = num(x->value); if (x->value < 0) p = 3; break;
      case ExprOp::Var: s = name(x->var); break;
      case ExprOp::Add: s = go(x->a, 1) + " + " + go(x->b, 2); break;
      case ExprOp::Sub: s = go(x->a, 1) + " - " + go(x->b, 2); break;
      case ExprOp::Mul: s = go(x->a, 2) + " * " + go(x->b, 3); break;
      case ExprOp::Div: s = go(x->a, 2) + " / " + go(x->b, 3); break;
      case ExprOp::Neg: s = "-" + go(x->a, 4); break;
      case ExprOp::Pow: s = go(x->a, 5) + "^" + go(x->b, 4); break;
      case ExprOp::Call: s = std::string(fn_name(x->fn)) + "(" + go(x->a, 0) + ")"; break;
    }
    return p < ctx ? "(" + s + ")" : s;
  };
  return go(e, 0);
}

}  // namespace netsor
