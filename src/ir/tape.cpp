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

double Tape::eval(const double* x, std::vector<double>& r) const {
  r.resize(code_.size());
  for (std::size_t i = 0; i < code_.size(); ++i) {
    const Ins& c = code_[i];
    switch (c.op) {
      case ExprOp::Const: r[i] = c.value; break;
      case ExprOp::Var: r[i] = x[c.slot]; break;
      case ExprOp::Add: r[i] = r[c.a] + r[c.b]; break;
      case ExprOp::Sub: r[i] = r[c.a] - r[c.b]; break;
      case ExprOp::Mul: r[i] = r[c.a] * r[c.b]; break;
      case ExprOp::Div: r[i] = r[c.a] / r[c.b]; break;
      case ExprOp::Neg: r[i] = -r[c.a]; break;
      case ExprOp::Pow: {
        double e = r[c.b];
        r[i] = e == 2.0 ? r[c.a] * r[c.a] : std::pow(r[c.a], e);
        break;
      }
      case ExprOp::Call: r[i] = apply_fn(c.fn, r[c.a]); break;
    }
  }
  return r.back();
}

Eigen::ArrayXd Tape::eval(const std::vector<const Eigen::ArrayXd*>& x) const {
  Eigen::Index n = x.empty() ? 1 : x[0]->size();
  // Registers are kept between calls (same sizes are reused without
  // allocating): quadrature calls this on chunk after chunk.
  thread_local std::vector<Eigen::ArrayXd> r;
  if (r.size() < code_.size()) r.resize(code_.size());
  for (std::size_t i = 0; i < code_.size(); ++i) {
    const Ins& c = code_[i];
    switch (c.op) {
      case ExprOp::Const: r[i] = Eigen::ArrayXd::Constant(n, c.value); break;
      case ExprOp::Var: r[i] = *x[c.slot]; break;
      case ExprOp::Add: r[i] = r[c.a] + r[c.b]; break;
      case ExprOp::Sub: r[i] = r[c.a] - r[c.b]; break;
      case ExprOp::Mul: r[i] = r[c.a] * r[c.b]; break;
      case ExprOp::Div: r[i] = r[c.a] / r[c.b]; break;
      case ExprOp::Neg: r[i] = -r[c.a]; break;
      case ExprOp::Pow: {
        const auto& e = r[c.b];
        if ((e == 2.0).all()) r[i] = r[c.a].square();
        else r[i] = r[c.a].pow(e);
        break;
      }
      case ExprOp::Call: {
        const auto& z = r[c.a];
        switch (c.fn) {
          case Fn::Relu: r[i] = z.max(0.0); break;
          case Fn::Step: r[i] = (z > 0.0).cast<double>(); break;
          case Fn::Abs: r[i] = z.abs(); break;
          case Fn::Tanh: r[i] = z.tanh(); break;
          case Fn::Sin: r[i] = z.sin(); break;
          case Fn::Cos: r[i] = z.cos(); break;
          case Fn::Exp: r[i] = z.exp(); break;
          default: r[i] = z.unaryExpr([f = c.fn](double v) { return apply_fn(f, v); }); break;
        }
        break;
      }
    }
  }
  return r[code_.size() - 1];
}

}  // namespace netsor
