// Linear representations and self-adjoint pencils (src/limit/pencil.hpp).
//
// The recursive constructions (Helton, Mai & Speicher 2018), with T = u Q^{-1} v:
//   I (width w)   Q = [1],                          u = v = e_0
//   T X (X atom)  Q' = [[Q, -v c X], [0, 1]],        u' = [u, 0], v' = e_new
//   T1 + T2       Q' = diag(Q1, Q2),                 u' = [u1, u2], v' = [v1; v2]
//   T1 T2         Q' = [[Q1, -v1 u2], [0, Q2]],      u' = [u1, 0], v' = [0; v2]
//   inv(T)        Q' = [[Q, v], [u, 0]],             u' = -e_new, v' = e_new
// (the last: the Schur complement of Q in Q' is -T). A product of k atoms is a
// chain of k + 1 blocks.
#include "pencil.hpp"

#include "netsor/operators.hpp"

#include <cmath>
#include <sstream>

namespace netsor::limit::fp {

int Linearizer::width_of(const ir::Dim& d, int node) const {
  if (d.is_finite() || d.width < 0)
    throw PencilError("'" + ir::op_text(p_, node) + "' has a finite side; the free-probability limit needs "
                      "every side of an operator to be an infinite width");
  return d.width;
}

Rep Linearizer::identity(int width) const {
  Rep r;
  r.width = {width};
  r.q = {{0, 0, 1.0, -1}};
  r.u = {{0, 1.0}};
  r.v = {{0, 1.0}};
  return r;
}

Rep Linearizer::times_atom(Rep r, int atom, double c, int cols) const {
  int k = r.size();
  r.width.push_back(cols);
  for (auto [i, ci] : r.v) r.q.push_back({i, k, -ci * c, atom});
  r.q.push_back({k, k, 1.0, -1});
  r.v = {{k, 1.0}};
  return r;
}

static void shift_into(Rep& out, const Rep& b, int off) {
  out.width.insert(out.width.end(), b.width.begin(), b.width.end());
  for (Entry e : b.q) out.q.push_back({e.i + off, e.j + off, e.c, e.atom});
}

Rep Linearizer::product(const Rep& a, const Rep& b) const {
  Rep r = a;
  int k = a.size();
  shift_into(r, b, k);
  for (auto [i, ci] : a.v)
    for (auto [j, cj] : b.u) r.q.push_back({i, k + j, -ci * cj, -1});
  r.v.clear();
  for (auto [j, cj] : b.v) r.v.push_back({k + j, cj});
  return r;
}

Rep Linearizer::power(const Rep& a, int k) const {
  Rep r = a;
  for (int i = 1; i < k; ++i) r = product(r, a);
  return r;
}

Rep Linearizer::inverse(const Rep& a) const {
  Rep r = a;
  int k = a.size();
  r.width.push_back(a.width[a.u.front().first]);
  for (auto [i, ci] : a.v) r.q.push_back({i, k, ci, -1});
  for (auto [j, cj] : a.u) r.q.push_back({k, j, cj, -1});
  r.u = {{k, -1.0}};
  r.v = {{k, 1.0}};
  return r;
}

// A matrix, a diagonal, or a scalar multiple of one: its atom index, and the
// factor in coef; -1 for anything else.
int Linearizer::atom_of(int node, double& coef) {
  const ir::OpNode& n = p_.op_nodes[node];
  if (n.kind == ir::OpKind::Scale) {
    int a = atom_of(n.args[0], coef);
    if (a >= 0) coef *= scalar_(n.entries);
    return a;
  }
  Atom at;
  if (n.kind == ir::OpKind::Matrix) {
    const ir::Matrix& M = p_.matrix_of(n.matrix);
    if (M.dist != ir::MatrixDist::Gaussian)
      throw PencilError("'" + p_.vars[n.matrix].name +
                        "' is Haar-orthogonal; the free-probability back end covers Gaussian matrices only");
    width_of(n.rows, node);
    width_of(n.cols, node);
    at.matrix = n.matrix;
    at.transposed = n.transposed;
  } else if (n.kind == ir::OpKind::Diag) {
    at.diag = true;
    at.entries = n.entries;
    at.width = width_of(n.rows, node);
  } else {
    return -1;
  }
  coef = 1;
  for (std::size_t i = 0; i < atoms_.size(); ++i) {
    const Atom& b = atoms_[i];
    if (b.diag == at.diag && b.matrix == at.matrix && b.transposed == at.transposed &&
        (!at.diag || (b.width == at.width && same(b.entries, at.entries))))
      return (int)i;
  }
  atoms_.push_back(at);
  return (int)atoms_.size() - 1;
}

Rep Linearizer::rep(int node) {
  const ir::OpNode& n = p_.op_nodes[node];
  double c = 1;
  int a = atom_of(node, c);
  if (a >= 0) return times_atom(identity(width_of(n.rows, node)), a, c, width_of(n.cols, node));
  switch (n.kind) {
    case ir::OpKind::Identity: return identity(width_of(n.rows, node));
    case ir::OpKind::Scale: {
      Rep r = rep(n.args[0]);
      double s = scalar_(n.entries);
      for (auto& [i, ci] : r.u) ci *= s;
      return r;
    }
    case ir::OpKind::Sum: {
      Rep r = rep(n.args[0]);
      for (std::size_t t = 1; t < n.args.size(); ++t) {
        Rep b = rep(n.args[t]);
        int k = r.size();
        shift_into(r, b, k);
        for (auto [i, ci] : b.u) r.u.push_back({k + i, ci});
        for (auto [i, ci] : b.v) r.v.push_back({k + i, ci});
      }
      return r;
    }
    case ir::OpKind::Product: {
      Rep r = identity(width_of(n.rows, node));
      for (int f : n.args) {
        double cf = 1;
        int af = atom_of(f, cf);
        r = af >= 0 ? times_atom(std::move(r), af, cf, width_of(p_.op_nodes[f].cols, f)) : product(r, rep(f));
      }
      return r;
    }
    case ir::OpKind::Inverse: return inverse(rep(n.args[0]));
    default: break;
  }
  throw PencilError("operator '" + ir::op_text(p_, node) + "' is not covered by the linearization");
}

Pencil Linearizer::doubled(const Rep& r) const {
  int K = r.size();
  Pencil P;
  P.width = r.width;
  P.width.insert(P.width.end(), r.width.begin(), r.width.end());
  P.Q0 = Eigen::MatrixXd::Zero(2 * K, 2 * K);
  auto gauss = [&](ir::VarId m) -> Eigen::MatrixXd& {
    for (auto& g : P.gauss)
      if (g.matrix == m) return g.C;
    Pencil::Gauss g;
    g.matrix = m;
    g.variance = p_.matrix_of(m).variance;
    const ir::Var& W = p_.vars[m];
    g.ratio = p_.dim_ratio(W.rows) / p_.dim_ratio(W.cols);
    g.C = Eigen::MatrixXd::Zero(2 * K, 2 * K);
    P.gauss.push_back(std::move(g));
    return P.gauss.back().C;
  };
  auto diag = [&](const Atom& at) -> Eigen::MatrixXd& {
    for (auto& d : P.diags)
      if (d.width == at.width && same(d.entries, at.entries)) return d.B;
    P.diags.push_back({at.entries, at.width, Eigen::MatrixXd::Zero(2 * K, 2 * K)});
    return P.diags.back().B;
  };
  // Q's entry (i, j) sits at (K + i, j) of M and its transpose at (j, K + i).
  for (const Entry& e : r.q) {
    int a = K + e.i, b = e.j;
    if (e.atom < 0) {
      P.Q0(a, b) += e.c;
      P.Q0(b, a) += e.c;
      continue;
    }
    const Atom& at = atoms_[e.atom];
    if (at.diag) {
      Eigen::MatrixXd& B = diag(at);
      B(a, b) += e.c;
      B(b, a) += e.c;
    } else if (!at.transposed) {
      gauss(at.matrix)(a, b) += e.c;  // the W^T term at (b, a) is C^T's
    } else {
      gauss(at.matrix)(b, a) += e.c;
    }
  }
  return P;
}

Pencil Linearizer::spectral(const Rep& r) const {
  Pencil M = doubled(r);
  int K = r.size(), N = M.size() + 1;
  Pencil P;
  P.width = {r.width[r.u.front().first]};
  P.width.insert(P.width.end(), M.width.begin(), M.width.end());
  auto grow = [&](const Eigen::MatrixXd& A) {
    Eigen::MatrixXd B = Eigen::MatrixXd::Zero(N, N);
    B.bottomRightCorner(N - 1, N - 1) = -A;
    return B;
  };
  P.Q0 = grow(M.Q0);
  const double s = 1 / std::sqrt(2.0);
  for (auto [i, ci] : r.u) P.Q0(0, 1 + i) = P.Q0(1 + i, 0) = P.Q0(0, 1 + i) + s * ci;
  for (auto [j, cj] : r.v) P.Q0(0, 1 + K + j) = P.Q0(1 + K + j, 0) = P.Q0(0, 1 + K + j) + s * cj;
  for (auto& g : M.gauss) P.gauss.push_back({g.matrix, g.variance, g.ratio, grow(g.C)});
  for (auto& d : M.diags) P.diags.push_back({d.entries, d.width, grow(d.B)});
  return P;
}

std::string Linearizer::atom_text(int a) const {
  const Atom& at = atoms_[a];
  auto name = [&](int id) { return p_.vars.at(id).name; };
  if (at.diag) return "diag(" + to_string(at.entries, name) + ")";
  return p_.vars[at.matrix].name + (at.transposed ? ".T" : "");
}

namespace {

std::string num(double v) {
  std::ostringstream o;
  o.precision(6);
  o << v;
  return o.str();
}

// The nonzero entries of A as "(i,j) c", one line.
std::string entries(const Eigen::MatrixXd& A) {
  std::string s;
  for (int i = 0; i < A.rows(); ++i)
    for (int j = 0; j < A.cols(); ++j)
      if (A(i, j) != 0) s += (s.empty() ? "" : ", ") + std::string("(") + std::to_string(i) + "," + std::to_string(j) +
                             ") " + num(A(i, j));
  return s.empty() ? "0" : s;
}

}  // namespace

std::string pencil_text(const ir::Program& p, const Linearizer&, const Pencil& P) {
  std::ostringstream o;
  auto name = [&](int id) { return p.vars.at(id).name; };
  o << "    blocks (" << P.size() << "):";
  for (int w : P.width) o << " " << p.widths[w].name;
  o << "\n    Q0 = " << entries(P.Q0) << "\n";
  for (const auto& g : P.gauss)
    o << "    C[" << p.vars[g.matrix].name << "] = " << entries(g.C) << "   (var " << num(g.variance)
      << ", rows/cols " << num(g.ratio) << ")\n";
  for (const auto& d : P.diags)
    o << "    B[diag(" << to_string(d.entries, name) << ")] = " << entries(d.B) << "\n";
  return o.str();
}

}  // namespace netsor::limit::fp
