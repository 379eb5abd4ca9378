// Coordinatewise expressions: construction with folding, symbolic derivative,
// substitution, evaluation (include/netsor/expr.hpp).
#include "netsor/expr.hpp"

#include <algorithm>
#include <boost/math/constants/constants.hpp>
#include <cmath>
#include <set>
#include <optional>
#include <sstream>

#include "netsor/expr_walk.hpp"

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

// d e / d var(id), node by node (the chain rule at each operation).
struct Differentiate {
  int id;
  Expr constant(const Expr&) { return netsor::constant(0.0); }
  Expr variable(const Expr& e) { return netsor::constant(e->var == id ? 1.0 : 0.0); }
  Expr add(const Expr&, const Expr& da, const Expr& db) { return netsor::add(da, db); }
  Expr sub(const Expr&, const Expr& da, const Expr& db) { return netsor::sub(da, db); }
  Expr mul(const Expr& e, const Expr& da, const Expr& db) {
    return netsor::add(netsor::mul(da, e->b), netsor::mul(e->a, db));
  }
  Expr div(const Expr& e, const Expr& da, const Expr& db) {  // (a' b - a b') / b^2
    return netsor::div(netsor::sub(netsor::mul(da, e->b), netsor::mul(e->a, db)), netsor::pow(e->b, netsor::constant(2.0)));
  }
  Expr neg(const Expr&, const Expr& da) { return netsor::neg(da); }
  Expr pow(const Expr& e, const Expr& da, const Expr& db) {
    double p;
    if (is_const(db, &p) && p == 0)  // p a^(p-1) a'
      return netsor::mul(netsor::mul(e->b, netsor::pow(e->a, netsor::sub(e->b, netsor::constant(1.0)))), da);
    // a^b (b' log a + b a'/a)
    return netsor::mul(e, netsor::add(netsor::mul(db, netsor::call(Fn::Log, e->a)), netsor::div(netsor::mul(e->b, da), e->a)));
  }
  Expr call(const Expr& e, const Expr& da) { return netsor::mul(fn_derivative(e->fn, e->a), da); }
};

struct Substitute : Rebuild {
  const std::function<Expr(int)>& subst;
  explicit Substitute(const std::function<Expr(int)>& s) : subst(s) {}
  Expr variable(const Expr& e) { return subst(e->var); }
};

struct Evaluate {
  const std::function<double(int)>& value;
  double constant(const Expr& e) { return e->value; }
  double variable(const Expr& e) { return value(e->var); }
  double add(const Expr&, double a, double b) { return a + b; }
  double sub(const Expr&, double a, double b) { return a - b; }
  double mul(const Expr&, double a, double b) { return a * b; }
  double div(const Expr&, double a, double b) { return a / b; }
  double neg(const Expr&, double a) { return -a; }
  double pow(const Expr&, double a, double b) { return std::pow(a, b); }
  double call(const Expr& e, double a) { return apply_fn(e->fn, a); }
};

struct Extent {
  std::size_t cap;
  TreeExtent node(const TreeExtent& a, const TreeExtent& b) const {
    return {std::min(cap, 1 + std::min(cap, a.size + b.size)), 1 + std::max(a.depth, b.depth)};
  }
  TreeExtent constant(const Expr&) { return node({}, {}); }
  TreeExtent variable(const Expr&) { return node({}, {}); }
  TreeExtent add(const Expr&, const TreeExtent& a, const TreeExtent& b) { return node(a, b); }
  TreeExtent sub(const Expr&, const TreeExtent& a, const TreeExtent& b) { return node(a, b); }
  TreeExtent mul(const Expr&, const TreeExtent& a, const TreeExtent& b) { return node(a, b); }
  TreeExtent div(const Expr&, const TreeExtent& a, const TreeExtent& b) { return node(a, b); }
  TreeExtent neg(const Expr&, const TreeExtent& a) { return node(a, {}); }
  TreeExtent pow(const Expr&, const TreeExtent& a, const TreeExtent& b) { return node(a, b); }
  TreeExtent call(const Expr&, const TreeExtent& a) { return node(a, {}); }
};

