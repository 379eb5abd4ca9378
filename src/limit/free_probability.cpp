// The operator-valued fixed point and what is read from it
// (include/netsor/free_probability.hpp, primer section 5).
//
// For a self-adjoint pencil L = Q0 + sum_W (C (x) W + C^T (x) W^T) + sum_j B_j (x) d_j
// (pencil.hpp), with blocks of several widths, the Gaussian blocks are free
// from the diagonals, and
//   G(Lambda) = E_Z[(Lambda - Q0 - sum_j B_j d_j(Z) - eta(G))^{-1}],
//   eta(G) = sum_W sigma_W^2 (C G C^T + (rows/cols of W) C^T G C),
// G_ij the normalized trace of block (i, j) (zero between different widths).
// The resolvent is block diagonal by width class, and the diagonals of one
// width are functions of the Z's of that width: each class takes its own
// expectation, by a tensor Gauss-Hermite rule in the range of their Gaussian
// leaves' covariance.
//
// Unknowns: Y = eta(G) on its support (a few entries). Solved at
// Lambda = Lambda_final + i t for t = 1, 0.1, ..., 1e-12, 0 (continuation), each
// level by damped iteration y <- (y + eta(F(y))) / 2 (which stays in the
// upper half-plane, Helton, Rashidi Far & Speicher 2007) until close, then
// Newton; Im G <= 0 is checked at every level with t > 0.
#include "netsor/free_probability.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <complex>
#include <sstream>

#include "netsor/operators.hpp"
#include "netsor/quadrature.hpp"
#include "pencil.hpp"

