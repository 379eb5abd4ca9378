#include "netsor/tape.hpp"

#include <cmath>
#include <unordered_map>

namespace netsor {

Tape::Tape(const Expr& root, const std::function<int(int)>& slot) {
  std::unordered_map<const ExprNode*, int> reg;
  // Iterative post-order: expressions can be deep (long unrolled programs).
  std::vector<std::pair<const ExprNode*, bool>> stack{{root.get(), false}};
  while (!stack.empty()) {
    auto [n, expanded] = stack.back();
    stack.pop_back();
    if (reg.count(n)) continue;
    if (!expanded) {
      stack.push_back({n, true});
      if (n->b) stack.push_back({n->b.get(), false});
      if (n->a) stack.push_back({n->a.get(), false});
      continue;
    }
    Ins in{n->op, n->fn, -1, -1, n->value, -1};
    if (n->a) in.a = reg.at(n->a.get());
    if (n->b) in.b = reg.at(n->b.get());
    if (n->op == ExprOp::Var) in.slot = slot(n->var);
    reg[n] = (int)code_.size();
    code_.push_back(in);
  }
}

template <class R, class Ops>
void Tape::run(std::vector<R>& r, const Ops& ops) const {
  for (std::size_t i = 0; i < code_.size(); ++i) {
    const Ins& c = code_[i];
    switch (c.op) {
      case ExprOp::Const: r[i] = ops.constant(c.value); break;
      case ExprOp::Var: r[i] = ops.load(c.slot); break;
      case ExprOp::Add: r[i] = r[c.a] + r[c.b]; break;
      case ExprOp::Sub: r[i] = r[c.a] - r[c.b]; break;
      case ExprOp::Mul: r[i] = r[c.a] * r[c.b]; break;
      case ExprOp::Div: r[i] = r[c.a] / r[c.b]; break;
      case ExprOp::Neg: r[i] = -r[c.a]; break;
      case ExprOp::Pow: r[i] = ops.power(r[c.a], r[c.b]); break;
      case ExprOp::Call: r[i] = ops.apply(c.fn, r[c.a]); break;
    }
  }
}

namespace {

struct ScalarOps {
  const double* x;
  double load(int slot) const { return x[slot]; }
  double constant(double v) const { return v; }
  double power(double a, double e) const { return e == 2.0 ? a * a : std::pow(a, e); }
  double apply(Fn f, double z) const { return apply_fn(f, z); }
};

struct ArrayOps {
  const std::vector<const Eigen::ArrayXd*>& x;
  Eigen::Index n;
  const Eigen::ArrayXd& load(int slot) const { return *x[slot]; }
  Eigen::ArrayXd constant(double v) const { return Eigen::ArrayXd::Constant(n, v); }
  Eigen::ArrayXd power(const Eigen::ArrayXd& a, const Eigen::ArrayXd& e) const {
    return (e == 2.0).all() ? Eigen::ArrayXd(a.square()) : Eigen::ArrayXd(a.pow(e));
  }
  // Eigen's vectorised forms where it has them; apply_fn elsewhere.
  Eigen::ArrayXd apply(Fn f, const Eigen::ArrayXd& z) const {
    switch (f) {
      case Fn::Relu: return z.max(0.0);
      case Fn::Step: return (z > 0.0).cast<double>();
      case Fn::Abs: return z.abs();
      case Fn::Tanh: return z.tanh();
      case Fn::Sin: return z.sin();
      case Fn::Cos: return z.cos();
      case Fn::Exp: return z.exp();
      default: return z.unaryExpr([f](double v) { return apply_fn(f, v); });
    }
  }
};

}  // namespace

double Tape::eval(const double* x, std::vector<double>& r) const {
  r.resize(code_.size());
  run(r, ScalarOps{x});
  return r.back();
}

Eigen::ArrayXd Tape::eval(const std::vector<const Eigen::ArrayXd*>& x) const {
  // Registers are kept between calls (same sizes are reused without
  // allocating): quadrature calls this on chunk after chunk.
  thread_local std::vector<Eigen::ArrayXd> r;
  if (r.size() < code_.size()) r.resize(code_.size());
  run(r, ArrayOps{x, x.empty() ? Eigen::Index(1) : x[0]->size()});
  return r[code_.size() - 1];
}

}  // namespace netsor
