// A coordinatewise expression compiled to a flat instruction list, so that it
// can be evaluated millions of times (quadrature nodes, or every coordinate of a
// width-n vector) without walking a pointer DAG.
#pragma once

#include <Eigen/Dense>
#include <functional>
#include <vector>

#include "netsor/expr.hpp"

namespace netsor {

class Tape {
 public:
  // slot(id) maps each Var leaf to an input slot 0..inputs-1.
  Tape(const Expr& e, const std::function<int(int)>& slot);

  // Scalar evaluation; `work` is scratch space reused across calls.
  double eval(const double* inputs, std::vector<double>& work) const;
  // Coordinatewise evaluation over arrays of equal length (one per slot).
  Eigen::ArrayXd eval(const std::vector<const Eigen::ArrayXd*>& inputs) const;

  std::size_t size() const { return code_.size(); }

 private:
  struct Ins {
    ExprOp op;
    Fn fn;
    int a, b;  // operand registers
    double value;
    int slot;
  };
  std::vector<Ins> code_;

  // The one interpreter loop; Ops supplies what differs between scalars and
  // arrays: load(slot), constant(v), power(a, e), apply(fn, z).
  template <class R, class Ops>
  void run(std::vector<R>& r, const Ops& ops) const;
};

}  // namespace netsor
