// The Gaussian-family algebra of the limit pass (gaussian_state.hpp).
#include "gaussian_state.hpp"

#include <algorithm>
#include <stdexcept>

namespace netsor::limit {

void AffineZ::axpy(double a, const AffineZ& x) {
  mean_known = false;
  if (c.size() < x.c.size()) c.resize(x.c.size(), 0.0);
  Eigen::Map<Eigen::VectorXd>(c.data(), (Eigen::Index)x.c.size()) +=
      a * Eigen::Map<const Eigen::VectorXd>(x.c.data(), (Eigen::Index)x.c.size());
  off += a * x.off;
}

PackedSymmetric::PackedSymmetric(const Eigen::MatrixXd& m) {
  for (int i = 0; i < m.rows(); ++i) append(m.row(i).head(i + 1).transpose());
}

void PackedSymmetric::append(const Eigen::VectorXd& r) {
  if (r.size() != n_ + 1) throw std::logic_error("PackedSymmetric::append: a row of the wrong length");
  a_.insert(a_.end(), r.data(), r.data() + r.size());
  ++n_;
}

Eigen::VectorXd PackedSymmetric::times(const Eigen::VectorXd& c) const {
  // Row i of the lower triangle gives (C c)_i's part left of the diagonal and,
  // by symmetry, row i's column contributions above it: one pass over the rows.
  int k = (int)c.size();
  Eigen::VectorXd v = Eigen::VectorXd::Zero(k);
  for (int i = 0; i < k; ++i) {
    auto r = row(i);
    v(i) += r.dot(c.head(i + 1));
    v.head(i) += c(i) * r.head(i);
  }
  return v;
}

Eigen::MatrixXd PackedSymmetric::dense(int k) const {
  Eigen::MatrixXd m(k, k);
  for (int i = 0; i < k; ++i)
    for (int j = 0; j <= i; ++j) m(i, j) = m(j, i) = (*this)(i, j);
  return m;
}

Expr AffineZ::expr() const {
  std::vector<Expr> terms;
  if (off != 0) terms.push_back(constant(off));
  for (std::size_t l = 0; l < c.size(); ++l)
    if (c[l] != 0) terms.push_back(c[l] == 1 ? var((int)l) : mul(constant(c[l]), var((int)l)));
  if (terms.empty()) return constant(0.0);
  // Pairwise: depth log2(terms).
  for (std::size_t width = 1; width < terms.size(); width *= 2)
    for (std::size_t i = 0; i + width < terms.size(); i += 2 * width) terms[i] = add(terms[i], terms[i + width]);
  return terms[0];
}

GaussianState::GaussianState(const ir::Program& p) : p_(p), aff_(p.vars.size()) {
  law_.mean = [this](int l) { return fam_[leaves_[l].family].mean(leaves_[l].index); };
  // Families are independent (primer section 2): Sigma is block diagonal.
  law_.cov = [this](int a, int b) {
    const Leaf &A = leaves_[a], &B = leaves_[b];
    return A.family == B.family ? cov_[A.family](A.index, B.index) : 0.0;
  };
}

int GaussianState::new_leaf(const std::string& nm, int family, ir::VarId var, ir::VarId arg) {
  Leaf l;
  l.name = nm;
  l.family = family;
  l.index = (int)fam_[family].leaves.size();
  l.var = var;
  l.arg = arg;
  leaves_.push_back(l);
  fam_[family].leaves.push_back((int)leaves_.size() - 1);
  return (int)leaves_.size() - 1;
}

int GaussianState::init_family(int ir_family) {
  auto it = ir_family_.find(ir_family);
  if (it != ir_family_.end()) return it->second;
  const auto& f = p_.families[ir_family];
  Family F;
  F.name = "init";
  for (auto m : f.members) F.name += (F.name == "init" ? " " : ", ") + p_.vars[m].name;
  F.mean = f.mean;
  F.cov = f.cov;
  fam_.push_back(F);
  cov_.emplace_back(f.cov);
  return ir_family_.emplace(ir_family, (int)fam_.size() - 1).first->second;
}

int GaussianState::new_init(const std::string& nm, int f, ir::VarId var) { return new_leaf(nm, f, var, -1); }

int GaussianState::matrix_family(ir::VarId matrix, bool transposed, double scale) {
  auto key = std::make_pair(matrix, transposed);
  auto it = matrix_family_.find(key);
  if (it != matrix_family_.end()) return it->second;
  Family F;
  F.name = p_.vars[matrix].name + (transposed ? ".T" : "");
  F.matrix = matrix;
  F.transposed = transposed;
  F.scale = scale;
  F.mean.resize(0);
  F.cov.resize(0, 0);
  fam_.push_back(F);
  cov_.emplace_back();
  matrix_family_[key] = (int)fam_.size() - 1;
  return (int)fam_.size() - 1;
}

int GaussianState::opposite_family(ir::VarId matrix, bool transposed) const {
  auto it = matrix_family_.find({matrix, !transposed});
  return it == matrix_family_.end() ? -1 : it->second;
}

int GaussianState::new_family(const std::string& name) {
  Family F;
  F.name = name;
  F.applied = true;
  fam_.push_back(F);
  cov_.emplace_back();
  return (int)fam_.size() - 1;
}

int GaussianState::new_zhat(const std::string& nm, int f, ir::VarId var, ir::VarId arg, const Eigen::VectorXd& row) {
  int k = (int)fam_[f].leaves.size();
  cov_[f].append(row);
  fam_[f].mean.conservativeResize(k + 1);
  fam_[f].mean(k) = 0;
  return new_leaf(nm, f, var, arg);
}

void GaussianState::finish() {
  for (std::size_t f = 0; f < fam_.size(); ++f) {
    fam_[f].cov = cov_[f].dense((int)fam_[f].leaves.size());
  }
}

void GaussianState::set_leaf_z(ir::VarId v, int leaf) {
  aff_[v].ok = true;
  aff_[v].c.assign(leaf + 1, 0.0);
  aff_[v].c[leaf] = 1.0;
}

void GaussianState::add_to_affine(ir::VarId v, double coef, ir::VarId y) {
  if (aff_[v].ok && aff_[y].ok) aff_[v].axpy(coef, aff_[y]);
  else aff_[v].ok = false;
}

std::vector<double> GaussianState::sigma_times(const AffineZ& a) const {
  std::vector<double> u(leaves_.size(), 0.0);
  Eigen::VectorXd c;
  std::vector<int> nz;
  for (const auto& F : fam_) {
    int k = (int)F.leaves.size();
    c.resize(k);
    nz.clear();
    for (int i = 0; i < k; ++i)
      if ((c(i) = a.at(F.leaves[i])) != 0) nz.push_back(i);
    if (nz.empty()) continue;
    const PackedSymmetric& C = cov_[&F - fam_.data()];
    Eigen::VectorXd v;
    if (4 * nz.size() < (std::size_t)k) {  // a few leaves (a Zhat alone): their columns
      v = Eigen::VectorXd::Zero(k);
      for (int i : nz)
        for (int j = 0; j < k; ++j) v(j) += c(i) * C(j, i);
    } else {
      v = C.times(c);
    }
    for (int j = 0; j < k; ++j) u[F.leaves[j]] = v(j);
  }
  return u;
}

double GaussianState::mean_of(const AffineZ& a) const {
  if (a.mean_known) return a.mean;
  double m = a.off;
  for (std::size_t l = 0; l < a.c.size(); ++l)
    if (a.c[l] != 0) m += a.c[l] * law_.mean((int)l);
  return m;
}

void GaussianState::cache_mean(ir::VarId v) {
  if (!aff_[v].ok) return;
  aff_[v].mean = mean_of(aff_[v]);
  aff_[v].mean_known = true;
}

double GaussianState::second_moment(const std::vector<double>& sigma_a, double mean_a, const AffineZ& b) const {
  Eigen::Index n = (Eigen::Index)std::min(b.c.size(), sigma_a.size());
  double s = Eigen::Map<const Eigen::VectorXd>(b.c.data(), n).dot(Eigen::Map<const Eigen::VectorXd>(sigma_a.data(), n));
  return s + mean_a * mean_of(b);
}

bool GaussianState::affine_z(const Expr& e, AffineZ& out) const {
  std::vector<double> coef;
  double off;
  if (!as_affine(e, coef, off)) return false;
  out = AffineZ{};
  out.ok = true;
  out.off = off;
  for (std::size_t id = 0; id < coef.size(); ++id) {
    if (coef[id] == 0) continue;
    if (p_.vars[id].kind == ir::VarKind::Scalar || !aff_[id].ok) return false;
    out.axpy(coef[id], aff_[id]);
  }
  return true;
}

// Each additive term is a constant, an affine combination of vectors, or a
// product (or square) of two such; the algebra stays in the sparse leaf
// space (no expansion of (z[T] - v)^2 into its leaves' quadratic form).
bool GaussianState::exact_moment(const Expr& e, Estimate& out) const {
  double total = 0, scale = 0;
  for (const auto& [coef, t] : additive_terms(e)) {
    double c, p;
    if (is_const(t, &c)) {
      total += coef * c;
      continue;
    }
    AffineZ a, b;
    double v;
    if (affine_z(t, a)) v = mean_of(a);
    else if (t->op == ExprOp::Mul && affine_z(t->a, a) && affine_z(t->b, b))
      v = second_moment(sigma_times(a), mean_of(a), b);
    else if (t->op == ExprOp::Pow && is_const(t->b, &p) && p == 2 && affine_z(t->a, a))
      v = second_moment(sigma_times(a), mean_of(a), a);
    else return false;
    total += coef * v;
    scale += std::abs(coef * v);
  }
  out = {total, scale * 1e-15 * std::max<std::size_t>(1, leaves_.size()), "exact (Gaussian algebra)"};
  return true;
}

}  // namespace netsor::limit