namespace netsor::limit {
namespace {

using cd = std::complex<double>;
using CMat = Eigen::MatrixXcd;
using CVec = Eigen::VectorXcd;
using fp::Pencil;

// The diagonals of one width class at the nodes of a Gaussian rule.
struct ClassLaw {
  int width = -1;
  std::vector<int> blocks;  // the pencil's blocks of this width
  std::vector<int> diags;   // indices into Pencil::diags
  std::vector<double> w;
  Eigen::MatrixXd d;  // node x diag
  int dim = 0, order = 0;  // order: nodes per dimension
  std::string rule;
};

std::string num(double v, int prec = 6) {
  std::ostringstream o;
  o.precision(prec);
  o << v;
  return o.str();
}

// The one-dimensional rule of a class's tensor rule (weight: the standard
// normal density). Smooth integrands: the trapezoidal rule on [-L, L], which
// converges geometrically in 1/h for functions analytic in a strip (tanh',
// whose poles are near the real axis, needs Gauss-Hermite orders in the
// hundreds); kinked ones (step, relu, ...): Gauss-Hermite of even order, which
// puts no node on a kink through the mean. `low` gives the coarser rule the
// error is measured against.
quad::Rule rule_1d(int dim, bool kinked, bool low, std::string& name) {
  if (dim == 0) return {{0.0}, {1.0}};
  if (kinked) {
    static const int hi[] = {0, 80, 40, 20}, lo[] = {0, 60, 30, 16};
    int o = low ? lo[dim] : hi[dim];
    name = "Gauss-Hermite order " + std::to_string(o);
    return quad::gauss_hermite(o);
  }
  static const double hi[] = {0, 0.15, 0.18, 0.5}, lo[] = {0, 0.2, 0.22, 0.6};
  double h = low ? lo[dim] : hi[dim], L = dim == 1 ? 9.5 : 8.8;
  quad::Rule r;
  double sum = 0;
  for (int k = -(int)(L / h); k <= (int)(L / h); ++k) {
    r.x.push_back(k * h);
    r.w.push_back(std::exp(-0.5 * k * h * k * h));
    sum += r.w.back();
  }
  for (double& w : r.w) w /= sum;
  name = "trapezoidal rule h = " + num(h) + " on [-" + num(L) + ", " + num(L) + "]";
  return r;
}

bool kinked(const Expr& e) {
  if (!e) return false;
  if (e->op == ExprOp::Call && is_kinked(e->fn)) return true;
  return kinked(e->a) || kinked(e->b);
}

std::vector<ClassLaw> class_laws(const ir::Program& p, const Pencil& P, const ZView& z, bool low) {
  std::vector<ClassLaw> out;
  for (int b = 0; b < P.size(); ++b) {
    auto it = std::find_if(out.begin(), out.end(), [&](const ClassLaw& c) { return c.width == P.width[b]; });
    if (it == out.end()) {
      out.push_back({});
      out.back().width = P.width[b];
      it = out.end() - 1;
    }
    it->blocks.push_back(b);
  }
  for (ClassLaw& c : out) {
    std::vector<Expr> f;
    for (int j = 0; j < (int)P.diags.size(); ++j)
      if (P.diags[j].width == c.width) {
        c.diags.push_back(j);
        f.push_back(substitute(P.diags[j].entries, [&](int v) {
          Expr e = z.subst(v);
          if (!e) throw FreeRefusal{"diag(...) reads '" + p.vars[v].name + "', which has no Z in the limit",
                                    "diagonals must be coordinatewise functions of the program's vectors"};
          return e;
        }));
      }
    std::vector<int> leaves;
    for (const Expr& e : f)
      for (int l : free_vars(e)) leaves.push_back(l);
    std::sort(leaves.begin(), leaves.end());
    leaves.erase(std::unique(leaves.begin(), leaves.end()), leaves.end());
    int m = (int)leaves.size();
    Eigen::VectorXd mu(m);
    Eigen::MatrixXd S(m, m);
    for (int a = 0; a < m; ++a) {
      mu(a) = z.law.mean(leaves[a]);
      for (int b = 0; b < m; ++b) S(a, b) = z.law.cov(leaves[a], leaves[b]);
    }
    Eigen::MatrixXd V(m, 0);
    if (m > 0) {
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(S);
      double top = std::max(es.eigenvalues().cwiseAbs().maxCoeff(), 1e-300);
      std::vector<int> keep;
      for (int a = 0; a < m; ++a)
        if (es.eigenvalues()(a) > 1e-13 * top) keep.push_back(a);
      V.resize(m, (int)keep.size());
      for (int a = 0; a < (int)keep.size(); ++a)
        V.col(a) = es.eigenvectors().col(keep[a]) * std::sqrt(es.eigenvalues()(keep[a]));
    }
    c.dim = (int)V.cols();
    if (c.dim > 3)
      throw FreeRefusal{"the diagonals of width '" + p.widths[c.width].name + "' depend on " +
                            std::to_string(c.dim) + " Gaussian directions; the tensor quadrature covers at most 3",
                        "write the operator with fewer distinct diagonals of one width"};
    bool kink = std::any_of(f.begin(), f.end(), [](const Expr& e) { return kinked(e); });
    const quad::Rule R = rule_1d(c.dim, kink, low, c.rule);
    c.order = (int)R.x.size();
    long nodes = 1;
    for (int a = 0; a < c.dim; ++a) nodes *= c.order;
    c.w.assign(nodes, 1.0);
    c.d.resize(nodes, (int)f.size());
    Eigen::VectorXd xi(c.dim), val(m);
    // Tensor nodes, less those whose weight is below 1e-19 (the corners).
    long kept = 0;
    for (long q = 0; q < nodes; ++q) {
      long r = q;
      double w = 1;
      for (int a = 0; a < c.dim; ++a) {
        xi(a) = R.x[r % c.order];
        w *= R.w[r % c.order];
        r /= c.order;
      }
      if (w < 1e-19) continue;
      c.w[kept] = w;
      val = mu + V * xi;
      for (int j = 0; j < (int)f.size(); ++j)
        c.d(kept, j) = evaluate(f[j], [&](int id) {
          return val(std::lower_bound(leaves.begin(), leaves.end(), id) - leaves.begin());
        });
      ++kept;
    }
    c.w.resize(kept);
    c.d.conservativeResize(kept, Eigen::NoChange);
  }
  return out;
}

// Continuation levels of t (Lambda = lam + i t): a trace needs only the end
// point; a density keeps t = 1e-4, 1e-5, 1e-6 for the Richardson check.
const std::vector<double> kTraceLevels = {1, 1e-3, 0};
const std::vector<double> kDensityLevels = {1, 1e-2, 1e-4, 1e-5, 1e-6, 1e-8, 1e-10, 1e-12, 0};

class FixedPoint {
 public:
  FixedPoint(const Pencil& P, std::vector<ClassLaw> cl) : P_(P), cl_(std::move(cl)), K_(P.size()) {
    // The support of eta's image: where Y can be nonzero.
    Eigen::MatrixXd same = Eigen::MatrixXd::Zero(K_, K_);
    for (const auto& c : cl_)
      for (int a : c.blocks)
        for (int b : c.blocks) same(a, b) = 1;
    Eigen::MatrixXd pat = Eigen::MatrixXd::Zero(K_, K_);
    for (const auto& g : P_.gauss) {
      Eigen::MatrixXd A = g.C.cwiseAbs();
      pat += A * same * A.transpose() + A.transpose() * same * A;
    }
    for (int a = 0; a < K_; ++a)
      for (int b = 0; b < K_; ++b)
        if (pat(a, b) > 0) supp_.push_back({a, b});
    for (const auto& g : P_.gauss) {
      std::vector<Trip> t;
      for (int i = 0; i < K_; ++i)
        for (int j = 0; j < K_; ++j)
          if (g.C(i, j) != 0) t.push_back({i, j, g.C(i, j)});
      trips_.push_back(std::move(t));
    }
  }

