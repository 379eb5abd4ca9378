// The operator algebra (src/ir/operators.cpp): shapes, transposes, the symmetry
// proof, sizing the identity, and printing.
#include <doctest/doctest.h>

#include "netsor/frontend.hpp"
#include "netsor/operators.hpp"

using namespace netsor;
using namespace netsor::ir;

namespace {
const std::string kDir = NETSOR_SOURCE_DIR;

Program sample() {
  return compile_string(
      "width m = 0.5 n\n"
      "const lam = 0.1\n"
      "matrix A[m, n] : gaussian(var=1)\n"
      "matrix B : gaussian(var=1)\n"
      "vector x : gaussian(var=1)\n"
      "h = B @ x\n"
      "operator S = A.T @ A + lam * I\n"
      "operator J = diag(tanh'(h)) @ B\n"
      "operator K = J @ J.T\n",
      kDir + "/tests/unit/snippet.tp");
}

int named(const Program& p, const std::string& name) {
  for (const auto& o : p.operators)
    if (o.name == name) return o.node;
  FAIL("no operator " << name);
  return -1;
}

VarId var(const Program& p, const std::string& name) {
  for (std::size_t i = 0; i < p.vars.size(); ++i)
    if (p.vars[i].name == name) return VarId(i);
  FAIL("no variable " << name);
  return -1;
}
}  // namespace

TEST_CASE("operators: shapes, printing, and the identity sized by the sum it meets") {
  Program p = sample();
  int S = named(p, "S"), J = named(p, "J"), K = named(p, "K");
  CHECK(op_text(p, S) == "A.T @ A + 0.1 * I");
  CHECK(shape_text(p, S) == "n x n");
  CHECK(op_text(p, K) == "diag(1 - tanh(h)^2) @ B @ B.T @ diag(1 - tanh(h)^2)");
  CHECK(!unsized(p, S));
  int a = op_matrix(p, var(p, "A"), false);
  CHECK(shape_text(p, a) == "m x n");
  CHECK(shape_text(p, op_transpose(p, a)) == "n x m");
  CHECK(op_matrices(p, J) == std::vector<VarId>{var(p, "B")});
  CHECK(op_leaves(p, J) == std::vector<VarId>{var(p, "h")});
  int i = op_identity(p);
  CHECK(unsized(p, i));
  CHECK(shape_text(p, op_sized(p, i, p.vars[var(p, "A")].rows)) == "m x m");
}

TEST_CASE("operators: a sum or product of the wrong shapes, and the inverse of a rectangle, are refused") {
  Program p = sample();
  int a = op_matrix(p, var(p, "A"), false), b = op_matrix(p, var(p, "B"), false);
  OpError err;
  CHECK(op_sum(p, a, b, &err) == -1);
  CHECK(!err.message.empty());
  err = {};
  CHECK(op_product(p, b, a, &err) == -1);  // (n x n) @ (m x n)
  CHECK(!err.message.empty());
  err = {};
  CHECK(op_product(p, a, b, &err) >= 0);  // (m x n) @ (n x n)
  CHECK(op_inverse(p, a, &err) == -1);
  CHECK(!err.message.empty());
  CHECK(!contains_inverse(p, b));
  err = {};
  CHECK(contains_inverse(p, op_inverse(p, b, &err)));
}

TEST_CASE("operators: the symmetry proof accepts X @ M @ X.T, sums, diagonals and inverses, and says why not") {
  Program p = sample();
  CHECK(why_not_symmetric(p, named(p, "S")).empty());
  CHECK(why_not_symmetric(p, named(p, "K")).empty());
  int b = op_matrix(p, var(p, "B"), false);
  CHECK(why_not_symmetric(p, b).find("independent entries") != std::string::npos);
  OpError err;
  int bb = op_product(p, b, b, &err);
  CHECK(why_not_symmetric(p, bb).find("is not the transpose of factor") != std::string::npos);
  CHECK(why_not_symmetric(p, op_inverse(p, named(p, "S"), &err)).empty());
  // Transposing a product reverses it.
  CHECK(op_text(p, op_transpose(p, named(p, "J"))) == "B.T @ diag(1 - tanh(h)^2)");
}
