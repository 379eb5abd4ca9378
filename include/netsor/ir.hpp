// The typed program IR: plain data, produced by the front end (src/parse) and
// read by the two back ends, the limit pass (src/limit) and the finite-width
// executor (src/exec). Loops, defs and imports are gone; what remains is the
// straight-line NETSOR-T+ program of primer section 1.
#pragma once

#include <Eigen/Dense>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "netsor/diagnostics.hpp"
#include "netsor/expr.hpp"

namespace netsor::ir {

using VarId = int;

// An infinite dimension n_i = ratio * n (primer section 1). widths[0] is n.
struct Width {
  std::string name;
  double ratio = 1.0;
};

// A matrix or vector side: an infinite width, or a fixed finite size d.
struct Dim {
  int width = 0;   // index into Program::widths, or -1 for a finite size
  int finite = 0;  // the size when width == -1
  bool is_finite() const { return width < 0; }
  bool operator==(const Dim&) const = default;
};

enum class VarKind { A, G, H, Scalar, Input };

struct Var {
  std::string name;
  VarKind kind = VarKind::H;
  Dim rows;      // A: rows; G/H: the vector's size
  Dim cols;      // A only
  int def = -1;  // index of the defining instruction (-1 for A-vars and inputs)
  SourceLoc loc;
};

enum class MatrixDist { Gaussian, Orthogonal };

// An A-var: entries iid N(0, variance / fan_in) (primer section 1), or a scaled
// Haar-orthogonal matrix for comparisons.
struct Matrix {
  VarId var = -1;
  MatrixDist dist = MatrixDist::Gaussian;
  double variance = 1.0;  // sigma_W^2
};

// Initial G-vars whose coordinates are iid N(mean, cov) jointly across members.
// Families are mutually independent. A family made by a finite-fan-in matrix
// U[n, d] applied to inputs xi has cov_ij = sigma_U^2 xi_i . xi_j / d.
struct GaussianFamily {
  std::vector<VarId> members;
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;
  VarId source_matrix = -1;  // U for input projections, else -1
  SourceLoc loc;
};

enum class Op {
  Init,    // out is member `member` of family `family`
  MatMul,  // out = W arg, or W^T arg when transposed (a G-var)
  Nonlin,  // out = phi(vectors; scalars) coordinatewise (an H-var)
  Moment,  // out = (1/n) sum_alpha phi(...)  (a scalar)
  Scalar,  // out = f(scalars): deterministic arithmetic on scalars
  Width,   // out = the width widths[member] as a number (for powers n^p, primer section 4)
  Apply,   // out = operator op_node applied to arg (an H-var); emitted only where the
           // operator contains inv(...): the rest lowers to MatMul and Nonlin
  Trace,   // out = (1/dim) Tr(operator op_node)  (a scalar)
};

struct Instr {
  Op op = Op::Nonlin;
  VarId out = -1;
  int family = -1, member = -1;  // Init (member: also the width of Op::Width)
  VarId matrix = -1;             // MatMul: the A-var
  bool transposed = false;       // MatMul
  VarId arg = -1;                // MatMul, Apply: the vector multiplied
  int op_node = -1;              // Apply, Trace: index into Program::op_nodes
  Expr expr;                     // Nonlin / Moment / Scalar: leaves are VarIds
  SourceLoc loc;
};

// Linear operators (`operator NAME = ...`, `spectrum`, `tr(...)`): expression
// trees over the program's matrices and diagonals, stored as nodes of one arena
// (Program::op_nodes), children before parents. Shapes are checked and
// symmetry proven when the program is read (src/ir/operators.cpp).
enum class OpKind {
  Matrix,    // an A-var, or its transpose
  Diag,      // diag(entries): a coordinatewise expression of vectors (leaves VarIds)
  Identity,  // I of size rows
  Scale,     // factor * args[0]; factor is a scalar expression (leaves scalar VarIds)
  Sum,       // args[0] + args[1] + ...
  Product,   // args[0] @ args[1] @ ... (applied right to left); never nested
  Inverse,   // inv(args[0]), args[0] square
};

struct OpNode {
  OpKind kind = OpKind::Identity;
  VarId matrix = -1;        // Matrix
  bool transposed = false;  // Matrix
  Expr entries;             // Diag: the diagonal; Scale: the factor
  std::vector<int> args;    // Scale, Sum, Product, Inverse
  Dim rows, cols;
  bool symmetric = false;   // proven when built (X @ M @ X.T, sums, diag, I, inv of symmetric)
};

// A named operator or an eigenvalue law asked for by `spectrum`.
struct OperatorRef {
  std::string name;
  int node = -1;
  SourceLoc loc;
};

struct Report {
  std::string name;
  VarId var = -1;  // a scalar
  SourceLoc loc;
};

struct Program {
  std::vector<Width> widths;
  std::vector<Var> vars;
  std::vector<Matrix> matrices;
  std::vector<GaussianFamily> families;
  std::vector<Instr> instrs;
  std::vector<Report> reports;
  std::vector<std::pair<std::string, Eigen::VectorXd>> inputs;  // name, value
  std::vector<OpNode> op_nodes;        // operator expression trees (see OpKind)
  std::vector<OperatorRef> operators;  // `operator NAME = ...`, for printing
  std::vector<OperatorRef> spectra;    // `spectrum ...`, in program order

  const Matrix& matrix_of(VarId v) const;
  // Size of a dimension in units of n (ratio), or the finite size.
  double dim_ratio(const Dim& d) const;
  std::string dim_name(const Dim& d) const;
};

// The invariants the passes rely on (every use after its definition, kinds and
// shapes agree, families consistent); throws InternalError naming the first
// broken one. Run on every program the front end returns.
void verify(const Program& p);

const char* kind_name(VarKind k);
const char* op_name(Op o);

// Human-readable listing of the lowered program (netsor print).
std::string to_text(const Program& p);
// Machine-readable form (netsor print --json): widths, vars (kind, shape,
// defining instruction), families, instructions, reports.
nlohmann::json to_json(const Program& p);

}  // namespace netsor::ir
