// The algebra of linear operators over a program's matrices (ir::OpNode):
// building nodes with their shapes checked, transposes, the symmetry proof,
// and printing. Plain functions on ir::Program, shared by the front end, the
// finite-width executor and the limit side.
#pragma once

#include <string>
#include <vector>

#include "netsor/ir.hpp"

namespace netsor::ir {

// An identity written alone (`I`) has no size until it meets a sized operator
// in a sum or a product; until then its Dim::width is kUnsized.
constexpr int kUnsized = -2;
bool unsized(const Program& p, int node);

// Why an operator expression is malformed, for a located error.
struct OpError {
  std::string message, hint;
};

int op_matrix(Program& p, VarId m, bool transposed);
int op_diag(Program& p, Expr entries, Dim d);
int op_identity(Program& p);
int op_scale(Program& p, Expr factor, int a);
// These return -1 and fill *err when the shapes do not fit.
int op_sum(Program& p, int a, int b, OpError* err);
int op_product(Program& p, int a, int b, OpError* err);
int op_inverse(Program& p, int a, OpError* err);
int op_transpose(Program& p, int a);
// The same tree with every unsized identity of size d.
int op_sized(Program& p, int a, Dim d);

bool contains_inverse(const Program& p, int node);
// Why `spectrum` cannot take this operator ("" if it is proven symmetric).
std::string why_not_symmetric(const Program& p, int node);
// "W[2] @ diag(tanh'(h)) @ W[1]": the operator as the language writes it.
std::string op_text(const Program& p, int node);
// The vectors and scalars the operator reads (diagonals, scale factors), and
// the matrices it multiplies by, each once, ascending.
std::vector<VarId> op_leaves(const Program& p, int node);
std::vector<VarId> op_matrices(const Program& p, int node);
std::string shape_text(const Program& p, int node);

}  // namespace netsor::ir