  struct Sol {
    CMat G;
    CVec y;
    double step = INFINITY;  // the last Newton correction (max norm)
    bool ok = false;
  };

  int unknowns() const { return (int)supp_.size(); }

  CMat eta(const CMat& G) const {
    CMat out = CMat::Zero(K_, K_);
    for (const auto& g : P_.gauss) {
      CMat C = g.C.cast<cd>();
      out += g.variance * (C * G * C.transpose() + g.ratio * C.transpose() * G * C);
    }
    return out;
  }

  CVec restrict(const CMat& Y) const {
    CVec y(supp_.size());
    for (std::size_t e = 0; e < supp_.size(); ++e) y(e) = Y(supp_[e].first, supp_[e].second);
    return y;
  }

  // G = F(y) at Lambda = diag(lam); with jac, also d eta(F)|_supp / dy:
  // dF/dY_ab = E[R E_ab R], so d eta(F)_pq / dY_ab = sum_W var (E[(CR)_pa (RC^T)_bq]
  // + ratio E[(C^T R)_pa (RC)_bq]), formed from the few rows and columns of
  // C R, R C^T, C^T R, R C that the support needs.
  CMat F(const CVec& lam, const CVec& y, CMat* jac) const {
    int n = unknowns();
    CMat G = CMat::Zero(K_, K_);
    if (jac) *jac = CMat::Zero(n, n);
    for (const auto& c : cl_) {
      int k = (int)c.blocks.size();
      std::vector<int> loc(K_, -1);
      for (int a = 0; a < k; ++a) loc[c.blocks[a]] = a;
      CMat base(k, k);
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) base(a, b) = -P_.Q0(c.blocks[a], c.blocks[b]);
      std::vector<int> mine;  // unknowns in this class
      for (int e = 0; e < n; ++e) {
        int a = loc[supp_[e].first], b = loc[supp_[e].second];
        if (a >= 0 && b >= 0) {
          base(a, b) -= y(e);
          mine.push_back(e);
        }
      }
      for (int a = 0; a < k; ++a) base(a, a) += lam(c.blocks[a]);
      std::vector<Eigen::MatrixXd> B;
      for (int j : c.diags) {
        Eigen::MatrixXd Bj(k, k);
        for (int a = 0; a < k; ++a)
          for (int b = 0; b < k; ++b) Bj(a, b) = P_.diags[j].B(c.blocks[a], c.blocks[b]);
        B.push_back(std::move(Bj));
      }
      CMat Gc = CMat::Zero(k, k), A(k, k), R(k, k);
      CMat X1(K_, k), X2(k, K_), X3(K_, k), X4(k, K_);
      for (std::size_t q = 0; q < c.w.size(); ++q) {
        A = base;
        for (std::size_t j = 0; j < B.size(); ++j) A -= c.d(q, j) * B[j].cast<cd>();
        R = A.partialPivLu().inverse();
        Gc += c.w[q] * R;
        if (!jac || mine.empty()) continue;
        for (std::size_t g = 0; g < trips_.size(); ++g) {
          X1.setZero(), X2.setZero(), X3.setZero(), X4.setZero();
          bool any = false;
          for (const Trip& t : trips_[g]) {
            if (loc[t.j] >= 0) {  // C_ij, j in the class: (C R)_i., (R C^T)_.i
              X1.row(t.i) += t.c * R.row(loc[t.j]);
              X2.col(t.i) += t.c * R.col(loc[t.j]);
              any = true;
            }
            if (loc[t.i] >= 0) {  // C_ij, i in the class: (C^T R)_j., (R C)_.j
              X3.row(t.j) += t.c * R.row(loc[t.i]);
              X4.col(t.j) += t.c * R.col(loc[t.i]);
              any = true;
            }
          }
          if (!any) continue;
          double s = c.w[q] * P_.gauss[g].variance, rho = P_.gauss[g].ratio;
          for (int e : mine) {
            int la = loc[supp_[e].first], lb = loc[supp_[e].second];
            for (int f = 0; f < n; ++f) {
              int p = supp_[f].first, qq = supp_[f].second;
              (*jac)(f, e) += s * (X1(p, la) * X2(lb, qq) + rho * X3(p, la) * X4(lb, qq));
            }
          }
        }
      }
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) G(c.blocks[a], c.blocks[b]) = Gc(a, b);
    }
    return G;
  }

