// The Z calculus (primer section 2): walk the program in order and give every
// vector its Z random variable and every scalar its deterministic limit.
//
//   Init    Z^x is a leaf of its declared Gaussian family
//   MatMul  Z^{Wx} = Zhat^{Wx} + Zdot^{Wx}         (compute_matmul)
//   Nonlin  Z^y = phi(Z^x..., limits of scalars)     (compute_nonlin)
//   Moment  theta = E phi(Z^x...)                    (compute_moment)
//
// Every Z is an expression over Gaussian leaves. Linear programs keep, beside
// it, Z as an explicit affine combination of leaves, so their covariances and
// Zdot coefficients are exact algebra and long iterations stay cheap.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "bounds.hpp"
#include "netsor/limit.hpp"

namespace netsor::limit {
namespace {

using ir::Op;
using ir::VarId;

// Z as an affine combination of leaves: off + sum_l c[l] leaf_l (c shorter than
// the number of leaves means zeros beyond).
struct AffineZ {
  bool ok = false;
  std::vector<double> c;
  double off = 0;
  bool mean_known = false;  // mean cached (set once the Z is complete)
  double mean = 0;
  double at(int l) const { return l < (int)c.size() ? c[l] : 0.0; }
  void axpy(double a, const AffineZ& x) {
    mean_known = false;
    if (c.size() < x.c.size()) c.resize(x.c.size(), 0.0);
    Eigen::Map<Eigen::VectorXd>(c.data(), (Eigen::Index)x.c.size()) +=
        a * Eigen::Map<const Eigen::VectorXd>(x.c.data(), (Eigen::Index)x.c.size());
    off += a * x.off;
  }
};

// The relative error an estimate carries into what is built from it. Zdot
// coefficients and covariances are O(1) quantities: measure their error against
// `ref`, not against a value that may be (near) zero.
double rel(double err, double v, double ref) { return err / std::max({std::abs(v), ref, 1e-300}); }

std::string fmt(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

class ZCalculus {
 public:
  ZCalculus(const ir::Program& p, const Options& o) : p_(p), opt_(o), E_(o) {
    std::size_t nv = p.vars.size();
    Z_.resize(nv);
    aff_.resize(nv);
    rel_.assign(nv, 0.0);
    scalar_.resize(nv);
    src_.resize(nv);
    order_.assign(nv, 0.0);
    fluct_.assign(nv, false);
    range_.assign(nv, Range{-INFINITY, INFINITY, true});
    has_lower_.assign(nv, false);
    random_.assign(nv, false);
    random_why_.assign(nv, "");
    law_.mean = [this](int l) { return fam_[leaves_[l].family].mean(leaves_[l].index); };
    law_.cov = [this](int a, int b) {
      const Leaf &A = leaves_[a], &B = leaves_[b];
      return A.family == B.family ? cov_[A.family](A.index, B.index) : 0.0;
    };
  }

  Result run() {
    for (const auto& in : p_.instrs) {
      switch (in.op) {
        case Op::Init: compute_init(in); break;
        case Op::MatMul: compute_matmul(in); break;
        case Op::Nonlin: compute_nonlin(in); break;
        case Op::Moment: compute_moment(in); break;
        case Op::Scalar: compute_scalar(in); break;
        case Op::Width: compute_width(in); break;
        case Op::Apply: case Op::Trace: break;  // refused in compute()
      }
    }
    for (std::size_t f = 0; f < fam_.size(); ++f) {
      int k = (int)fam_[f].leaves.size();
      fam_[f].cov = cov_[f].topLeftCorner(k, k);
    }
    Result r;
    for (const auto& rep : p_.reports) {
      Estimate e = *scalar_[rep.var];
      double k = order_[rep.var];
      if (k > kTol && (fluct_[rep.var] || e.value == 0)) {
        Diagnostic d;
        d.loc = rep.loc;
        d.message = "report '" + rep.name + "' is n^" + fmt(k) +
                    " times a quantity whose limit is 0: a fluctuation scale with no deterministic limit";
        d.hint = "it converges in law (or to 0), not to a number: measure it across seeds with netsor run";
        throw ProgramError(d);
      }
      if (k > kTol) {
        Diagnostic d;
        d.loc = rep.loc;
        d.message = "unstable: report '" + rep.name + "' grows like n^" + fmt(k) + " (coefficient " + fmt(e.value) + ")";
        d.hint = "a quantity growing with the width has no limit; netsor abc shows which stability condition fails";
        throw ProgramError(d);
      }
      if (random_[rep.var] && k >= -kTol) {
        Diagnostic d;
        d.loc = rep.loc;
        d.message = "report '" + rep.name + "' is a fluctuation (CLT scale, from '" + random_why_[rep.var] +
                    "'): it has no deterministic limit";
        d.hint = "it converges in law, not to a number: measure it across seeds with netsor run, or center it (f - f0)";
        throw ProgramError(d);
      }
      if (k < -kTol) {
        e.method = "vanishes like n^" + fmt(k) + " (coefficient " + fmt(e.value) + " by " + e.method + ")";
        e.order = k;
        e.coefficient = e.value;
        e.value = 0;
        e.abs_error = 0;
      }
      r.quantities.push_back({rep.name, e, rep.loc});
    }
    r.numeric_rel_error = numeric_rel_error_;
    r.leaves = leaves_;
    r.families = fam_;
    r.zvars = std::move(zvars_);
    for (std::size_t v = 0; v < p_.vars.size(); ++v)
      if (scalar_[v]) r.scalars.emplace_back((VarId)v, *scalar_[v]);
    return r;
  }

 private:
  const ir::Program& p_;
  Options opt_;
  MasterExpectation E_;
  GaussianLaw law_;
  std::vector<Leaf> leaves_;
  std::vector<Family> fam_;
  std::vector<Eigen::MatrixXd> cov_;  // each family's covariance, with spare capacity
  std::vector<ZVar> zvars_;
  std::vector<Expr> Z_;
  std::vector<AffineZ> aff_;
  std::vector<double> rel_;  // relative error carried into each variable from earlier estimates
  std::vector<std::optional<Estimate>> scalar_;
  std::vector<std::set<std::string>> src_;
  // Order analysis (primer section 4): each variable is n^order times its
  // limit (order 0 for an ordinary program). -inf: zero at every order we see.
  std::vector<double> order_;
  // Scalars whose limit is 0 although they are not identically 0 (a moment of
  // mean 0): their true size is unknown (often the CLT scale n^{-1/2}).
  std::vector<bool> fluct_;
  std::vector<Range> range_;
  std::vector<bool> has_lower_;  // a Nonlin output whose definition had terms of lower order (dropped)  // of each vector's coordinates (unbounded unless a Nonlin bounds it)
  std::vector<bool> random_;            // fluctuation-scale scalars: order known, value not
  std::vector<std::string> random_why_;
  std::map<int, int> ir_family_;
  std::map<std::pair<VarId, bool>, int> matrix_family_;

  [[noreturn]] void refuse(const ir::Instr& in, const std::string& msg, const std::string& hint) const {
    Diagnostic d;
    d.loc = in.loc;
    d.message = msg;
    d.hint = hint;
    throw ProgramError(d);
  }
  const std::string& name(VarId v) const { return p_.vars[v].name; }

  int new_leaf(const std::string& nm, int family, VarId var, VarId arg) {
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

  void set_leaf_z(VarId v, int leaf) {
    Z_[v] = var(leaf);
    aff_[v].ok = true;
    aff_[v].c.assign(leaf + 1, 0.0);
    aff_[v].c[leaf] = 1.0;
  }

  // ---- Init: a leaf of the declared family (all members share one family)
  void compute_init(const ir::Instr& in) {
    auto it = ir_family_.find(in.family);
    if (it == ir_family_.end()) {
      const auto& f = p_.families[in.family];
      Family F;
      F.name = "init";
      for (auto m : f.members) F.name += (F.name == "init" ? " " : ", ") + name(m);
      F.mean = f.mean;
      F.cov = f.cov;
      fam_.push_back(F);
      cov_.push_back(f.cov);
      it = ir_family_.emplace(in.family, (int)fam_.size() - 1).first;
    }
    // Leaves of a family are created in member order as their Inits come.
    int leaf = new_leaf(name(in.out), it->second, in.out, -1);
    if (leaves_[leaf].index != in.member)
      throw std::logic_error("Init members out of order in family " + std::to_string(in.family));
    set_leaf_z(in.out, leaf);
    cache_mean(in.out);
    zvars_.push_back({in.out, Z_[in.out], -1, {}});
  }

  // E[Z^a Z^b] for two affine Z's: mean_a mean_b + c_a' Sigma c_b (Sigma block
  // diagonal over families).
  std::vector<double> sigma_times(const AffineZ& a) const {
    std::vector<double> u(leaves_.size(), 0.0);
    Eigen::VectorXd c;
    for (const auto& F : fam_) {
      int k = (int)F.leaves.size();
      c.resize(k);
      bool any = false;
      for (int i = 0; i < k; ++i) any |= (c(i) = a.at(F.leaves[i])) != 0;
      if (!any) continue;
      Eigen::VectorXd v = cov_[&F - fam_.data()].topLeftCorner(k, k).selfadjointView<Eigen::Lower>() * c;
      for (int j = 0; j < k; ++j) u[F.leaves[j]] = v(j);
    }
    return u;
  }
  double mean_of(const AffineZ& a) const {
    if (a.mean_known) return a.mean;
    double m = a.off;
    for (std::size_t l = 0; l < a.c.size(); ++l)
      if (a.c[l] != 0) m += a.c[l] * law_.mean((int)l);
    return m;
  }
  void cache_mean(VarId v) {
    if (!aff_[v].ok) return;
    aff_[v].mean = mean_of(aff_[v]);
    aff_[v].mean_known = true;
  }
  double second_moment(const std::vector<double>& sigma_a, double mean_a, const AffineZ& b) const {
    Eigen::Index n = (Eigen::Index)std::min(b.c.size(), sigma_a.size());
    double s = Eigen::Map<const Eigen::VectorXd>(b.c.data(), n).dot(Eigen::Map<const Eigen::VectorXd>(sigma_a.data(), n));
    return s + mean_a * mean_of(b);
  }

  Estimate expect(const Expr& f, const ir::Instr& in, const std::string& what) {
    Estimate e = E_.expect(f, law_);
    if (!std::isfinite(e.value) || !std::isfinite(e.abs_error))
      refuse(in, "the limit of '" + what + "' is not finite: its master-theorem expectation diverges",
             "the integrand is not integrable under the Gaussian law of its arguments; check the nonlinearity");
    numeric_rel_error_ = std::max(numeric_rel_error_, e.abs_error / std::max(std::abs(e.value), 1e-300));
    if (opt_.perturb) {  // the perturbed run (Propagation::Perturbation): move by the error, random sign
      std::uint64_t h = (opt_.perturb + 0x9E3779B97F4A7C15ULL * ++perturbed_) * 0xBF58476D1CE4E5B9ULL;
      e.value += ((h >> 31) & 1 ? 1.0 : -1.0) * e.abs_error;
    }
    return e;
  }
  bool bound() const { return opt_.propagation == Propagation::Bound; }
  std::uint64_t perturbed_ = 0;
  double numeric_rel_error_ = 0;

  // ---- MatMul: Z^{Wx} = Zhat^{Wx} + Zdot^{Wx} (primer section 2)
  void compute_matmul(const ir::Instr& in) {
    // W (n^e x) = n^e (W x): the product keeps its argument's order.
    order_[in.out] = order_[in.arg];
    const ir::Matrix& M = p_.matrix_of(in.matrix);
    const ir::Var& W = p_.vars[in.matrix];
    if (M.dist != ir::MatrixDist::Gaussian)
      refuse(in, "the limit pass covers Gaussian matrices; '" + W.name + "' is orthogonal",
             "orthogonal matrices run in the finite-width executor (netsor run); declare gaussian(...) for a limit");
    // W in R^{n1 x n2} with entries N(0, sigma^2/n2): Zhat^{W^T y} has the extra factor n1/n2.
    double rho = p_.dim_ratio(W.rows) / p_.dim_ratio(W.cols);
    int F = family_of(in.matrix, in.transposed, in.transposed ? M.variance * rho : M.variance);
    VarId x = in.arg;

    // Zhat: covariance sigma^2 E[Z^x Z^{x'}] with every earlier product by this W.
    Family& fam = fam_[F];
    int k = (int)fam.leaves.size();
    Eigen::VectorXd row(k + 1);
    double worst = rel_[x];
    if (aff_[x].ok) {
      auto s = sigma_times(aff_[x]);
      double mx = mean_of(aff_[x]);
      row(k) = second_moment(s, mx, aff_[x]);
      for (int j = 0; j < k; ++j) {
        VarId xj = leaves_[fam.leaves[j]].arg;
        row(j) = aff_[xj].ok ? second_moment(s, mx, aff_[xj])
                             : expect_product(x, xj, in, worst,
                                              cov_ref(row(k), cov_[F](j, j) / fam.scale));
      }
    } else {
      row(k) = expect_product(x, x, in, worst, 0.0);
      for (int j = 0; j < k; ++j)
        row(j) = expect_product(x, leaves_[fam.leaves[j]].arg, in, worst,
                                cov_ref(row(k), cov_[F](j, j) / fam.scale));
    }
    row *= fam.scale;
    // Grow the covariance by doubling, so that long programs stay linear in copies.
    Eigen::MatrixXd& C = cov_[F];
    if (C.rows() < k + 1) {
      Eigen::MatrixXd bigger = Eigen::MatrixXd::Zero(std::max(8, 2 * (k + 1)), std::max(8, 2 * (k + 1)));
      bigger.topLeftCorner(k, k) = C.topLeftCorner(k, k);
      C.swap(bigger);
    }
    C.row(k).head(k + 1) = row.transpose();
    C.col(k).head(k + 1) = row;
    fam.mean.conservativeResize(k + 1);
    fam.mean(k) = 0;
    int leaf = new_leaf("Zhat[" + name(in.out) + "]", F, in.out, x);
    set_leaf_z(in.out, leaf);
    for (int j = 0; j < k; ++j) worst = std::max(worst, rel_[leaves_[fam_[F].leaves[j]].arg]);

    // Zdot: scale * sum over the opposite family's products W^T y (or W x) of
    // Z^y E[dZ^x / dZhat^{W^T y}]; the derivative runs through every earlier Z.
    ZVar zv{in.out, nullptr, leaf, {}};
    auto opp = matrix_family_.find({in.matrix, !in.transposed});
    Expr z = var(leaf);
    if (opp != matrix_family_.end()) {
      const Family& G = fam_[opp->second];
      std::vector<Estimate> ds = zdot_expectations(x, opp->second, in);
      for (std::size_t i = 0; i < G.leaves.size(); ++i) {
        const Estimate& d = ds[i];
        if (d.value == 0 && d.abs_error == 0) continue;
        int gl = G.leaves[i];
        VarId y = leaves_[gl].arg;
        double coef = fam_[F].scale * d.value;
        zv.zdot.push_back({gl, d, coef});
        z = add(z, mul(constant(coef), Z_[y]));
        worst = std::max(worst, std::max(rel_[y], rel(d.abs_error, d.value, 1.0)));
        if (aff_[in.out].ok && aff_[y].ok) aff_[in.out].axpy(coef, aff_[y]);
        else aff_[in.out].ok = false;
      }
    }
    inherit(in.out, x);
    for (const auto& t : zv.zdot) {
      inherit(in.out, leaves_[t.leaf].arg);
      note(in.out, t.expectation.method);
    }
    Z_[in.out] = z;
    zv.z = z;
    rel_[in.out] = worst;
    cache_mean(in.out);
    zvars_.push_back(std::move(zv));
  }

  // E[dZ^x / dZhat_j] for every leaf j of the Gaussian family G (the Zdot
  // term, primer section 2). Z^x is a function of the leaves; with D the leaves
  // of G it depends on, Gaussian integration by parts (Stein's lemma) gives
  //   E[Zhat_D Z^x] = Sigma_DD E[grad_D Z^x],
  // so E[grad_D Z^x] = Sigma_DD^+ E[Zhat_D Z^x] needs no derivative of the
  // nonlinearity: the delta terms of step, sign, relu' and abs' (and
  // derivatives singular at a point, |y|^0.5) are included by construction.
  // Where Sigma_DD is singular, Zhat_D c = 0 for c in its kernel, hence
  // sum_j c_j Z^{y_j} = 0 a.s. (Cov Zhat = scale E[Z^y Z^y']): the pseudo-inverse
  // changes no Zdot. Where Z^x is smooth, the derivative form is computed too
  // and the two must agree: an independent check of both integrations.
  std::vector<Estimate> zdot_expectations(VarId x, int G, const ir::Instr& in) {
    const Family& fam = fam_[G];
    std::size_t k = fam.leaves.size();
    std::vector<Estimate> out(k, Estimate{0.0, 0.0, "exact (independent)"});
    if (aff_[x].ok) {
      for (std::size_t i = 0; i < k; ++i) out[i] = {aff_[x].at(fam.leaves[i]), 0.0, "exact (linear)"};
      return out;
    }
    std::vector<int> deps = free_vars(Z_[x]), D;
    for (std::size_t i = 0; i < k; ++i)
      if (std::binary_search(deps.begin(), deps.end(), fam.leaves[i])) D.push_back((int)i);
    if (D.empty()) return out;
    int m = (int)D.size();
    // The derivative form, where it exists as an ordinary function.
    std::vector<Estimate> deriv(m);
    bool smooth = is_smooth(Z_[x]);
    bool all_const = smooth;
    for (int a = 0; a < m && smooth; ++a) {
      int gl = fam.leaves[D[a]];
      Expr dz = derivative(Z_[x], gl);
      double c;
      if (is_const(dz, &c)) deriv[a] = {c, 0.0, "exact (constant derivative)"};
      else {
        deriv[a] = expect(dz, in, "d" + name(x) + "/d" + leaves_[gl].name);
        all_const = false;
      }
    }
    if (all_const) {  // Z^x affine in these leaves: nothing to integrate
      for (int a = 0; a < m; ++a) out[D[a]] = deriv[a];
      return out;
    }
    // Stein: b_a = E[Zhat_a Z^x] (the leaves of a MatMul family have mean 0).
    Eigen::VectorXd b(m), eb(m);
    std::set<std::string> methods;
    for (int a = 0; a < m; ++a) {
      int gl = fam.leaves[D[a]];
      Estimate e = expect(mul(var(gl), Z_[x]), in, "E[" + leaves_[gl].name + " * " + name(x) + "]");
      b(a) = e.value;
      eb(a) = e.abs_error;
      methods.insert(e.method);
    }
    Eigen::MatrixXd S(m, m);
    for (int a = 0; a < m; ++a)
      for (int c = 0; c < m; ++c) S(a, c) = cov_[G](D[a], D[c]);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(S);
    double top = std::max(es.eigenvalues().cwiseAbs().maxCoeff(), 1e-300);
    Eigen::MatrixXd P = Eigen::MatrixXd::Zero(m, m);
    for (int j = 0; j < m; ++j) {
      double l = es.eigenvalues()(j);
      if (l > 1e-12 * top) P += es.eigenvectors().col(j) * es.eigenvectors().col(j).transpose() / l;
    }
    Eigen::VectorXd st = P * b, est = P.cwiseAbs() * eb;
    std::string how;
    for (const auto& mth : methods) how += (how.empty() ? "" : " + ") + mth;
    if (smooth) {
      // Check: Sigma d (derivative form) against b (Stein), in the range of
      // Sigma where both are determined.
      Eigen::VectorXd dv(m), de(m);
      for (int a = 0; a < m; ++a) dv(a) = deriv[a].value, de(a) = deriv[a].abs_error;
      // Allowed: both integrations' errors, and the covariance's own (its
      // entries carry the relative errors of the vectors they come from).
      Eigen::MatrixXd dS(m, m);
      for (int a = 0; a < m; ++a)
        for (int c = 0; c < m; ++c)
          dS(a, c) = std::abs(S(a, c)) * std::max(rel_[leaves_[fam.leaves[D[a]]].arg], rel_[leaves_[fam.leaves[D[c]]].arg]);
      Eigen::VectorXd gap = S * dv - b, allowed = eb + S.cwiseAbs() * de + dS * dv.cwiseAbs();
      for (int a = 0; a < m; ++a)
        if (std::abs(gap(a)) > 4 * allowed(a) + 1e-12 * (std::abs(b(a)) + top))
          refuse(in,
                 "two independent estimates of the Zdot coefficient E[d" + name(x) + "/d" +
                     leaves_[fam.leaves[D[a]]].name + "] disagree (derivative form " + fmt(dv(a)) +
                     " vs integration by parts, as E[Zhat " + name(x) + "], " + fmt(b(a)) + " against " +
                     fmt((S * dv)(a)) + "; by " + deriv[a].method + " ± " + fmt(de(a)) + " and " + how + " ± " +
                     fmt(eb(a)) + ")",
                 "the integrand is too rough for the quadrature at this tolerance; try --tol, or report the case");
      for (int a = 0; a < m; ++a) out[D[a]] = deriv[a];
      return out;
    }
    for (int a = 0; a < m; ++a)
      out[D[a]] = {st(a), est(a), "integration by parts (Stein): " + how, {}};
    return out;
  }

  // An expression whose derivative is an ordinary, polynomially bounded
  // function: no kinked built-in (relu, step, abs, sign), no guarded sqrt/log
  // (a kink at 0), powers only by non-negative integers.
  static bool is_smooth(const Expr& e) {
    std::vector<const ExprNode*> stack{e.get()};
    std::set<const ExprNode*> seen;
    while (!stack.empty()) {
      const ExprNode* n = stack.back();
      stack.pop_back();
      if (!seen.insert(n).second) continue;
      if (n->op == ExprOp::Call && (is_kinked(n->fn) || n->fn == Fn::Sqrt || n->fn == Fn::Log)) return false;
      if (n->op == ExprOp::Div) {
        double c;
        if (!is_const(n->b, &c)) return false;
      }
      if (n->op == ExprOp::Pow) {
        double p;
        if (!is_const(n->b, &p) || p < 0 || p != std::floor(p)) return false;
      }
      if (n->a) stack.push_back(n->a.get());
      if (n->b) stack.push_back(n->b.get());
    }
    return true;
  }

  int family_of(VarId matrix, bool transposed, double scale) {
    auto key = std::make_pair(matrix, transposed);
    auto it = matrix_family_.find(key);
    if (it != matrix_family_.end()) return it->second;
    Family F;
    F.name = name(matrix) + (transposed ? ".T" : "");
    F.matrix = matrix;
    F.transposed = transposed;
    F.scale = scale;
    F.mean.resize(0);
    F.cov.resize(0, 0);
    fam_.push_back(F);
    cov_.emplace_back(0, 0);
    matrix_family_[key] = (int)fam_.size() - 1;
    return (int)fam_.size() - 1;
  }

  // The scale against which an error in E[Z^x Z^{x_j}] is relative: the larger
  // of the two second moments (a leaf of a zero vector has none of its own).
  static double cov_ref(double xx, double jj) { return std::max(std::abs(xx), std::abs(jj)); }

  double expect_product(VarId a, VarId b, const ir::Instr& in, double& worst, double ref) {
    Estimate e = expect(mul(Z_[a], Z_[b]), in, "E[" + name(a) + " * " + name(b) + "]");
    worst = std::max(worst, rel(e.abs_error, e.value, ref));
    note(in.out, e.method);
    return e.value;
  }

  // Provenance: the numerical methods that went into a variable's Z.
  void note(VarId v, const std::string& method) {
    if (method.rfind("exact", 0) != 0) src_[v].insert(method);
  }
  void inherit(VarId to, VarId from) { src_[to].insert(src_[from].begin(), src_[from].end()); }
  // The master theorem needs polynomially bounded nonlinearities (primer
  // section 2): decided from the ranges of arguments (bounds.hpp), so that
  // exp(tanh x) or log(1 + x^2) pass and exp(x) or 1/x do not. Records the
  // range of a Nonlin's output for the instructions that use it.
  void check_assumptions(const ir::Instr& in) {
    std::string problem;
    Range r = range_of(in.expr, [&](int id) {
      if (p_.vars[id].kind != ir::VarKind::Scalar) return range_[id];
      if (scalar_[id] && !random_[id]) return Range{scalar_[id]->value, scalar_[id]->value, false};
      return Range{-INFINITY, INFINITY, false};
    }, problem);
    if (!problem.empty())
      refuse(in, problem + " (in '" + name(in.out) + "')",
             "the master theorem (primer section 2) covers polynomially bounded nonlinearities; "
             "the finite-width executor (netsor run) still runs this program");
    if (in.op == Op::Nonlin) range_[in.out] = r;
  }

  // ---- Order analysis: the leading power of n of a coordinatewise or scalar
  // expression, and the expression of its coefficient (scalars replaced by
  // their limits, terms of lower order dropped). Vectors enter as their leading
  // Z; growth of a nonlinearity's argument and fluctuation-scale products are
  // refused with the reason.
  struct Lead {
    Expr e;
    double order = 0;     // -inf: zero
    bool random = false;  // a fluctuation (CLT scale) at this order: no deterministic value
    std::string why;      // for random: the variable that made it so
    bool zero() const { return std::isinf(order) && order < 0; }
  };
  static Lead join(Lead r, const Lead& a, const Lead& b) {
    r.random = a.random || b.random;
    r.why = a.random ? a.why : b.why;
    return r;
  }
  static constexpr double kTol = 1e-9;
  static Lead zero_lead() { return {constant(0.0), -INFINITY}; }

  Lead lead(const Expr& x, const ir::Instr& in, double& worst, std::set<std::string>& sources) {
    auto fmt_order = [](double e) { return fmt(e); };
    switch (x->op) {
      case ExprOp::Const: return x->value == 0 ? zero_lead() : Lead{x, 0.0};
      case ExprOp::Var: {
        int id = x->var;
        if (p_.vars[id].kind == ir::VarKind::Scalar) {
          const Estimate& s = *scalar_[id];
          if (std::isinf(order_[id]) && order_[id] < 0) return zero_lead();
          // A fluctuation has no value (nor error): it is dropped as lower
          // order, or whatever needs it is refused.
          if (random_[id])  // named by the user's scalar where it has a name of its own
            return {constant(0.0), order_[id], true, name(id).find('#') == std::string::npos ? name(id) : random_why_[id]};
          if (s.method.rfind("exact", 0) != 0) sources.insert(s.method);
          sources.insert(s.inputs.begin(), s.inputs.end());
          worst = std::max(worst, rel(s.abs_error, s.value, 1.0));
          if (fluct_[id]) return {constant(0.0), order_[id]};  // value 0, size unknown below n^order
          return {constant(s.value), order_[id]};
        }
        worst = std::max(worst, rel_[id]);
        sources.insert(src_[id].begin(), src_[id].end());
        if (std::isinf(order_[id]) && order_[id] < 0) return zero_lead();
        return {var(id), order_[id]};
      }
      case ExprOp::Neg: {
        Lead a = lead(x->a, in, worst, sources);
        a.e = neg(a.e);
        return a;
      }
      case ExprOp::Add: case ExprOp::Sub: {
        Lead a = lead(x->a, in, worst, sources), b = lead(x->b, in, worst, sources);
        if (x->op == ExprOp::Sub && !a.zero() && !b.zero() && !a.random && !b.random &&
            std::abs(a.order - b.order) <= kTol && same(a.e, b.e))
          return cancelled(x, in, worst, sources);
        if (x->op == ExprOp::Sub && !a.zero() && !b.zero() && std::abs(a.order - b.order) <= kTol) {
          // A named vector whose definition had lower-order terms
          // (a = x + n^-1/2 d): its leading term may cancel against the other
          // side, which only its definition shows. Inline such vectors.
          Expr xi = substitute(x, [&](int id) {
            int d = p_.vars[id].def;
            return d >= 0 && has_lower_[id] ? p_.instrs[d].expr : var(id);
          });
          if (!same(xi, x)) return lead(xi, in, worst, sources);
        }
        if (x->op == ExprOp::Sub) b.e = neg(b.e);
        if (a.zero()) return b;
        if (b.zero()) return a;
        if (a.order > b.order + kTol) return a;
        if (b.order > a.order + kTol) return b;
        return join({add(a.e, b.e), std::max(a.order, b.order)}, a, b);
      }
      case ExprOp::Mul: {
        Lead a = lead(x->a, in, worst, sources), b = lead(x->b, in, worst, sources);
        if (a.zero() || b.zero()) return zero_lead();
        Lead r = join({mul(a.e, b.e), a.order + b.order}, a, b);
        fluctuation(x->a, a, b, r);
        fluctuation(x->b, b, a, r);
        return r;
      }
      case ExprOp::Div: {
        Lead a = lead(x->a, in, worst, sources), b = lead(x->b, in, worst, sources);
        if (b.random && !b.zero()) refuse_random(in, b);
        if (b.zero() || is_zero_const(b.e))
          refuse(in, "'" + name(in.out) + "' divides by a quantity whose limit is 0",
                 "the order analysis needs a denominator of known, nonzero limit");
        if (a.zero()) return zero_lead();
        Lead r = join({div(a.e, b.e), a.order - b.order}, a, b);
        fluctuation(x->a, a, Lead{b.e, -b.order}, r);
        return r;
      }
      case ExprOp::Pow: {
        Lead a = lead(x->a, in, worst, sources), p = lead(x->b, in, worst, sources);
        double k;
        if (p.order > kTol || !is_const(p.e, &k))
          refuse(in, "an exponent in '" + name(in.out) + "' is not a fixed number", "write powers as n^0.5, x^2");
        if (p.zero()) k = 0;
        if (a.zero()) {
          if (k > 0) return zero_lead();
          if (k == 0) return {constant(1.0), 0.0};
          refuse(in, "a negative power of a quantity whose limit is 0 in '" + name(in.out) + "'", "");
        }
        if (k < 0 && is_zero_const(a.e)) refuse(in, "a negative power of a fluctuation in '" + name(in.out) + "'", "");
        return {pow(a.e, constant(k)), k * a.order, a.random, a.why};
      }
      case ExprOp::Call: {
        Lead a = lead(x->a, in, worst, sources);
        Fn f = x->fn;
        // A random argument (a fluctuation-scale scalar inside) keeps its
        // randomness whatever f(0) is: its value is unknown, not 0.
        double c0;
        if ((f == Fn::Log || f == Fn::Sqrt) && !a.random && (a.zero() || is_const(a.e, &c0))) {
          // log and sqrt are guarded (expr.hpp) at finite width; a limit
          // outside their domain is no number.
          double v = a.zero() ? 0.0 : c0;
          if ((f == Fn::Log && v <= 0) || (f == Fn::Sqrt && v < 0))
            refuse(in, std::string(fn_name(f)) + " of a quantity whose limit is " + fmt(v) + " in '" + name(in.out) + "'",
                   f == Fn::Log ? "the logarithm diverges at 0 and is undefined below" : "sqrt is undefined below 0");
        }
        if (a.zero() || (!a.random && is_zero_const(a.e) && a.order <= kTol)) {
          double f0 = apply_fn(f, 0.0);
          if (f0 != 0) return {constant(f0), 0.0};
          // f of exactly 0 is 0 at every order; f of a fluctuation (a value 0
          // of unknown size, e.g. sqrt(avg(v)) ~ n^-1/4) is 0 in the limit,
          // at a rate this analysis does not give.
          return a.zero() ? zero_lead() : Lead{constant(0.0), 0.0};
        }
        bool homogeneous1 = f == Fn::Relu || f == Fn::Abs, scale_free = f == Fn::Step || f == Fn::Sign;
        if (std::abs(a.order) <= kTol) return {call(f, a.e), 0.0, a.random, a.why};
        if (scale_free) return {call(f, a.e), 0.0, a.random, a.why};
        if (homogeneous1) return {call(f, a.e), a.order, a.random, a.why};
        if (a.order > 0)
          refuse(in, "unstable: the argument of " + std::string(fn_name(f)) + " in '" + name(in.out) + "' grows like n^" +
                         fmt_order(a.order),
                 "this parametrization blows up; check the exponents (netsor abc classifies MLPs)");
        // A vanishing argument: Taylor at 0 to the first nonzero term.
        Expr z = var(-3);
        Expr d0 = call(f, z);
        for (int k = 0; k <= 3; ++k) {
          double ck = evaluate(d0, [](int) { return 0.0; });
          if (ck != 0) {
            double fact = k == 0 ? 1 : k == 1 ? 1 : k == 2 ? 2 : 6;
            if (k == 0) return {constant(ck), 0.0};
            return {mul(constant(ck / fact), pow(a.e, constant(double(k)))), k * a.order, a.random, a.why};
          }
          d0 = derivative(d0, -3);
        }
        refuse(in, "cannot expand " + std::string(fn_name(f)) + " at 0 in '" + name(in.out) + "'", "");
      }
    }
    return zero_lead();
  }

  // X - Y whose leading terms are equal: the difference lives at a lower
  // order. Rewrites find it: common additive terms cancel
  // ((h + n^-1/2 d) - h = n^-1/2 d), products split (XY - ZW = (X-Z)Y + Z(Y-W)),
  // and F(A) - F(B) = F'(B) (A - B) + ... for a
  // smooth F (a nonlinearity or a power) when A - B is of lower order than A --
  // so a program written in difference form, n^1/2 (phi(h0 + n^-1/2 d) - phi(h0)),
  // gets its first-order limit phi'(h0) d.
  Lead cancelled(const Expr& x, const ir::Instr& in, double& worst, std::set<std::string>& sources) {
    const Expr &X = x->a, &Y = x->b;
    auto tx = additive_terms(X), ty = additive_terms(Y);
    bool removed = false;
    for (auto& [cy, ey] : ty)
      for (auto& [cx, ex] : tx)
        if (cx != 0 && cx == cy && same(ex, ey)) {
          cx = cy = 0;
          removed = true;
          break;
        }
    if (removed) {
      Expr rest = constant(0.0);
      for (const auto& [c, e] : tx)
        if (c != 0) rest = add(rest, mul(constant(c), e));
      for (const auto& [c, e] : ty)
        if (c != 0) rest = sub(rest, mul(constant(c), e));
      return lead(rest, in, worst, sources);
    }
    if (X->op == ExprOp::Mul && Y->op == ExprOp::Mul)  // XY - ZW = (X - Z) Y + Z (Y - W), exactly
      return lead(add(mul(sub(X->a, Y->a), X->b), mul(Y->a, sub(X->b, Y->b))), in, worst, sources);
    double p;
    bool smooth_call = X->op == ExprOp::Call && Y->op == ExprOp::Call && X->fn == Y->fn && !is_kinked(X->fn);
    bool power = X->op == ExprOp::Pow && Y->op == ExprOp::Pow && is_const(X->b, &p) && same(X->b, Y->b);
    if (smooth_call || power) {
      Lead d = lead(sub(X->a, Y->a), in, worst, sources);
      if (d.zero()) return zero_lead();
      // The expansion needs A - B of lower order than A itself.
      Lead a = lead(X->a, in, worst, sources);
      if (!a.zero() && d.order > a.order - kTol)
        refuse(in, "in '" + name(in.out) + "' F(A) - F(B) cancels at leading order although A - B is not small",
               "the order analysis expands only differences of nearby arguments, F(h0 + e) - F(h0)");
      Expr slope = smooth_call ? substitute(fn_derivative(X->fn, var(-4)), [&](int) { return Y->a; })
                               : mul(constant(p), pow(Y->a, constant(p - 1)));
      Lead s = lead(slope, in, worst, sources);
      if (s.zero())
        refuse(in, "in '" + name(in.out) + "' the leading terms cancel and so does the first-order term",
               "the order analysis expands differences to first order only");
      return join({mul(s.e, d.e), s.order + d.order}, s, d);
    }
    refuse(in, "in '" + name(in.out) + "' the leading terms of a difference cancel, and the next order is not derived",
           "write the program in difference form: n^0.5 * (phi(h0 + n^-0.5 * d) - phi(h0)), or (h0 + e) - h0");
  }

  static bool is_zero_const(const Expr& e) {
    double v;
    return is_const(e, &v) && v == 0;
  }

  // A growing power times a moment whose limit is 0: the product lives on the
  // fluctuation (CLT) scale, where the master theorem gives no deterministic
  // limit. It becomes a random quantity of order (at most) the CLT scale,
  // n^{-1/2} times the power: enough to see growth, never a value.
  void fluctuation(const Expr& x, const Lead& a, const Lead& other, Lead& r) {
    if (!(is_zero_const(a.e) && !a.zero() && !a.random)) return;
    if (other.zero() || other.order + a.order <= kTol) return;
    r.random = true;
    r.order = a.order + other.order - 0.5;
    r.why = x->op == ExprOp::Var ? name(x->var) : "a moment of mean 0";
  }

  [[noreturn]] void refuse_random(const ir::Instr& in, const Lead& l) const {
    refuse(in,
           "'" + name(in.out) + "' depends at leading order on '" + l.why +
               "', a fluctuation-scale scalar (a power of n times a moment whose limit is 0): it converges in law, "
               "not to a number, so this quantity has no deterministic limit",
           "such a quantity converges in law, not to a number: measure it across seeds with netsor run, "
           "or center it (e.g. train f - f0)");
  }

  // A vector that grows with n makes every later step blow up.
  void check_vector_order(const ir::Instr& in) {
    if (order_[in.out] > kTol)
      refuse(in, "unstable: the coordinates of '" + name(in.out) + "' grow like n^" + fmt(order_[in.out]),
             "this parametrization blows up as the width grows; netsor abc shows which condition fails");
  }

  // ---- Nonlin: Z^y = phi(Z^x...; scalar limits)
  void compute_nonlin(const ir::Instr& in) {
    check_assumptions(in);
    double worst = 0;
    std::set<std::string> sources;
    Lead l = lead(in.expr, in, worst, sources);
    Expr e = l.e;
    order_[in.out] = l.order;
    has_lower_[in.out] = !same(l.e, in.expr);
    check_vector_order(in);
    if (l.random) refuse_random(in, l);
    for (const auto& m : sources) note(in.out, m);
    Z_[in.out] = substitute(e, [&](int id) { return Z_[id]; });
    rel_[in.out] = worst;
    std::vector<double> c;
    double off;
    AffineZ a;
    if (as_affine(e, c, off)) {
      a.ok = true;
      a.off = off;
      for (std::size_t id = 0; id < c.size() && a.ok; ++id) {
        if (c[id] == 0) continue;
        if (!aff_[id].ok) a.ok = false;
        else a.axpy(c[id], aff_[id]);
      }
    }
    aff_[in.out] = a.ok ? a : AffineZ{};
    cache_mean(in.out);
    zvars_.push_back({in.out, Z_[in.out], -1, {}});
  }

  // ---- Moment: theta = E phi(Z...) (master theorem)
  // The leading order of a Moment's or Scalar's expression; a quantity zero to
  // every order is settled here (returns true).
  bool scalar_lead(const ir::Instr& in, Lead& l, double& worst, std::set<std::string>& sources) {
    l = lead(in.expr, in, worst, sources);
    order_[in.out] = l.order;
    if (!l.zero()) return false;
    scalar_[in.out] = Estimate{0.0, 0.0, "exact (zero to every order)", {}};
    return true;
  }

  void compute_moment(const ir::Instr& in) {
    check_assumptions(in);
    double worst = 0;
    std::set<std::string> sources;
    Lead l;
    if (scalar_lead(in, l, worst, sources)) return;
    if (l.random) refuse_random(in, l);
    Expr e = l.e;
    Estimate est;
    if (!opt_.force_quadrature && exact_moment(e, est)) {
      // exact covariance algebra over affine Z's
    } else {
      est = expect(substitute(e, [&](int id) { return Z_[id]; }), in, name(in.out));
    }
    if (bound()) est.abs_error += 2 * std::abs(est.value) * worst;
    est.inputs = std::move(sources);
    est.inputs.erase(est.method);
    // A moment of mean 0 (e.g. avg(v x) with v independent of x) vanishes at an
    // order the master theorem does not give (often n^{-1/2}).
    // Its estimate keeps the computed value (within its error of 0); the
    // order analysis treats it as a quantity of limit 0 and unknown size.
    fluct_[in.out] = std::abs(est.value) <= est.abs_error + 1e-300;
    scalar_[in.out] = est;
  }

  // A moment that is a polynomial of degree <= 2 in affine Z's: exact. Each
  // additive term is a constant, an affine combination of vectors, or a
  // product (or square) of two such; the algebra stays in the sparse leaf
  // space (no expansion of (z[T] - v)^2 into its leaves' quadratic form).
  bool exact_moment(const Expr& e, Estimate& out) {
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

  // An affine expression of vectors whose Z's are affine: its Z, affine.
  bool affine_z(const Expr& e, AffineZ& out) const {
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

  // ---- Scalar arithmetic: leading order, error propagated to first order.
  void compute_scalar(const ir::Instr& in) {
    double worst = 0;
    std::set<std::string> sources;
    Lead l;
    if (scalar_lead(in, l, worst, sources)) return;
    if (l.random) {
      // Kept as a random quantity of known order: later growth is still seen.
      random_[in.out] = true;
      random_why_[in.out] = l.why;
      scalar_[in.out] = Estimate{0.0, 0.0, "fluctuation (CLT scale) of '" + l.why + "'", {}};
      return;
    }
    double v = evaluate(l.e, [](int) { return 0.0; });
    // First-order error propagation through the exact expression.
    auto value = [&](int id) { return scalar_[id]->value; };
    double err = 0;
    std::set<std::string> methods;
    for (int id : free_vars(in.expr)) {
      if (random_[id]) continue;  // dropped at this order (else refused above)
      // (an exact input, or one of limit 0 and unknown size, carries no
      // first-order error; sqrt'(0) = inf must not make it NaN)
      double e = fluct_[id] || !bound() ? 0.0 : scalar_[id]->abs_error;
      double d = std::abs(order_[id]) <= kTol && e > 0 ? evaluate(derivative(in.expr, id), value) : 0.0;
      err += std::abs(d) * e;
      methods.insert(scalar_[id]->method);
      methods.insert(scalar_[id]->inputs.begin(), scalar_[id]->inputs.end());
    }
    // Inputs' errors enter through the derivatives above (first order); only
    // rounding is added here.
    err += std::abs(v) * 1e-16;
    std::string method = methods.empty() ? "exact (constant)" : "arithmetic on moments";
    if (!std::isfinite(v) || !std::isfinite(err))
      refuse(in, "the limit of '" + name(in.out) + "' is not finite (" + fmt(v) + " ± " + fmt(err) + ")",
             "a division by a moment whose limit is 0?");
    Estimate est{v, err, method, {}};
    for (const auto& m : methods)
      if (m.rfind("exact", 0) != 0) est.inputs.insert(m);
    fluct_[in.out] = v == 0 && !l.zero();
    scalar_[in.out] = est;
  }

  // ---- A width as a number: ratio * n^1.
  void compute_width(const ir::Instr& in) {
    scalar_[in.out] = Estimate{p_.widths.at(in.member).ratio, 0.0, "exact (width)", {}};
    order_[in.out] = 1.0;
  }
};

}  // namespace

Result compute(const ir::Program& p, const Options& o) {
  for (const auto& in : p.instrs)  // the one place that refuses operator inverses and traces
    if (in.op == ir::Op::Apply || in.op == ir::Op::Trace) {
      Diagnostic d;
      d.loc = in.loc;
      d.message = "limits of inv/tr arrive with the free-probability back end";
      d.hint = "`netsor run` and `netsor spectrum` measure them at finite width; products, sums and diag(...) "
               "applied to vectors (S @ v) have limits now";
      throw ProgramError(d);
    }
  if (o.propagation == Propagation::Bound || o.perturb) return ZCalculus(p, o).run();
  Result base = ZCalculus(p, o).run();
  if (base.numeric_rel_error < 1e-13) return base;  // closed forms and exact algebra only
  // Two perturbed runs with independent signs: one random direction can
  // nearly cancel by chance (|N(0,1)| < 0.1 one time in 12); the larger of two
  // does so one time in 150.
  std::vector<Result> moved;
  for (std::uint64_t k = 1; k <= 2; ++k) {
    Options q = o;
    q.perturb = o.seed * 0x2545F4914F6CDD1DULL + k;
    try {
      moved.push_back(ZCalculus(p, q).run());
    } catch (const ProgramError&) {
      break;
    }
  }
  bool same_path = moved.size() == 2;
  for (const auto& m : moved) {
    same_path = same_path && m.quantities.size() == base.quantities.size();
    for (std::size_t i = 0; same_path && i < base.quantities.size(); ++i)
      same_path = base.quantities[i].estimate.order == m.quantities[i].estimate.order;
  }
  if (!same_path) {  // the perturbation changed the derivation's path: bound instead
    Options q = o;
    q.propagation = Propagation::Bound;
    return ZCalculus(p, q).run();
  }
  auto widen = [](Estimate& e, const Estimate& m) {
    bool vanishing = e.order < 0;
    double d = vanishing ? m.coefficient - e.coefficient : m.value - e.value;
    double add = 3 * std::abs(d);
    if (!std::isfinite(add)) add = INFINITY;
    if (vanishing) return;  // a vanishing report's value is 0 exactly; its coefficient's error is not shown
    e.abs_error += add;
  };
  Result out = base;
  for (const auto& m : moved) {
    for (std::size_t i = 0; i < base.quantities.size(); ++i) {
      Estimate e = base.quantities[i].estimate;
      widen(e, m.quantities[i].estimate);
      out.quantities[i].estimate.abs_error = std::max(out.quantities[i].estimate.abs_error, e.abs_error);
    }
    for (std::size_t i = 0; i < base.scalars.size() && i < m.scalars.size(); ++i)
      if (base.scalars[i].first == m.scalars[i].first) {
        Estimate e = base.scalars[i].second;
        widen(e, m.scalars[i].second);
        out.scalars[i].second.abs_error = std::max(out.scalars[i].second.abs_error, e.abs_error);
      }
  }
  return out;
}

}  // namespace netsor::limit
