// Operators at finite width (ir::OpNode trees): matrix-free application to
// blocks of vectors, dense forms, inverses and normalized traces, over one
// seed's matrices and vectors. Internal to src/exec.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include "netsor/ir.hpp"

namespace netsor::exec {

// What an operator reads from one seed's run: the executor's own matrices
// (so a seed gives the same numbers to reports and to spectra) and vectors.
struct OperatorInputs {
  const ir::Program* program = nullptr;
  std::int64_t width = 0;
  std::uint64_t base_seed = 0, seed_index = 0;
  std::function<const Eigen::MatrixXd&(ir::VarId)> matrix;
  std::function<const Eigen::ArrayXd&(ir::VarId)> vector;
  std::function<double(ir::VarId)> scalar;
  // W X (W^T X if t) for the matrix m, if set: the executor's kernels, which
  // generate a matrix too large to store a panel at a time at every
  // application, with the same entries a stored one has. Dense forms and
  // exact traces read `matrix` whatever this does.
  std::function<Eigen::MatrixXd(ir::VarId, bool, const Eigen::MatrixXd&)> product;
};

// The size of a dimension at base width n (executor.cpp).
std::int64_t dim_size(const ir::Program& p, const ir::Dim& d, std::int64_t n);

struct TraceEstimate {
  double value = 0;
  double sem = 0;  // of the Hutch++ estimate; 0 when exact
  int matvecs = 0;  // operator applications to vectors: 0 when exact, from the diagonal
};

class OperatorEngine {
 public:
  // Widths up to this size form inverses and traces densely; beyond, conjugate
  // gradients and Hutch++: a sketch of kSketch columns, whose range's trace
  // is exact, and kProbes Rademacher probes of the rest.
  static constexpr std::int64_t kDenseMax = 4096;
  static constexpr int kSketch = 16;
  static constexpr int kProbes = 48;

  explicit OperatorEngine(OperatorInputs in) : in_(std::move(in)) {}

  std::int64_t rows(int node) const;
  std::int64_t cols(int node) const;
  // node @ X for a block X of cols(node) rows.
  Eigen::MatrixXd apply(int node, const Eigen::MatrixXd& X);
  // The operator as a dense matrix.
  Eigen::MatrixXd dense(int node);
  // (1/dim) Tr(node).
  TraceEstimate trace(int node);
  // Where errors (a singular inverse) are reported.
  void set_location(const SourceLoc& at) { at_ = at; }
  const ir::Program& program() const { return *in_.program; }
  const OperatorInputs& inputs() const { return in_; }

 private:
  OperatorInputs in_;
  SourceLoc at_;
  std::map<int, Eigen::ArrayXd> diag_;  // evaluated diagonals
  struct Factor;
  std::map<int, std::shared_ptr<Factor>> factors_;  // dense factors of inverses

  const Eigen::ArrayXd& diagonal(int node);
  Eigen::MatrixXd columns(int node, std::int64_t c0, std::int64_t w);
  double panel_trace(int node, std::int64_t c0, std::int64_t w);
  double factor(int node) const;
  Eigen::MatrixXd solve(int node, const Eigen::MatrixXd& B);
  Eigen::MatrixXd conjugate_gradients(int a, const Eigen::MatrixXd& B);
  void check_residual(int a, const Eigen::MatrixXd& X, const Eigen::MatrixXd& B, const char* method);
};

// Bytes an operator's application or trace needs beyond the program's
// vectors and the operator's stored matrices: a dense factor for each inverse
// at widths that form one, the identity panels or probe blocks of a trace,
// and the column panels of `streamed` matrices.
std::size_t operator_workspace(const ir::Program& p, int node, std::int64_t width, const std::set<ir::VarId>& streamed);
// The matrices that these operators (`roots`) form densely at this width,
// so that they cannot be streamed: those of `dense_roots` (exact traces,
// spectra by the dense solver) and of every inverse small enough to factor.
std::set<ir::VarId> densely_formed(const ir::Program& p, const std::vector<int>& roots, const std::vector<int>& dense_roots,
                                   std::int64_t width);
// The vector and scalar variables that operator instructions read.
std::vector<ir::VarId> operator_operands(const ir::Program& p, const ir::Instr& in);

}  // namespace netsor::exec
