// The Gaussian side of the Z calculus (primer section 2): the leaves (initial
// vectors and Zhat's), their families with means and covariances, each
// vector's Z as an affine form over the leaves where it is one (linear
// programs), and the exact moments of polynomials of degree <= 2 in such Z's.
// Linear programs thereby need no quadrature: their covariances and Zdot
// coefficients are covariance algebra, and long iterations stay cheap.
#pragma once

#include <map>
#include <utility>
#include <vector>

#include "netsor/limit.hpp"

namespace netsor::limit {

// Z as an affine combination of leaves: off + sum_l c[l] leaf_l (c shorter than
// the number of leaves means zeros beyond).
struct AffineZ {
  bool ok = false;
  std::vector<double> c;
  double off = 0;
  bool mean_known = false;  // mean cached (set once the Z is complete)
  double mean = 0;
  double at(int l) const { return l < (int)c.size() ? c[l] : 0.0; }
  void axpy(double a, const AffineZ& x);
  // off + sum_l c[l] leaf_l as an expression over leaf ids (a balanced sum,
  // so that walks over a Z of thousands of terms stay shallow).
  Expr expr() const;
};

// A symmetric matrix grown a row at a time, kept as its lower triangle by
// rows: a family of k Zhat's costs k^2/2 numbers and no copy as it grows.
class PackedSymmetric {
 public:
  explicit PackedSymmetric(const Eigen::MatrixXd& m = Eigen::MatrixXd());
  int size() const { return n_; }
  double operator()(int i, int j) const { return i >= j ? a_[tri(i) + j] : a_[tri(j) + i]; }
  // Appends row k = size() (its last entry the diagonal).
  void append(const Eigen::VectorXd& row);
  // C c over the leading block of c's length (an Init family's leaves come
  // one member at a time; its covariance is declared whole).
  Eigen::VectorXd times(const Eigen::VectorXd& c) const;
  // The leading k x k block, dense.
  Eigen::MatrixXd dense(int k) const;

 private:
  static std::size_t tri(int i) { return (std::size_t)i * (i + 1) / 2; }
  Eigen::Map<const Eigen::VectorXd> row(int i) const { return {a_.data() + tri(i), i + 1}; }
  std::vector<double> a_;
  int n_ = 0;
};

class GaussianState {
 public:
  GaussianState(const ir::Program& p);
  GaussianState(const GaussianState&) = delete;  // law_ refers to this object
  GaussianState& operator=(const GaussianState&) = delete;

  const GaussianLaw& law() const { return law_; }
  const std::vector<Leaf>& leaves() const { return leaves_; }
  const std::vector<Family>& families() const { return fam_; }
  const Leaf& leaf(int l) const { return leaves_[l]; }
  const Family& family(int f) const { return fam_[f]; }
  double cov(int f, int i, int j) const { return cov_[f](i, j); }
  const AffineZ& affine(ir::VarId v) const { return aff_[v]; }

  // The family of an Init's declaration, made at its first member.
  int init_family(int ir_family);
  // The family of all Zhat of W (or of W^T, a separate family): scale is
  // sigma_W^2, times n1/n2 for W^T.
  int matrix_family(ir::VarId matrix, bool transposed, double scale);
  // A family of Zhat's that belongs to no matrix (rotation-invariant
  // operators applied to vectors, zcalculus.cpp); rows come whole to new_zhat.
  int new_family(const std::string& name);
  // The family of the products by W^T for W (and back), or -1 if none yet.
  int opposite_family(ir::VarId matrix, bool transposed) const;
  // A new leaf of family f whose covariance with the earlier leaves is `row`
  // (its last entry the variance); its mean is 0 for a Zhat.
  int new_zhat(const std::string& name, int f, ir::VarId var, ir::VarId arg, const Eigen::VectorXd& row);
  int new_init(const std::string& name, int f, ir::VarId var);
  // The family covariances, trimmed, into the families (for the Result).
  void finish();

  // v's Z is the leaf l (exactly affine).
  void set_leaf_z(ir::VarId v, int l);
  void set_affine(ir::VarId v, const AffineZ& a) { aff_[v] = a; }
  void add_to_affine(ir::VarId v, double coef, ir::VarId y);
  void cache_mean(ir::VarId v);
  double mean_of(const AffineZ& a) const;
  // Sigma c_a over all leaves (Sigma block diagonal over families).
  std::vector<double> sigma_times(const AffineZ& a) const;
  // E[Z^a Z^b] = c_b' Sigma c_a + mean_a mean_b, given Sigma c_a.
  double second_moment(const std::vector<double>& sigma_a, double mean_a, const AffineZ& b) const;
  // An affine expression of vectors whose Z's are affine: its Z, affine.
  bool affine_z(const Expr& e, AffineZ& out) const;
  // A moment that is a polynomial of degree <= 2 in affine Z's: exact.
  bool exact_moment(const Expr& e, Estimate& out) const;

 private:
  const ir::Program& p_;
  GaussianLaw law_;
  std::vector<Leaf> leaves_;
  std::vector<Family> fam_;
  std::vector<PackedSymmetric> cov_;  // each family's covariance
  std::vector<AffineZ> aff_;
  std::map<int, int> ir_family_;
  std::map<std::pair<ir::VarId, bool>, int> matrix_family_;

  int new_leaf(const std::string& name, int family, ir::VarId var, ir::VarId arg);
};

}  // namespace netsor::limit