// e as sum coef_i * term_i, node by node: sums, negations and scalings by
// constants split; a product distributes while it stays within `limit` terms.
using Terms = std::vector<std::pair<double, Expr>>;
struct AdditiveTerms {
  std::size_t limit;
  static Terms scaled(Terms t, double s, bool divide) {
    for (auto& [c, x] : t) c = divide ? c / s : s * c;
    return t;
  }
  // Anything but a sum, a negation, a product or a division by a constant is
  // one term: its operands are not expanded.
  std::optional<Terms> stop(const Expr& e) {
    double v;
    if (e->op == ExprOp::Var || e->op == ExprOp::Pow || e->op == ExprOp::Call) return Terms{{1.0, e}};
    if (e->op == ExprOp::Div && !(is_const(e->b, &v) && v != 0)) return Terms{{1.0, e}};
    return std::nullopt;
  }
  Terms constant(const Expr& e) { return {{e->value, netsor::constant(1.0)}}; }
  Terms variable(const Expr& e) { return {{1.0, e}}; }
  Terms add(const Expr&, Terms a, const Terms& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  Terms sub(const Expr& e, const Terms& a, const Terms& b) { return add(e, a, scaled(b, -1, false)); }
  Terms neg(const Expr&, const Terms& a) { return scaled(a, -1, false); }
  Terms div(const Expr& e, const Terms& a, const Terms&) { return scaled(a, e->b->value, true); }
  Terms mul(const Expr& e, const Terms& a, const Terms& b) {
    if (a.size() * b.size() > limit) return {{1.0, e}};
    Terms out;
    for (const auto& [ca, ta] : a)
      for (const auto& [cb, tb] : b) out.push_back({ca * cb, netsor::mul(ta, tb)});
    return out;
  }
  Terms pow(const Expr& e, const Terms&, const Terms&) { return {{1.0, e}}; }
  Terms call(const Expr& e, const Terms&) { return {{1.0, e}}; }
};

// An affine form over var ids, sparse (ids ascending), or not affine.
struct SparseAffine {
  bool ok = false;
  std::vector<std::pair<int, double>> c;
  double off = 0;
};
struct Affine {
  using A = SparseAffine;
  static A fail() { return {}; }
  // x + s y
  static A combine(const A& x, const A& y, double s) {
    if (!x.ok || !y.ok) return fail();
    A r{true, {}, x.off + s * y.off};
    std::size_t i = 0, j = 0;
    while (i < x.c.size() || j < y.c.size()) {
      if (j == y.c.size() || (i < x.c.size() && x.c[i].first < y.c[j].first)) r.c.push_back(x.c[i++]);
      else if (i == x.c.size() || y.c[j].first < x.c[i].first) r.c.push_back({y.c[j].first, s * y.c[j].second}), ++j;
      else r.c.push_back({x.c[i].first, x.c[i].second + s * y.c[j].second}), ++i, ++j;
    }
    return r;
  }
  static A scaled(A x, double s, bool divide) {
    if (!x.ok) return x;
    for (auto& [id, v] : x.c) v = divide ? v / s : s * v;
    x.off = divide ? x.off / s : s * x.off;
    return x;
  }
  A constant(const Expr& e) { return {true, {}, e->value}; }
  A variable(const Expr& e) { return {true, {{e->var, 1.0}}, 0.0}; }
  A add(const Expr&, const A& a, const A& b) { return combine(a, b, 1); }
  A sub(const Expr&, const A& a, const A& b) { return combine(a, b, -1); }
  A neg(const Expr&, const A& a) { return scaled(a, -1, false); }
  A mul(const Expr& e, const A& a, const A& b) {
    double c;
    if (is_const(e->a, &c)) return scaled(b, c, false);
    if (is_const(e->b, &c)) return scaled(a, c, false);
    return fail();
  }
  A div(const Expr& e, const A& a, const A&) {
    double c;
    return is_const(e->b, &c) && c != 0 ? scaled(a, c, true) : fail();
  }
  A pow(const Expr&, const A&, const A&) { return fail(); }
  A call(const Expr&, const A&) { return fail(); }
};

// Infix text with the operator's precedence (p): an operand is parenthesized
// where its precedence is below what its place asks for.
struct Text {
  std::string s;
  int p;
};
struct Print {
  const std::function<std::string(int)>& name;
  static std::string at(const Text& t, int ctx) { return t.p < ctx ? "(" + t.s + ")" : t.s; }
  static std::string num(double v) {
    std::ostringstream s;
    s.precision(12);
    s << v;
    return s.str();
  }
  Text constant(const Expr& e) { return {num(e->value), e->value < 0 ? 3 : 5}; }
  Text variable(const Expr& e) { return {name(e->var), 5}; }
  Text add(const Expr&, const Text& a, const Text& b) { return {at(a, 1) + " + " + at(b, 2), 1}; }
  Text sub(const Expr&, const Text& a, const Text& b) { return {at(a, 1) + " - " + at(b, 2), 1}; }
  Text mul(const Expr&, const Text& a, const Text& b) { return {at(a, 2) + " * " + at(b, 3), 2}; }
  Text div(const Expr&, const Text& a, const Text& b) { return {at(a, 2) + " / " + at(b, 3), 2}; }
  Text neg(const Expr&, const Text& a) { return {"-" + at(a, 4), 3}; }
  Text pow(const Expr&, const Text& a, const Text& b) { return {at(a, 5) + "^" + at(b, 4), 4}; }
  Text call(const Expr& e, const Text& a) { return {std::string(fn_name(e->fn)) + "(" + at(a, 0) + ")", 5}; }
};

}  // namespace

