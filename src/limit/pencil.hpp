// Linearization (primer section 5): an operator expression (ir::OpNode) over
// Gaussian matrices, diagonals, identities, scalars, sums, products and
// inverses as a linear representation T = u Q^{-1} v with Q affine in the
// matrices and diagonals, and from it the self-adjoint pencils whose
// operator-valued Cauchy transform the fixed point (free_probability.cpp)
// solves. Private to the limit pass.
#pragma once

#include <Eigen/Dense>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "netsor/expr.hpp"
#include "netsor/ir.hpp"

namespace netsor::limit::fp {

// What the pencil cannot take (an orthogonal matrix, a finite side): the
// reason, for a located refusal.
struct PencilError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A noncommutative variable of the pencil: a Gaussian matrix or its transpose,
// or a diagonal diag(entries) (entries over the program's VarIds).
struct Atom {
  bool diag = false;
  ir::VarId matrix = -1;
  bool transposed = false;
  Expr entries;
  int width = -1;  // diag: its width
};

// One term of Q: c * 1 (atom < 0) or c * atom at block (i, j).
struct Entry {
  int i, j;
  double c;
  int atom;
};

// T = u Q^{-1} v: blocks of the given widths (Program::widths indices), Q the
// sum of its entries; u (v) is a sparse row (column) of scalars on blocks of
// T's row (column) width.
struct Rep {
  std::vector<int> width;
  std::vector<Entry> q;
  std::vector<std::pair<int, double>> u, v;
  int size() const { return (int)width.size(); }
};

// A self-adjoint pencil L = Q0 + sum_W (C_W (x) W + C_W^T (x) W^T) + sum_j B_j (x) d_j.
struct Pencil {
  std::vector<int> width;  // per block
  Eigen::MatrixXd Q0;
  struct Gauss {
    ir::VarId matrix = -1;
    double variance = 1;  // sigma_W^2: entries N(0, sigma^2 / cols)
    double ratio = 1;     // rows / cols of W
    Eigen::MatrixXd C;
  };
  std::vector<Gauss> gauss;
  struct Diag {
    Expr entries;
    int width = -1;
    Eigen::MatrixXd B;
  };
  std::vector<Diag> diags;
  int size() const { return (int)width.size(); }
};

class Linearizer {
 public:
  // scalar(e): the limit of a scale factor (an expression of program scalars).
  Linearizer(const ir::Program& p, std::function<double(const Expr&)> scalar)
      : p_(p), scalar_(std::move(scalar)) {}
  // Throws PencilError for what the construction does not cover.
  Rep rep(int node);
  // T1 T2 and T^k (k >= 1) of representations built by this object.
  Rep product(const Rep& a, const Rep& b) const;
  Rep power(const Rep& a, int k) const;
  const std::vector<Atom>& atoms() const { return atoms_; }
  // The self-adjoint pencil M = [[0, Q^T], [Q, 0]]: E[Q^{-1}]_{ij} = -G_{i, K+j}
  // at Lambda = 0 (the limit from i eps).
  Pencil doubled(const Rep& r) const;
  // P = [[0, a / sqrt 2], [a^T / sqrt 2, -M]], a = [u, v^T]: block 0 of
  // (Lambda - P)^{-1} at Lambda = diag(z, 0, ...) is (z - (T + T^T) / 2)^{-1}.
  Pencil spectral(const Rep& r) const;
  std::string atom_text(int a) const;

 private:
  const ir::Program& p_;
  std::function<double(const Expr&)> scalar_;
  std::vector<Atom> atoms_;

  int width_of(const ir::Dim& d, int node) const;
  int atom_of(int node, double& coef);  // -1: not an atom
  Rep identity(int width) const;
  Rep times_atom(Rep r, int atom, double c, int cols) const;
  Rep inverse(const Rep& r) const;
  Pencil assemble(const std::vector<int>& width, const std::vector<Entry>& q, int shift_i, int shift_j,
                  bool mirror) const;
};

// "Q0 + C (x) W + ...": the pencil's blocks in text, for netsor derive.
std::string pencil_text(const ir::Program& p, const Linearizer& lin, const Pencil& P);

}  // namespace netsor::limit::fp