  // One level: from y0, damped iteration while far, then Newton. Every
  // iteration spends one unit of `budget`; an exhausted budget is a failure.
  Sol solve(const CVec& lam, CVec y, bool damped_first, int& budget) const {
    Sol s;
    int n = unknowns();
    if (n == 0) {
      s.G = F(lam, y, nullptr);
      s.y = y;
      s.step = 0;
      s.ok = s.G.allFinite();
      return s;
    }
    if (damped_first)
      for (int it = 0; it < 400 && budget > 0; ++it, --budget) {
        CVec next = restrict(eta(F(lam, y, nullptr)));
        double d = (next - y).cwiseAbs().maxCoeff();
        y = 0.5 * (y + next);
        if (d < 1e-2 * (1 + y.cwiseAbs().maxCoeff())) break;
      }
    CMat jac;
    for (int it = 0; it < 60 && budget > 0; ++it, --budget) {
      CMat G = F(lam, y, &jac);
      CVec r = y - restrict(eta(G));
      Eigen::PartialPivLU<CMat> lu(CMat::Identity(n, n) - jac);
      CVec dy = lu.solve(-r);
      // Roundoff limits y to about eps times the condition number (large near
      // an atom, where G ~ 1 / delta): the convergence test allows for it.
      double tol = 1e-14 * std::min(1e8, std::max(1.0, 1 / std::max(lu.rcond(), 1e-300)));
      if (!dy.allFinite()) break;
      double rn = r.cwiseAbs().maxCoeff(), alpha = 1;
      CVec trial = y + dy;
      // Backtrack while the residual grows (Newton far from the root).
      for (int h = 0; h < 20; ++h) {
        // Near the root (a small step) Newton converges: no check needed.
        if (dy.cwiseAbs().maxCoeff() < 1e-6 * (1 + y.cwiseAbs().maxCoeff())) break;
        CVec rt = trial - restrict(eta(F(lam, trial, nullptr)));
        if (rt.allFinite() && rt.cwiseAbs().maxCoeff() <= rn * (1 - 1e-4 * alpha)) break;
        alpha /= 2;
        trial = y + alpha * dy;
      }
      y = trial;
      s.step = alpha * dy.cwiseAbs().maxCoeff();
      if (s.step <= tol * (1 + y.cwiseAbs().maxCoeff())) {
        s.ok = true;
        break;
      }
    }
    s.y = y;
    s.G = F(lam, y, nullptr);
    if (!s.ok) s.ok = s.step <= 1e-10 * (1 + y.cwiseAbs().maxCoeff());
    s.ok = s.ok && s.G.allFinite();
    return s;
  }

  // Im G <= 0 (as a Hermitian form): the solution in the right half-plane.
  static bool lower_half(const CMat& G) {
    CMat H = (G - G.adjoint()) / cd(0, 2);
    Eigen::SelfAdjointEigenSolver<CMat> es(H);
    return es.eigenvalues().maxCoeff() <= 1e-9 * (1 + G.cwiseAbs().maxCoeff());
  }

  // Continuation Lambda = lam + i t, t -> 0 through `levels` (G kept at each
  // t > 0 in `keep`), with steps shortened (in log t) where Newton leaves the
  // half-plane. A warm start (a neighbour's solution) begins at t = t_warm
  // and falls back to the full path if it fails.
  Sol path(const CVec& lam, const std::vector<double>& levels, std::vector<std::pair<double, CMat>>* keep = nullptr,
           const CVec* warm = nullptr, double t_warm = 1e-3) const {
    auto at = [&](double t) { return CVec(lam + CVec::Constant(K_, cd(0, t))); };
    auto good = [&](const Sol& s, double) { return s.ok && lower_half(s.G); };
    auto fail = [&](Sol s) {
      if (warm) return path(lam, levels, keep, nullptr);
      s.ok = false;
      return s;
    };
    // At a singular point (x on an atom, or where the density is infinite)
    // G(x + i t) has no limit as t -> 0 and continuation would shorten its
    // steps without end: a budget of Newton iterations ends it as a failure.
    // A regular point needs a few dozen, a cold start near an edge a few hundred.
    int budget = 3000;
    double tc = warm ? t_warm : levels.front();
    Sol s = solve(at(tc), warm ? *warm : CVec::Zero(unknowns()), !warm, budget);
    if (!good(s, tc)) return fail(s);
    if (keep && tc > 0 && !warm) keep->push_back({tc, s.G});
    for (double T : levels) {
      if (T >= tc) continue;
      while (tc > T) {
        double tn = T;
        Sol nx;
        for (int tries = 0;; ++tries) {
          nx = solve(at(tn), s.y, false, budget);
          if (good(nx, tn)) break;
          if (tries >= 16) return fail(nx);
          tn = tn == 0 ? tc * 1e-3 : std::sqrt(tc * tn);
        }
        s = nx;
        tc = tn;
      }
      if (keep && T > 0) keep->push_back({T, s.G});
    }
    return s;
  }

