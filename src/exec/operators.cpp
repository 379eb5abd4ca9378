// Operators at finite width (src/exec/operator_engine.hpp).
//
// Products apply right to left to a block of columns, so no product of two
// n x n matrices is formed unless a dense form is asked for. An inverse is
// a dense Cholesky (symmetric) or LU factor up to kDenseMax, conjugate
// gradients beyond; either way its residual is checked. A normalized trace is
// exact (the diagonal, a panel of identity columns at a time) up to kDenseMax,
// a Hutch++ estimate beyond. A Gaussian matrix too large to store is
// generated a panel at a time at every application (the executor's streamed
// product), never formed.
#include "operator_engine.hpp"

#include <cmath>
#include <set>
#include <sstream>

#include "netsor/operators.hpp"
#include "netsor/tape.hpp"
#include "blas.hpp"
#include "random.hpp"
#include "schedule.hpp"  // kPanel: a streamed matrix's columns generated at once

namespace netsor::exec {

namespace {

constexpr int kIdentityPanel = 256;     // identity columns per application when forming or tracing
constexpr int kBlasColumns = 16;        // blocks this wide multiply through BLAS
constexpr double kResidualTol = 1e-8;   // relative residual an inverse must reach
constexpr std::uint64_t kProbeObject = 0x50524F4245ull;  // "PROBE": the trace's sketch and probes' stream

[[noreturn]] void fail(const SourceLoc& at, const std::string& msg, const std::string& hint) {
  Diagnostic d;
  d.loc = at;
  d.message = msg;
  d.hint = hint;
  throw ProgramError(d);
}

}  // namespace

struct OperatorEngine::Factor {
  Eigen::LLT<Eigen::MatrixXd> llt;
  Eigen::PartialPivLU<Eigen::MatrixXd> lu;
  bool cholesky = false;
  bool checked = false;  // its residual was checked
};

std::int64_t OperatorEngine::rows(int node) const {
  return dim_size(*in_.program, in_.program->op_nodes[node].rows, in_.width);
}
std::int64_t OperatorEngine::cols(int node) const {
  return dim_size(*in_.program, in_.program->op_nodes[node].cols, in_.width);
}

const Eigen::ArrayXd& OperatorEngine::diagonal(int node) {
  auto it = diag_.find(node);
  if (it != diag_.end()) return it->second;
  const ir::Program& p = *in_.program;
  // Scalars enter as their values; vectors through the tape, as in Nonlin.
  Expr e = substitute(p.op_nodes[node].entries, [&](int id) -> Expr {
    return p.vars[id].kind == ir::VarKind::Scalar ? constant(in_.scalar(id)) : var(id);
  });
  std::vector<int> ids = free_vars(e);
  std::map<int, int> slot;
  std::vector<const Eigen::ArrayXd*> args;
  for (int id : ids) {
    slot[id] = (int)args.size();
    args.push_back(&in_.vector(id));
  }
  Tape t(e, [&](int id) { return slot.at(id); });
  Eigen::ArrayXd d;
  if (args.empty()) {
    std::vector<double> work;
    d = Eigen::ArrayXd::Constant(rows(node), t.eval(nullptr, work));
  } else {
    d = t.eval(args);
  }
  return diag_[node] = std::move(d);
}

double OperatorEngine::factor(int node) const {
  return evaluate(in_.program->op_nodes[node].entries, [&](int id) { return in_.scalar(id); });
}

Eigen::MatrixXd OperatorEngine::apply(int node, const Eigen::MatrixXd& X) {
  const ir::OpNode& n = in_.program->op_nodes[node];
  switch (n.kind) {
    case ir::OpKind::Matrix: {
      if (in_.product) return in_.product(n.matrix, n.transposed, X);
      const Eigen::MatrixXd& W = in_.matrix(n.matrix);
      if (X.cols() >= kBlasColumns) return blas::gemm(W, n.transposed, X);
      return n.transposed ? Eigen::MatrixXd(W.transpose() * X) : Eigen::MatrixXd(W * X);
    }
    case ir::OpKind::Diag: return diagonal(node).matrix().asDiagonal() * X;
    case ir::OpKind::Identity: return X;
    case ir::OpKind::Scale: return factor(node) * apply(n.args[0], X);
    case ir::OpKind::Sum: {
      Eigen::MatrixXd Y = apply(n.args[0], X);
      for (std::size_t i = 1; i < n.args.size(); ++i) Y += apply(n.args[i], X);
      return Y;
    }
    case ir::OpKind::Product: {
      Eigen::MatrixXd Y = apply(n.args.back(), X);
      for (std::size_t i = n.args.size() - 1; i-- > 0;) Y = apply(n.args[i], Y);
      return Y;
    }
    case ir::OpKind::Inverse: return solve(node, X);
  }
  return X;
}

Eigen::MatrixXd OperatorEngine::dense(int node) {
  const ir::OpNode& n = in_.program->op_nodes[node];
  switch (n.kind) {
    case ir::OpKind::Matrix: {
      const Eigen::MatrixXd& W = in_.matrix(n.matrix);
      return n.transposed ? Eigen::MatrixXd(W.transpose()) : W;
    }
    case ir::OpKind::Product: {
      // The rightmost factor's dense form, then the others applied to it:
      // one product fewer than applying the whole to the identity.
      Eigen::MatrixXd Y = dense(n.args.back());
      for (std::size_t i = n.args.size() - 1; i-- > 0;) Y = apply(n.args[i], Y);
      return Y;
    }
    case ir::OpKind::Sum: {
      Eigen::MatrixXd Y = dense(n.args[0]);
      for (std::size_t i = 1; i < n.args.size(); ++i) Y += dense(n.args[i]);
      return Y;
    }
    case ir::OpKind::Scale: return factor(node) * dense(n.args[0]);
    default: return apply(node, Eigen::MatrixXd::Identity(rows(node), cols(node)));
  }
}

Eigen::MatrixXd OperatorEngine::solve(int node, const Eigen::MatrixXd& B) {
  const ir::Program& p = *in_.program;
  int a = p.op_nodes[node].args[0];
  if (rows(a) > kDenseMax) {
    if (!p.op_nodes[a].symmetric)
      fail(at_, "inv(" + ir::op_text(p, a) + ") at size " + std::to_string(rows(a)) +
                    ": beyond " + std::to_string(kDenseMax) + " inverses use conjugate gradients, which need a "
                    "symmetric operator",
           "use a smaller width, or invert a symmetric form such as X.T @ X + lam * I");
    return conjugate_gradients(a, B);
  }
  auto& f = factors_[node];
  if (!f) {
    f = std::make_shared<Factor>();
    Eigen::MatrixXd A = dense(a);
    if (p.op_nodes[a].symmetric) {
      f->llt.compute(A);
      f->cholesky = f->llt.info() == Eigen::Success;
    }
    if (!f->cholesky) f->lu.compute(A);
  }
  Eigen::MatrixXd X = f->cholesky ? Eigen::MatrixXd(f->llt.solve(B)) : Eigen::MatrixXd(f->lu.solve(B));
  if (!f->checked) {  // a backward-stable factor: its first solve's residual vouches for the rest
    Eigen::Index k = std::min<Eigen::Index>(B.cols(), 8);
    check_residual(a, X.leftCols(k), B.leftCols(k), f->cholesky ? "Cholesky" : "LU");
    f->checked = true;
  }
  return X;
}

// Block conjugate gradients, one independent recurrence per column.
Eigen::MatrixXd OperatorEngine::conjugate_gradients(int a, const Eigen::MatrixXd& B) {
  Eigen::MatrixXd X = Eigen::MatrixXd::Zero(B.rows(), B.cols());
  Eigen::MatrixXd R = B, P = B;
  Eigen::ArrayXd rr = R.colwise().squaredNorm().transpose().array();
  const Eigen::ArrayXd target = kResidualTol * kResidualTol * 1e-2 * rr;
  int max_iter = 4 * int(std::min<std::int64_t>(rows(a), 5000));
  for (int it = 0; it < max_iter && (rr > target).any(); ++it) {
    Eigen::MatrixXd AP = apply(a, P);
    for (Eigen::Index j = 0; j < B.cols(); ++j) {
      if (rr(j) <= target(j)) continue;
      double pap = P.col(j).dot(AP.col(j));
      if (!(pap > 0))
        fail(at_, "inv(" + ir::op_text(*in_.program, a) + "): the operator is not positive definite (conjugate gradients broke down)",
             "conjugate gradients invert symmetric positive definite operators; add a ridge: + lam * I");
      double alpha = rr(j) / pap;
      X.col(j) += alpha * P.col(j);
      R.col(j) -= alpha * AP.col(j);
      double next = R.col(j).squaredNorm();
      P.col(j) = R.col(j) + (next / rr(j)) * P.col(j);
      rr(j) = next;
    }
  }
  check_residual(a, X, B, "conjugate gradients");
  return X;
}

void OperatorEngine::check_residual(int a, const Eigen::MatrixXd& X, const Eigen::MatrixXd& B, const char* method) {
  double res = (apply(a, X) - B).norm(), scale = B.norm();
  if (std::isfinite(res) && res <= kResidualTol * std::max(scale, 1e-300)) return;
  std::ostringstream m;
  m << "inv(" << ir::op_text(*in_.program, a) << ") at width " << in_.width << " (seed " << in_.seed_index
    << "): relative residual " << res / scale << " by " << method << " (the operator is singular or nearly so)";
  fail(at_, m.str(), "add a ridge (+ lam * I) or check the operator's rank: X.T @ X is singular when X has fewer rows");
}

// node @ [e_c0 .. e_c0+w-1]: a matrix's columns are read, not multiplied by
// the identity, and a product starts from its last factor's columns.
Eigen::MatrixXd OperatorEngine::columns(int node, std::int64_t c0, std::int64_t w) {
  const ir::OpNode& n = in_.program->op_nodes[node];
  switch (n.kind) {
    case ir::OpKind::Matrix: {
      const Eigen::MatrixXd& W = in_.matrix(n.matrix);
      return n.transposed ? Eigen::MatrixXd(W.middleRows(c0, w).transpose()) : Eigen::MatrixXd(W.middleCols(c0, w));
    }
    case ir::OpKind::Product: {
      Eigen::MatrixXd Y = columns(n.args.back(), c0, w);
      for (std::size_t i = n.args.size() - 1; i-- > 0;) Y = apply(n.args[i], Y);
      return Y;
    }
    default: {
      Eigen::MatrixXd E = Eigen::MatrixXd::Zero(cols(node), w);
      for (std::int64_t j = 0; j < w; ++j) E(c0 + j, j) = 1;
      return apply(node, E);
    }
  }
}

// Tr of node's diagonal block c0..c0+w-1. Linear over sums and scalings; a
// product A B ... whose first factor is a matrix or a diagonal takes the
// block's rows of A against the columns of B ... (tr(A Y) = sum A o Y^T), so
// that A is never multiplied: tr(W @ W.T) costs O(n^2), not O(n^3).
double OperatorEngine::panel_trace(int node, std::int64_t c0, std::int64_t w) {
  const ir::OpNode& n = in_.program->op_nodes[node];
  if (n.kind == ir::OpKind::Scale) return factor(node) * panel_trace(n.args[0], c0, w);
  if (n.kind == ir::OpKind::Sum) {
    double s = 0;
    for (int a : n.args) s += panel_trace(a, c0, w);
    return s;
  }
  int first = n.kind == ir::OpKind::Product && n.args.size() > 1 ? n.args[0] : -1;
  const ir::OpNode* f = first >= 0 ? &in_.program->op_nodes[first] : nullptr;
  if (f && (f->kind == ir::OpKind::Matrix || f->kind == ir::OpKind::Diag)) {
    // Y = (the product without its first factor) @ the identity's columns.
    Eigen::MatrixXd Y = columns(n.args.back(), c0, w);
    for (std::size_t i = n.args.size() - 1; i-- > 1;) Y = apply(n.args[i], Y);
    if (f->kind == ir::OpKind::Diag) {
      const Eigen::ArrayXd& g = diagonal(first);
      double s = 0;
      for (std::int64_t j = 0; j < w; ++j) s += g(c0 + j) * Y(c0 + j, j);
      return s;
    }
    const Eigen::MatrixXd& W = in_.matrix(f->matrix);
    // rows c0.. of W (or of W^T: columns c0.. of W) against Y's columns
    if (f->transposed) return (W.middleCols(c0, w).array() * Y.array()).sum();
    return (W.middleRows(c0, w).array() * Y.transpose().array()).sum();
  }
  Eigen::MatrixXd Y = columns(node, c0, w);
  double s = 0;
  for (std::int64_t j = 0; j < w; ++j) s += Y(c0 + j, j);
  return s;
}

TraceEstimate OperatorEngine::trace(int node) {
  const std::int64_t d = rows(node);
  TraceEstimate t;
  if (d <= kDenseMax) {
    double sum = 0;
    for (std::int64_t c0 = 0; c0 < d; c0 += kIdentityPanel) sum += panel_trace(node, c0, std::min<std::int64_t>(kIdentityPanel, d - c0));
    t.value = sum / double(d);
    return t;
  }
  // Linear over sums and scalings, and exact for I and diagonals: only the
  // other terms are estimated (their probes independent: keyed by node).
  const ir::OpNode& n = in_.program->op_nodes[node];
  switch (n.kind) {
    case ir::OpKind::Identity: t.value = 1; return t;
    case ir::OpKind::Diag: t.value = diagonal(node).mean(); return t;
    case ir::OpKind::Scale: {
      const double f = factor(node);
      t = trace(n.args[0]);
      t.value *= f;
      t.sem *= std::abs(f);
      return t;
    }
    case ir::OpKind::Sum: {
      double var = 0;
      for (int a : n.args) {
        TraceEstimate c = trace(a);
        t.value += c.value;
        var += c.sem * c.sem;
        t.matvecs += c.matvecs;
      }
      t.sem = std::sqrt(var);
      return t;
    }
    default: break;
  }
  // Hutch++ (Meyer, Musco, Musco and Woodruff 2021). For any orthonormal Q,
  // Tr A = Tr(Q^T A Q) + Tr(P A P) with P = I - Q Q^T. Q spans A S for a
  // Rademacher sketch S, so a low-rank part or a few outlying eigenvalues,
  // which dominate plain Hutchinson's variance, are traced exactly; the rest
  // is Hutchinson's (Pz)^T A (Pz) over Rademacher z: unbiased given Q, its
  // terms independent, so their spread is the standard error. Sketch and
  // probes are keyed by the seed and the operator: the same for any thread count.
  const std::uint64_t key = stream_key(in_.base_seed, in_.seed_index, kProbeObject ^ std::uint64_t(node));
  auto draw = [&](int first, int count) {
    Eigen::MatrixXd Z(d, count);
    for (int j = 0; j < count; ++j) rademacher(key, std::uint64_t(first + j), d, Z.col(j).data());
    return Z;
  };
  Eigen::MatrixXd Q = Eigen::HouseholderQR<Eigen::MatrixXd>(apply(node, draw(0, kSketch))).householderQ() *
                      Eigen::MatrixXd::Identity(d, kSketch);
  const double head = (Q.array() * apply(node, Q).array()).sum() / double(d);
  Eigen::MatrixXd G = draw(kSketch, kProbes);
  G -= Q * (Q.transpose() * G);
  Eigen::ArrayXd q = (G.array() * apply(node, G).array()).colwise().sum().transpose() / double(d);
  t.value = head + q.mean();
  t.sem = std::sqrt((q - q.mean()).square().sum() / (kProbes - 1) / kProbes);
  t.matvecs = 2 * kSketch + kProbes;
  return t;
}

std::size_t operator_workspace(const ir::Program& p, int node, std::int64_t width, const std::set<ir::VarId>& streamed) {
  std::int64_t d = dim_size(p, p.op_nodes[node].rows, width);
  double bytes = 0, panel = 0;
  if (ir::contains_inverse(p, node) && d <= OperatorEngine::kDenseMax) bytes += 3 * double(d) * double(d) * 8;
  for (ir::VarId m : ir::op_matrices(p, node))
    if (streamed.count(m))
      panel = std::max(panel, double(dim_size(p, p.vars[m].rows, width)) *
                                  double(std::min<std::int64_t>(kPanel, dim_size(p, p.vars[m].cols, width))) * 8);
  // Blocks of identity columns (exact traces) or sketch and probes (Hutch++),
  // each with its image, and a product's intermediate block.
  const double block = std::max<double>(kIdentityPanel, 2 * OperatorEngine::kSketch + OperatorEngine::kProbes);
  return std::size_t(bytes + panel + double(d) * block * 8 * 3);
}

namespace {
void dense_inverse_matrices(const ir::Program& p, int node, std::int64_t width, std::set<ir::VarId>& out) {
  const ir::OpNode& n = p.op_nodes[node];
  if (n.kind == ir::OpKind::Inverse && dim_size(p, p.op_nodes[n.args[0]].rows, width) <= OperatorEngine::kDenseMax)
    for (ir::VarId m : ir::op_matrices(p, n.args[0])) out.insert(m);
  for (int a : n.args) dense_inverse_matrices(p, a, width, out);
}
}  // namespace

std::set<ir::VarId> densely_formed(const ir::Program& p, const std::vector<int>& roots, const std::vector<int>& dense_roots,
                                   std::int64_t width) {
  std::set<ir::VarId> out;
  for (int r : dense_roots)
    for (ir::VarId m : ir::op_matrices(p, r)) out.insert(m);
  for (int r : roots) dense_inverse_matrices(p, r, width, out);
  return out;
}

std::vector<ir::VarId> operator_operands(const ir::Program& p, const ir::Instr& in) {
  std::vector<ir::VarId> v = ir::op_leaves(p, in.op_node);
  if (in.op == ir::Op::Apply) v.push_back(in.arg);
  return v;
}

}  // namespace netsor::exec