Expr derivative(const Expr& e, int id) { return fold<Expr>(e, Differentiate{id}); }

Expr substitute(const Expr& e, const std::function<Expr(int)>& subst) { return fold<Expr>(e, Substitute(subst)); }

std::vector<int> free_vars(const Expr& e) {
  std::set<int> ids;
  for_each_node(e, [&](const Expr& x) {
    if (x->op == ExprOp::Var) ids.insert(x->var);
  });
  return {ids.begin(), ids.end()};
}

// Memoized over pairs of nodes: a pair already compared (or being compared)
// needs no second look, so shared subexpressions are compared once.
bool same(const Expr& a, const Expr& b) {
  if (a.get() == b.get()) return true;
  if (!a || !b) return false;
  std::vector<std::pair<const ExprNode*, const ExprNode*>> stack{{a.get(), b.get()}};
  std::set<std::pair<const ExprNode*, const ExprNode*>> seen;
  while (!stack.empty()) {
    auto [x, y] = stack.back();
    stack.pop_back();
    if (x == y || !seen.insert({x, y}).second) continue;
    if (!same_payload(*x, *y)) return false;
    int k = arity(x->op);
    if (k == 2) stack.push_back({x->b.get(), y->b.get()});
    if (k >= 1) stack.push_back({x->a.get(), y->a.get()});
  }
  return true;
}

std::vector<std::pair<double, Expr>> additive_terms(const Expr& e, std::size_t limit) {
  return fold<Terms>(e, AdditiveTerms{limit});
}

std::size_t node_count(const Expr& e) {
  std::size_t n = 0;
  for_each_node(e, [&](const Expr&) { ++n; });
  return n;
}

TreeExtent tree_extent(const Expr& e, std::size_t cap) { return fold<TreeExtent>(e, Extent{cap}); }

double evaluate(const Expr& e, const std::function<double(int)>& value) { return fold<double>(e, Evaluate{value}); }

bool as_affine(const Expr& e, std::vector<double>& coef, double& offset) {
  coef.clear();
  offset = 0;
  SparseAffine a = fold<SparseAffine>(e, Affine{});
  if (!a.ok) return false;
  if (!a.c.empty()) coef.assign(a.c.back().first + 1, 0.0);
  for (const auto& [id, v] : a.c) coef[id] = v;
  offset = a.off;
  return true;
}

std::string to_string(const Expr& e, const std::function<std::string(int)>& name) {
  return Print::at(fold<Text>(e, Print{name}), 0);
}

}  // namespace netsor