  int size() const { return K_; }

 private:
  struct Trip {
    int i, j;
    double c;
  };
  const Pencil& P_;
  std::vector<ClassLaw> cl_;
  int K_;
  std::vector<std::pair<int, int>> supp_;
  std::vector<std::vector<Trip>> trips_;  // per Gaussian matrix: C's nonzeros
};

// The quadrature's description for a method string.
std::string law_text(const ir::Program& p, const std::vector<ClassLaw>& hi, const std::vector<ClassLaw>& lo) {
  std::string s;
  for (std::size_t c = 0; c < hi.size(); ++c)
    if (!hi[c].diags.empty())
      s += std::string(s.empty() ? "" : "; ") + "diagonals of width " + p.widths[hi[c].width].name +
           " in " + std::to_string(hi[c].dim) + " Gaussian dim by the tensor " + hi[c].rule + " (error: against " +
           lo[c].rule + ")";
  return s.empty() ? "no diagonals: no expectation" : s;
}

bool has_diags(const std::vector<ClassLaw>& c) {
  return std::any_of(c.begin(), c.end(), [](const ClassLaw& l) { return !l.diags.empty(); });
}

// The limit of a scale factor (an expression of program scalars).
double scalar_value(const ir::Program& p, const ZView& z, const Expr& e) {
  return evaluate(e, [&](int v) {
    Expr s = z.subst(v);
    double x = 0;
    if (!s || !is_const(s, &x))
      throw FreeRefusal{"the scale factor reads '" + p.vars[v].name + "', which is not a deterministic scalar",
                        "scale operators by numbers or program scalars (moments)"};
    return x;
  });
}

fp::Linearizer linearizer(const ir::Program& p, const ZView& z) {
  return fp::Linearizer(p, [&p, z](const Expr& e) { return scalar_value(p, z, e); });
}

// tr(T) = -sum u_i v_j G_{i, K + j} at Lambda = 0 of the doubled pencil.
Estimate trace_of(const ir::Program& p, const fp::Rep& r, const Pencil& M, const ZView& z) {
  auto hi = class_laws(p, M, z, false);
  bool diags = has_diags(hi);
  auto lo = diags ? class_laws(p, M, z, true) : hi;
  int K = r.size();
  auto value = [&](const CMat& G) {
    cd s = 0;
    for (auto [i, ci] : r.u)
      for (auto [j, cj] : r.v) s -= ci * cj * G(i, K + j);
    return s;
  };
  FixedPoint fh(M, hi);
  CVec lam = CVec::Zero(M.size());
  auto sh = fh.path(lam, kTraceLevels);
  if (!sh.ok)
    throw FreeRefusal{"the operator-valued fixed point did not converge",
                      "the operator may not be invertible in the limit (an inverse at a point of its spectrum)"};
  cd v = value(sh.G);
  double err = 1e-13 * (1 + std::abs(v));
  // The last Newton step moves the value by about the step times its sensitivity (O(1)).
  err += sh.step * (1 + std::abs(v));
  if (diags) {
    FixedPoint fl(M, lo);
    auto sl = fl.path(lam, {0}, nullptr, &sh.y, 0);
    if (!sl.ok) err = INFINITY;
    else err += std::abs(value(sl.G) - v);
  }
  err += std::abs(v.imag());
  Estimate e;
  e.value = v.real();
  e.abs_error = err;
  e.method = "free probability: linear pencil (" + std::to_string(M.size()) +
             " blocks), operator-valued fixed point by damped iteration and Newton, continued to Lambda = 0; " +
             law_text(p, hi, lo);
  return e;
}

// Upper bound on rank(T) / n (units of n): rank deficiency gives an atom at 0.
double rank_bound(const ir::Program& p, int node) {
  const ir::OpNode& n = p.op_nodes[node];
  double full = std::min(p.dim_ratio(n.rows), p.dim_ratio(n.cols));
  switch (n.kind) {
    case ir::OpKind::Scale: return std::min(full, rank_bound(p, n.args[0]));
    case ir::OpKind::Product: {
      double r = full;
      for (int a : n.args) r = std::min(r, rank_bound(p, a));
      return r;
    }
    case ir::OpKind::Sum: {
      double r = 0;
      for (int a : n.args) r += rank_bound(p, a);
      return std::min(full, r);
    }
    default: return full;
  }
}

// Proven positive semidefinite: X @ X.T-type products (an even number of
// factors read the same backwards up to transposes), I, and sums, positive
// multiples and inverses of these. Its support starts at 0 or after.
bool psd(const ir::Program& p, int node, const std::function<double(const Expr&)>& scalar) {
  const ir::OpNode& n = p.op_nodes[node];
  switch (n.kind) {
    case ir::OpKind::Identity: return true;
    case ir::OpKind::Product: return n.symmetric && n.args.size() % 2 == 0;
    case ir::OpKind::Scale: return scalar(n.entries) >= 0 && psd(p, n.args[0], scalar);
    case ir::OpKind::Inverse: return psd(p, n.args[0], scalar);
    case ir::OpKind::Sum:
      return std::all_of(n.args.begin(), n.args.end(), [&](int a) { return psd(p, a, scalar); });
    default: return false;
  }
}

// Operator-norm bound of the operator in the limit (INFINITY with an inverse).
double norm_bound(const ir::Program& p, int node, const std::vector<ClassLaw>& cl,
                  const std::vector<Pencil::Diag>& diags, const std::function<double(const Expr&)>& scalar) {
  const ir::OpNode& n = p.op_nodes[node];
  switch (n.kind) {
    case ir::OpKind::Matrix: {
      const ir::Var& W = p.vars[n.matrix];
      return std::sqrt(p.matrix_of(n.matrix).variance) * (1 + std::sqrt(p.dim_ratio(W.rows) / p.dim_ratio(W.cols)));
    }
    case ir::OpKind::Diag: {
      double m = 0;
      for (const auto& c : cl)
        for (std::size_t j = 0; j < c.diags.size(); ++j)
          if (same(diags[c.diags[j]].entries, n.entries)) m = std::max(m, c.d.col(j).cwiseAbs().maxCoeff());
      return m;
    }
    case ir::OpKind::Identity: return 1;
    case ir::OpKind::Scale: return std::abs(scalar(n.entries)) * norm_bound(p, n.args[0], cl, diags, scalar);
    case ir::OpKind::Sum: case ir::OpKind::Product: {
      bool sum = n.kind == ir::OpKind::Sum;
      double r = sum ? 0 : 1;
      for (int a : n.args) {
        double b = norm_bound(p, a, cl, diags, scalar);
        r = sum ? r + b : r * b;
      }
      return r;
    }
    case ir::OpKind::Inverse: return INFINITY;
  }
  return INFINITY;
}

// Lagrange extrapolation to t = 0 through (t_i, f_i).
cd extrapolate(const std::vector<std::pair<double, cd>>& pts) {
  cd s = 0;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    double l = 1;
    for (std::size_t j = 0; j < pts.size(); ++j)
      if (j != i) l *= pts[j].first / (pts[j].first - pts[i].first);
    s += l * pts[i].second;
  }
  return s;
}

class Spectral {
 public:
  Spectral(const ir::Program& p, const Pencil& P, const ZView& z)
      : P_(P), hi_(class_laws(p, P, z, false)), fp_(P, hi_) {}

  struct Point {
    double density = 0, error = INFINITY;
    cd g00 = 0;  // G_00(x + i0)
    bool ok = false;
    CVec y;
  };

  CVec lam(cd z0) const {
    CVec l = CVec::Zero(P_.size());
    l(0) = z0;
    return l;
  }

  // -Im G_00(x + i0) / pi, checked against Richardson extrapolation from t > 0.
  Point density(double x, const CVec* warm = nullptr) const {
    std::vector<std::pair<double, CMat>> kept;
    auto s = fp_.path(lam(x), kDensityLevels, &kept, warm);
    Point pt;
    if (!s.ok) return pt;
    pt.ok = true;
    pt.y = s.y;
    pt.g00 = s.G(0, 0);
    pt.density = std::max(0.0, -s.G(0, 0).imag() / M_PI);
    std::vector<std::pair<double, cd>> r;
    for (const auto& [t, G] : kept)
      if (t <= 1.01e-4 && t >= 0.99e-6) r.push_back({t, G(0, 0)});
    double rich = r.size() == 3 ? std::max(0.0, -extrapolate(r).imag() / M_PI) : pt.density;
    pt.error = std::abs(rich - pt.density) + s.step + 1e-13;
    return pt;
  }

  // Atom mass at a: m(delta) = -delta Im G(a + i delta) for delta = 1e-4 ... 1e-7,
  // extrapolated to 0. A true atom has m(delta) = m + O(delta); a singular
  // density (x^-2/3 near 0 for Fuss-Catalan) has m(delta) -> 0 like a power of
  // delta, which the error (the change over the last decade) shows.
  std::pair<double, double> atom(double a) const {
    std::vector<std::pair<double, cd>> m;
    for (double d : {1e-4, 1e-5, 1e-6, 1e-7}) {
      auto s = fp_.path(lam(cd(a, d)), kDensityLevels);
      if (!s.ok) return {0, INFINITY};
      m.push_back({d, cd(-d * s.G(0, 0).imag(), 0)});
    }
    std::vector<std::pair<double, cd>> last(m.begin() + 1, m.end());
    double v = extrapolate(last).real();
    return {v, std::abs(v - m.back().second.real()) + std::abs(m[2].second.real() - m[3].second.real()) + 1e-12};
  }

  const std::vector<ClassLaw>& laws() const { return hi_; }

 private:
  const Pencil& P_;
  std::vector<ClassLaw> hi_;
  FixedPoint fp_;
};

}  // namespace

Estimate free_trace(const ir::Program& p, int node, const ZView& z) {
  try {
    auto lin = linearizer(p, z);
    fp::Rep r = lin.rep(node);
    return trace_of(p, r, lin.doubled(r), z);
  } catch (const fp::PencilError& e) {
    throw FreeRefusal{e.what(), "the limit covers operators rational in Gaussian matrices and diag(...)"};
  }
}

SpectrumLimit free_spectrum(const ir::Program& p, const ir::OperatorRef& sp, const ZView& z,
                            const SpectrumLimitOptions& o) {
  SpectrumLimit out;
  out.name = sp.name;
  try {
    auto lin = linearizer(p, z);
    fp::Rep r = lin.rep(sp.node);
    for (int k = 1; k <= o.moments; ++k) {
      fp::Rep rk = lin.power(r, k);
      out.moments.push_back(trace_of(p, rk, lin.doubled(rk), z));
    }
    Pencil P = lin.spectral(r);
    Spectral S(p, P, z);
    // The range: a norm bound, else ten standard deviations around the mean.
    auto scalar = [&](const Expr& e) { return scalar_value(p, z, e); };
    double B = norm_bound(p, sp.node, S.laws(), P.diags, scalar), lo, hi;
    double m1 = out.moments[0].value, sd = o.moments >= 2 ? std::sqrt(std::max(0.0, out.moments[1].value - m1 * m1)) : 1;
    if (std::isfinite(B)) lo = -B, hi = B;
    else lo = m1 - 10 * sd - 1e-3, hi = m1 + 10 * sd + 1e-3;
    bool positive = psd(p, sp.node, scalar);
    if (positive) lo = std::max(lo, 0.0);
    // A coarse scan for the support, its edges by bisection, then the grid.
    const int coarse = 120;
    std::vector<double> cx(coarse + 1);
    std::vector<bool> in(coarse + 1);
    // In the support where the density exceeds roundoff. Im G carries an
    // error of about eps |G|^2 (the fixed point's condition grows with |G|),
    // which near an atom (G ~ mass / (x - a)) is far above any fixed floor.
    auto inside = [](const Spectral::Point& pt) { return pt.ok && pt.density > 1e-9 * std::max(1.0, std::norm(pt.g00)); };
    CVec y;
    bool have = false;
    for (int i = 0; i <= coarse; ++i) {  // warm-started from the neighbour (checked, with fallback)
      cx[i] = lo + (hi - lo) * i / coarse;
      auto pt = S.density(cx[i], have ? &y : nullptr);
      in[i] = inside(pt);
      have = pt.ok;
      if (pt.ok) y = pt.y;
      if (o.progress) o.progress("support scan", i + 1, coarse + 1);
    }
    // A gap inside the support is confirmed from a cold start: a warm start
    // that failed, or landed on another branch, must not split the support.
    for (int i = 1; i < coarse; ++i)
      if (!in[i] && std::find(in.begin(), in.begin() + i, true) != in.begin() + i &&
          std::find(in.begin() + i + 1, in.end(), true) != in.end()) {
        auto pt = S.density(cx[i]);
        in[i] = inside(pt);
      }
    auto edge = [&](double a, double b, bool a_in) {
      for (int it = 0; it < 44 && b - a > 1e-12 * (1 + std::abs(a)); ++it) {
        double m = 0.5 * (a + b);
        auto pt = S.density(m);
        // A point the fixed point cannot be continued to (the density is
        // infinite near it) is neither in nor out: the edge is known to [a, b].
        if (!pt.ok) break;
        (inside(pt) == a_in ? a : b) = m;
      }
      out.edge_error = std::max(out.edge_error, b - a);
      return 0.5 * (a + b);
    };
    double start = NAN;
    for (int i = 0; i <= coarse; ++i) {
      if (in[i] && (i == 0 || !in[i - 1])) start = i == 0 ? cx[0] : edge(cx[i - 1], cx[i], false);
      if (!in[i] || (i < coarse && in[i + 1])) continue;
      double end = i == coarse ? cx[coarse] : edge(cx[i], cx[i + 1], true);
      // An interval that bisection shrinks to a point is no density: it is a
      // scan point sitting on an atom (G infinite there; 0 for X^T X of low rank).
      if (end - start > 1e-9 * (hi - lo)) out.support.push_back({start, end});
    }
    double a = out.support.empty() ? lo : out.support.front().first, b = out.support.empty() ? hi : out.support.back().second;
    double pad = 0.05 * std::max(b - a, 1e-3);
    a -= pad;
    b += pad;
    if (positive) a = std::max(a, 0.0);
    have = false;
    for (int i = 0; i < o.points; ++i) {
      double x = a + (b - a) * i / std::max(1, o.points - 1);
      auto pt = S.density(x, have ? &y : nullptr);
      have = pt.ok;
      if (pt.ok) y = pt.y;
      out.x.push_back(x);
      out.density.push_back(pt.ok ? pt.density : NAN);
      out.density_error.push_back(pt.error);
      if (o.progress) o.progress("density", i + 1, o.points);
    }
    // Atoms: at 0 where the rank is deficient (mass >= 1 - rank / dim, exact
    // when the numerical mass agrees), else where the mass is visible.
    double dim = p.dim_ratio(p.op_nodes[sp.node].rows), deficit = 1 - rank_bound(p, sp.node) / dim;
    auto [mass, merr] = S.atom(0);
    if (deficit > 1e-12 && std::isfinite(merr) && std::abs(mass - deficit) <= std::max(merr, 1e-6))
      out.atoms.push_back({0, deficit, 0, "exact: rank deficiency 1 - rank/dim (Stieltjes delta -> 0 gives " +
                                              num(mass, 10) + ")"});
    else if (std::isfinite(merr) && mass > 1e-6 + 10 * merr)
      out.atoms.push_back({0, mass, merr, "Stieltjes: -delta Im G(i delta), delta = 1e-3, 1e-4, 1e-5 extrapolated"});
    out.method = "free probability: linear pencil (" + std::to_string(P.size()) +
                 " blocks), Stieltjes inversion at x + i0 by Newton continued from x + i t (t -> 0), error against "
                 "Richardson extrapolation from t = 1e-4, 1e-5, 1e-6; support edges by bisection; " +
                 law_text(p, S.laws(), S.laws());
  } catch (const fp::PencilError& e) {
    throw FreeRefusal{e.what(), "the limit covers operators rational in Gaussian matrices and diag(...)"};
  }
  return out;
}

std::string free_derivation(const ir::Program& p, int node, const ZView& z, bool latex) {
  std::ostringstream o;
  try {
    auto lin = linearizer(p, z);
    fp::Rep r = lin.rep(node);
    Pencil M = lin.doubled(r);
    o << "  linear representation T = u Q^{-1} v, " << r.size() << " blocks; self-adjoint pencil M = [[0, Q^T], [Q, 0]]\n";
    o << "  atoms:";
    for (std::size_t a = 0; a < lin.atoms().size(); ++a) o << (a ? ", " : " ") << "X" << a << " = " << lin.atom_text((int)a);
    o << "\n  u =";
    for (auto [i, c] : r.u) o << " (" << i << ") " << num(c);
    o << ",  v =";
    for (auto [j, c] : r.v) o << " (" << j << ") " << num(c);
    o << "\n" << fp::pencil_text(p, lin, M);
    if (latex)
      o << "  \\[ G(\\Lambda) = \\mathbb{E}_Z\\Big[\\big(\\Lambda - Q_0 - \\sum_j B_j d_j(Z) - \\eta(G)\\big)^{-1}\\Big],"
           " \\quad \\eta(G) = \\sum_W \\sigma_W^2 \\big(C_W G C_W^\\top + \\tfrac{n_{\\mathrm{rows}}}{n_{\\mathrm{cols}}}"
           " C_W^\\top G C_W\\big) \\]\n";
    else
      o << "  fixed point: G(Lambda) = E_Z[(Lambda - Q0 - sum_j B_j d_j(Z) - eta(G))^{-1}],\n"
           "    eta(G) = sum_W var_W (C_W G C_W^T + (rows/cols) C_W^T G C_W), G_ij = lim tr(block ij)\n";
    o << "  tr(T) = -sum_ij u_i v_j G_{i, " << r.size() << "+j} at Lambda = 0 (limit of Lambda = i t, t -> 0)\n";
  } catch (const fp::PencilError& e) {
    o << "  not linearized: " << e.what() << "\n";
  }
  return o.str();
}

}  // namespace netsor::limit
