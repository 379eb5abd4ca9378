// The Z calculus (primer section 2): walk the program in order and give every
// vector its Z random variable and every scalar its deterministic limit.
//
//   Init    Z^x is a leaf of its declared Gaussian family
//   MatMul  Z^{Wx} = Zhat^{Wx} + Zdot^{Wx}         (compute_matmul)
//   Nonlin  Z^y = phi(Z^x..., limits of scalars)     (compute_nonlin)
//   Moment  theta = E phi(Z^x...)                    (compute_moment)
//
// This file holds the rules. Every Z is an expression over Gaussian leaves;
// the leaves, their families and covariances, and the affine forms that make
// linear programs exact algebra are the GaussianState (gaussian_state.cpp);
// the powers of n a program carries are the order analysis (order.cpp).
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "gaussian_state.hpp"
#include "netsor/expr_walk.hpp"
#include "netsor/free_probability.hpp"
#include "netsor/limit.hpp"
#include "netsor/operators.hpp"
#include "order.hpp"
#include "sampled.hpp"
#include "zstate.hpp"

namespace netsor::limit {
namespace {

using ir::Op;
using ir::VarId;

class ZCalculus {
 public:
  ZCalculus(const ir::Program& p, const Options& o, IntegralLog* log = nullptr)
      : p_(p), opt_(o), E_(o, log), s_(p.vars.size()), g_(p) {}

  Result run() {
    for (const auto& in : p_.instrs) {
      switch (in.op) {
        case Op::Init: compute_init(in); break;
        case Op::MatMul: compute_matmul(in); break;
        case Op::Nonlin: compute_nonlin(in); break;
        case Op::Moment: compute_moment(in); break;
        case Op::Scalar: compute_scalar(in); break;
        case Op::Width: compute_width(in); break;
        case Op::Trace: compute_trace(in); break;
        case Op::Apply: compute_apply(in); break;
      }
    }
    if (opt_.at_end && !opt_.perturb) opt_.at_end(view());
    g_.finish();
    Result r;
    for (const auto& rep : p_.reports) r.quantities.push_back(reported(rep));
    r.numeric_rel_error = numeric_rel_error_;
    r.leaves = g_.leaves();
    r.families = g_.families();
    r.zvars = std::move(zvars_);
    r.methods = methods_;
    r.own_shift = std::move(own_shift_);
    for (std::size_t v = 0; v < p_.vars.size(); ++v)
      if (s_.scalar[v]) r.scalars.emplace_back((VarId)v, *s_.scalar[v]);
    return r;
  }

 private:
  const ir::Program& p_;
  Options opt_;
  MasterExpectation E_;
  VarState s_;
  GaussianState g_;
  std::vector<ZVar> zvars_;
  std::uint64_t perturbed_ = 0;
  double last_shift_ = 0;                  // what expect() last added (a perturbed run)
  std::map<VarId, double> own_shift_;      // Result::own_shift
  std::vector<std::string> methods_;  // Result::methods
  int method_index(const std::string& m) {
    // Few distinct methods; the last one is nearly always the one asked for.
    for (int i = (int)methods_.size() - 1; i >= 0; --i)
      if (methods_[i] == m) return i;
    methods_.push_back(m);
    return (int)methods_.size() - 1;
  }
  struct {
    VarId x = -1;
    std::unordered_map<VarId, double> with;  // E[Z^x Z^y], exact
  } moments_;
  double numeric_rel_error_ = 0;

  const std::string& name(VarId v) const { return p_.vars[v].name; }
  bool bound() const { return opt_.propagation == Propagation::Bound; }

  Quantity reported(const ir::Report& rep) const { return reported_quantity(s_, rep); }

  // A vector's Z as an expression over the leaves. An affine Z lives as its
  // coefficients (GaussianState) and becomes an expression only when a rule
  // that integrates needs it: the Z's of a T-step linear iteration with
  // transposes are dense over ~2T leaves, and their expressions would be T^2
  // nodes that nothing reads.
  Expr z_of(VarId v) {
    if (!s_.Z[v] && g_.affine(v).ok) s_.Z[v] = g_.affine(v).expr();
    return s_.Z[v];
  }

  void set_leaf_z(VarId v, int leaf) {
    s_.Z[v] = var(leaf);
    g_.set_leaf_z(v, leaf);
  }

  // ---- Init: a leaf of the declared family (all members share one family)
  void compute_init(const ir::Instr& in) {
    // Leaves of a family are created in member order as their Inits come.
    int leaf = g_.new_init(name(in.out), g_.init_family(in.family), in.out);
    if (g_.leaf(leaf).index != in.member)
      throw std::logic_error("Init members out of order in family " + std::to_string(in.family));
    set_leaf_z(in.out, leaf);
    g_.cache_mean(in.out);
    zvars_.push_back({in.out, -1, {}});
  }

  Estimate expect(const Expr& f, const ir::Instr& in, const std::string& what) {
    Estimate e = E_.expect(f, g_.law());
    if (!std::isfinite(e.value) || !std::isfinite(e.abs_error))
      refuse(in, "the limit of '" + what + "' is not finite: its master-theorem expectation diverges",
             "the integrand is not integrable under the Gaussian law of its arguments; check the nonlinearity");
    perturb(e);
    return e;
  }

  // A numerical estimate that later rules build on: its error counts toward
  // the perturbation pass, and a perturbed run (Propagation::Perturbation)
  // moves it by its error, with a random sign.
  void perturb(Estimate& e) {
    numeric_rel_error_ = std::max(numeric_rel_error_, e.abs_error / std::max(std::abs(e.value), 1e-300));
    last_shift_ = 0;
    if (opt_.perturb) {
      std::uint64_t h = (opt_.perturb + 0x9E3779B97F4A7C15ULL * ++perturbed_) * 0xBF58476D1CE4E5B9ULL;
      last_shift_ = ((h >> 31) & 1 ? 1.0 : -1.0) * e.abs_error;
      e.value += last_shift_;
    }
  }

  // ---- MatMul: Z^{Wx} = Zhat^{Wx} + Zdot^{Wx} (primer section 2)
  void compute_matmul(const ir::Instr& in) {
    // W (n^e x) = n^e (W x): the product keeps its argument's order.
    s_.order[in.out] = s_.order[in.arg];
    int F = g_.matrix_family(in.matrix, in.transposed, zhat_scale(p_, in));
    VarId x = in.arg;
    double worst = s_.rel[x];
    Eigen::VectorXd row = zhat_row(in, F, worst);
    int k = (int)g_.family(F).leaves.size();
    int leaf = g_.new_zhat("Zhat[" + name(in.out) + "]", F, in.out, x, row);
    set_leaf_z(in.out, leaf);
    for (int j = 0; j < k; ++j) worst = std::max(worst, s_.rel[g_.leaf(g_.family(F).leaves[j]).arg]);
    ZVar zv{in.out, leaf, {}};
    add_zdot(in, F, zv, worst);
    s_.src[in.out].insert(s_.src[x].begin(), s_.src[x].end());
    for (const auto& t : zv.zdot) {
      VarId y = g_.leaf(t.leaf).arg;
      s_.src[in.out].insert(s_.src[y].begin(), s_.src[y].end());
      note(in.out, methods_[t.method]);
    }
    s_.rel[in.out] = worst;
    g_.cache_mean(in.out);
    zvars_.push_back(std::move(zv));
  }

  // Zhat: its covariance sigma^2 E[Z^x Z^{x'}] with every earlier product by
  // this W (and its variance, last): exact for affine Z's, else integrated.
  Eigen::VectorXd zhat_row(const ir::Instr& in, int F, double& worst) {
    const Family& fam = g_.family(F);
    int k = (int)fam.leaves.size();
    VarId x = in.arg;
    const AffineZ& ax = g_.affine(x);
    Eigen::VectorXd row(k + 1);
    if (ax.ok) {
      // W x and W^T x multiply the same x: its second moments with the earlier
      // arguments are kept for the next product (exact, so reuse changes nothing).
      if (moments_.x != x) moments_ = {x, {}};
      std::vector<double> s;  // Sigma c_x, formed at the first moment not kept
      double mx = g_.mean_of(ax);
      auto exact = [&](VarId y) {
        auto it = moments_.with.find(y);
        if (it != moments_.with.end()) return it->second;
        if (s.empty()) s = g_.sigma_times(ax);
        return moments_.with[y] = g_.second_moment(s, mx, g_.affine(y));
      };
      row(k) = exact(x);
      for (int j = 0; j < k; ++j) {
        VarId xj = g_.leaf(fam.leaves[j]).arg;
        row(j) = g_.affine(xj).ok ? exact(xj)
                                  : expect_product(x, xj, in, worst, cov_ref(row(k), g_.cov(F, j, j) / fam.scale));
      }
    } else {
      row(k) = expect_product(x, x, in, worst, 0.0);
      for (int j = 0; j < k; ++j)
        row(j) = expect_product(x, g_.leaf(fam.leaves[j]).arg, in, worst, cov_ref(row(k), g_.cov(F, j, j) / fam.scale));
    }
    row *= fam.scale;
    return row;
  }

  // Zdot: scale * sum over the opposite family's products W^T y (or W x) of
  // Z^y E[dZ^x / dZhat^{W^T y}]; the derivative runs through every earlier Z.
  // Sets Z^{Wx} (as coefficients where it is affine); the terms go into zv.
  void add_zdot(const ir::Instr& in, int F, ZVar& zv, double& worst) {
    int opp = g_.opposite_family(in.matrix, in.transposed);
    if (opp >= 0) {
      // x affine: E[dZ^x / dZhat_j] is x's coefficient of that leaf, read off
      // without an Estimate per leaf (a T-step linear iteration has T^2 of them).
      const AffineZ& ax = g_.affine(in.arg);
      std::vector<Estimate> ds;
      if (!ax.ok) ds = zdot_expectations(in.arg, opp, in);
      int linear = ax.ok ? method_index("exact (linear)") : -1;
      const Family& G = g_.family(opp);
      for (std::size_t i = 0; i < G.leaves.size(); ++i) {
        int gl = G.leaves[i];
        double d = ax.ok ? ax.at(gl) : ds[i].value, err = ax.ok ? 0.0 : ds[i].abs_error;
        if (d == 0 && err == 0) continue;
        VarId y = g_.leaf(gl).arg;
        double coef = g_.family(F).scale * d;
        zv.zdot.push_back({gl, ax.ok ? linear : method_index(ds[i].method), d, err, coef});
        worst = std::max(worst, std::max(s_.rel[y], rel(err, d, 1.0)));
        g_.add_to_affine(in.out, coef, y);
      }
    }
    if (zv.zdot.empty()) return;  // Z^{Wx} = Zhat^{Wx}
    if (g_.affine(in.out).ok) {
      s_.Z[in.out] = nullptr;  // built from the coefficients when needed (z_of)
      return;
    }
    Expr z = var(zv.zhat);
    for (const auto& t : zv.zdot) z = add(z, mul(constant(t.coef), z_of(g_.leaf(t.leaf).arg)));
    s_.Z[in.out] = z;
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
    const Family& fam = g_.family(G);
    std::size_t k = fam.leaves.size();
    std::vector<Estimate> out(k, Estimate{0.0, 0.0, "exact (independent)"});
    std::vector<int> deps = free_vars(z_of(x)), D;
    for (std::size_t i = 0; i < k; ++i)
      if (std::binary_search(deps.begin(), deps.end(), fam.leaves[i])) D.push_back((int)i);
    if (D.empty()) return out;
    int m = (int)D.size();
    // The derivative form, where it exists as an ordinary function.
    std::vector<Estimate> deriv(m);
    bool smooth = is_smooth(z_of(x));
    bool all_const = smooth;
    for (int a = 0; a < m && smooth; ++a) {
      int gl = fam.leaves[D[a]];
      Expr dz = derivative(z_of(x), gl);
      double c;
      if (is_const(dz, &c)) deriv[a] = {c, 0.0, "exact (constant derivative)"};
      else {
        deriv[a] = expect(dz, in, "d" + name(x) + "/d" + g_.leaf(gl).name);
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
      Estimate e = expect(mul(var(gl), z_of(x)), in, "E[" + g_.leaf(gl).name + " * " + name(x) + "]");
      b(a) = e.value;
      eb(a) = e.abs_error;
      methods.insert(e.method);
    }
    Eigen::MatrixXd S(m, m);
    for (int a = 0; a < m; ++a)
      for (int c = 0; c < m; ++c) S(a, c) = g_.cov(G, D[a], D[c]);
    std::string how;
    for (const auto& mth : methods) how += (how.empty() ? "" : " + ") + mth;
    if (smooth) {
      check_stein(in, x, G, D, S, deriv, b, eb, how);
      for (int a = 0; a < m; ++a) out[D[a]] = deriv[a];
      return out;
    }
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(S);
    double top = std::max(es.eigenvalues().cwiseAbs().maxCoeff(), 1e-300);
    Eigen::MatrixXd P = Eigen::MatrixXd::Zero(m, m);
    for (int j = 0; j < m; ++j) {
      double l = es.eigenvalues()(j);
      if (l > 1e-12 * top) P += es.eigenvectors().col(j) * es.eigenvectors().col(j).transpose() / l;
    }
    Eigen::VectorXd st = P * b, est = P.cwiseAbs() * eb;
    for (int a = 0; a < m; ++a) out[D[a]] = {st(a), est(a), "integration by parts (Stein): " + how, {}};
    return out;
  }

  // The check of a smooth Zdot: Sigma d (derivative form) against b (Stein),
  // in the range of Sigma where both are determined.
  void check_stein(const ir::Instr& in, VarId x, int G, const std::vector<int>& D, const Eigen::MatrixXd& S,
                   const std::vector<Estimate>& deriv, const Eigen::VectorXd& b, const Eigen::VectorXd& eb,
                   const std::string& how) {
    const Family& fam = g_.family(G);
    int m = (int)D.size();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(S);
    double top = std::max(es.eigenvalues().cwiseAbs().maxCoeff(), 1e-300);
    Eigen::VectorXd dv(m), de(m);
    for (int a = 0; a < m; ++a) dv(a) = deriv[a].value, de(a) = deriv[a].abs_error;
    // Allowed: both integrations' errors, and the covariance's own (its
    // entries carry the relative errors of the vectors they come from).
    auto arg_rel = [&](int a) { return s_.rel[g_.leaf(fam.leaves[D[a]]).arg]; };
    Eigen::MatrixXd dS(m, m);
    for (int a = 0; a < m; ++a)
      for (int c = 0; c < m; ++c) dS(a, c) = std::abs(S(a, c)) * std::max(arg_rel(a), arg_rel(c));
    Eigen::VectorXd gap = S * dv - b, allowed = eb + S.cwiseAbs() * de + dS * dv.cwiseAbs();
    for (int a = 0; a < m; ++a)
      if (std::abs(gap(a)) > 4 * allowed(a) + 1e-12 * (std::abs(b(a)) + top))
        refuse(in,
               "two independent estimates of the Zdot coefficient E[d" + name(x) + "/d" +
                   g_.leaf(fam.leaves[D[a]]).name + "] disagree (derivative form " + fmt(dv(a)) +
                   " vs integration by parts, as E[Zhat " + name(x) + "], " + fmt(b(a)) + " against " +
                   fmt((S * dv)(a)) + "; by " + deriv[a].method + " ± " + fmt(de(a)) + " and " + how + " ± " +
                   fmt(eb(a)) + ")",
               "the integrand is too rough for the quadrature at this tolerance; try --tol, or report the case");
  }

  // An expression whose derivative is an ordinary, polynomially bounded
  // function: no kinked built-in (relu, step, abs, sign), no guarded sqrt/log
  // (a kink at 0), powers only by non-negative integers.
  static bool is_smooth(const Expr& e) {
    return !any_node(e, [](const Expr& n) {
      double c;
      if (n->op == ExprOp::Call) return is_kinked(n->fn) || n->fn == Fn::Sqrt || n->fn == Fn::Log;
      if (n->op == ExprOp::Div) return !is_const(n->b, &c);
      if (n->op == ExprOp::Pow) return !is_const(n->b, &c) || c < 0 || c != std::floor(c);
      return false;
    });
  }

  // The scale against which an error in E[Z^x Z^{x_j}] is relative: the larger
  // of the two second moments (a leaf of a zero vector has none of its own).
  static double cov_ref(double xx, double jj) { return std::max(std::abs(xx), std::abs(jj)); }

  double expect_product(VarId a, VarId b, const ir::Instr& in, double& worst, double ref) {
    Estimate e = expect(mul(z_of(a), z_of(b)), in, "E[" + name(a) + " * " + name(b) + "]");
    worst = std::max(worst, rel(e.abs_error, e.value, ref));
    note(in.out, e.method);
    return e.value;
  }

  // Provenance: the numerical methods that went into a variable's Z.
  void note(VarId v, const std::string& method) {
    if (method.rfind("exact", 0) != 0) s_.src[v].insert(method);
  }

  void check_assumptions(const ir::Instr& in) { check_bounded(p_, s_, in); }

  // The leading order of an instruction's expression (order.cpp).
  Lead lead(const ir::Instr& in, Carried& carried) const {
    OrderAnalysis order(p_, s_, in, carried);
    return order.lead(in.expr);
  }

  void check_vector_order(const ir::Instr& in) { check_vector_growth(p_, s_, in); }

  // ---- Nonlin: Z^y = phi(Z^x...; scalar limits)
  void compute_nonlin(const ir::Instr& in) {
    check_assumptions(in);
    Carried carried;
    Lead l = lead(in, carried);
    Expr e = l.e;
    s_.order[in.out] = l.order;
    s_.has_lower[in.out] = l.dropped;
    // A vector whose leading term is 0 without being 0 to every order (e.g.
    // avg(v) * v): like a fluctuation-scale scalar, its later uses see a value
    // 0 of unknown sign (OrderAnalysis::variable), so step/sign of it is refused.
    double c0;
    s_.fluct[in.out] = !l.zero() && is_const(l.e, &c0) && c0 == 0;
    check_vector_order(in);
    if (l.random) OrderAnalysis::refuse_random(p_, in, l);
    for (const auto& m : carried.sources) note(in.out, m);
    s_.rel[in.out] = carried.worst;
    // Z^y is affine in the leaves where phi is affine in affine Z's.
    std::vector<double> c;
    double off;
    AffineZ a;
    if (as_affine(e, c, off)) {
      a.ok = true;
      a.off = off;
      for (std::size_t id = 0; id < c.size() && a.ok; ++id) {
        if (c[id] == 0) continue;
        if (!g_.affine(id).ok) a.ok = false;
        else a.axpy(c[id], g_.affine(id));
      }
    }
    g_.set_affine(in.out, a.ok ? a : AffineZ{});
    g_.cache_mean(in.out);
    if (!a.ok) s_.Z[in.out] = substitute(e, [&](int id) { return z_of(id); });  // else built when needed (z_of)
    zvars_.push_back({in.out, -1, {}});
  }

  // The leading order of a Moment's or Scalar's expression; a quantity zero to
  // every order is settled here (returns true).
  bool scalar_lead(const ir::Instr& in, Lead& l, Carried& carried) {
    l = lead(in, carried);
    s_.order[in.out] = l.order;
    if (!l.zero()) return false;
    s_.scalar[in.out] = Estimate{0.0, 0.0, "exact (zero to every order)", {}};
    return true;
  }

  // ---- Moment: theta = E phi(Z...) (master theorem)
  void compute_moment(const ir::Instr& in) {
    check_assumptions(in);
    Carried carried;
    Lead l;
    if (scalar_lead(in, l, carried)) return;
    if (l.random) OrderAnalysis::refuse_random(p_, in, l);
    Expr e = l.e;
    Estimate est;
    if (!opt_.force_quadrature && g_.exact_moment(e, est)) {
      // Exact covariance algebra over affine Z's. Long linear iterations can
      // grow past double range (0.5^T Catalan(T) at T = 2000 is ~1e600):
      // refuse instead of printing the inf - inf = NaN that follows.
      if (!std::isfinite(est.value) || !std::isfinite(est.abs_error))
        refuse(in, "the limit of '" + name(in.out) + "' is beyond double precision",
               "the program's covariances overflow 1.8e308; rescale the iteration (e.g. normalize each step)");
    } else {
      est = expect(substitute(e, [&](int id) { return z_of(id); }), in, name(in.out));
      if (opt_.perturb) own_shift_[in.out] = last_shift_;
    }
    if (bound()) est.abs_error += 2 * std::abs(est.value) * carried.worst;
    est.inputs = std::move(carried.sources);
    est.inputs.erase(est.method);
    // A moment of mean 0 (e.g. avg(v x) with v independent of x) vanishes at an
    // order the master theorem does not give (often n^{-1/2}).
    // Its estimate keeps the computed value (within its error of 0); the
    // order analysis treats it as a quantity of limit 0 and unknown size.
    s_.fluct[in.out] = std::abs(est.value) <= est.abs_error + 1e-300;
    s_.scalar[in.out] = est;
  }

  // ---- Scalar arithmetic: leading order, error propagated to first order.
  void compute_scalar(const ir::Instr& in) {
    Carried carried;
    Lead l;
    if (scalar_lead(in, l, carried)) return;
    if (l.random) {
      // Kept as a random quantity of known order: later growth is still seen.
      s_.random[in.out] = true;
      s_.random_why[in.out] = l.why;
      s_.scalar[in.out] = Estimate{0.0, 0.0, "fluctuation (CLT scale) of '" + l.why + "'", {}};
      return;
    }
    double v = evaluate(l.e, [](int) { return 0.0; });
    // First-order error propagation through the exact expression.
    auto value = [&](int id) { return s_.scalar[id]->value; };
    double err = 0;
    std::set<std::string> methods;
    for (int id : free_vars(in.expr)) {
      if (s_.random[id]) continue;  // dropped at this order (else refused above)
      // (an exact input, or one of limit 0 and unknown size, carries no
      // first-order error; sqrt'(0) = inf must not make it NaN)
      double e = s_.fluct[id] || !bound() ? 0.0 : s_.scalar[id]->abs_error;
      double d = std::abs(s_.order[id]) <= kTol && e > 0 ? evaluate(derivative(in.expr, id), value) : 0.0;
      err += std::abs(d) * e;
      methods.insert(s_.scalar[id]->method);
      methods.insert(s_.scalar[id]->inputs.begin(), s_.scalar[id]->inputs.end());
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
    s_.fluct[in.out] = v == 0 && !l.zero();
    s_.scalar[in.out] = est;
  }

  // ---- A width as a number: ratio * n^1.
  // What the free-probability back end reads: Z's of vectors and limits of
  // scalars at order 0, over the Gaussian leaves' law.
  ZView view() {
    ZView z;
    z.law = g_.law();
    z.subst = [this](VarId v) -> Expr {
      if (std::abs(s_.order[v]) > kTol) return nullptr;
      if (p_.vars[v].kind == ir::VarKind::Scalar) return s_.scalar[v] ? constant(s_.scalar[v]->value) : nullptr;
      return z_of(v);
    };
    return z;
  }

  // ---- Trace: lim tr(T) by the free-probability back end (free_probability.cpp)
  void compute_trace(const ir::Instr& in) {
    try {
      Estimate e = free_trace(p_, in.op_node, view());
      numeric_rel_error_ = std::max(numeric_rel_error_, e.abs_error / std::max(std::abs(e.value), 1e-300));
      s_.scalar[in.out] = e;
    } catch (const FreeRefusal& r) {
      refuse(in, "no limit for this trace: " + r.message, r.hint);
    }
  }

  // ---- Apply: an operator with inv(...) applied to a vector (products, sums
  // and diag(...) applied to vectors are lowered to MatMul and Nonlin).
  // compute() admits one only where its matrices enter no product of the
  // program and it has no diagonal of vectors: then the joint law of all such
  // operators is invariant under a Haar rotation of each width (X -> O_a X
  // O_b^T for X from width b to a) and independent of the vectors they are
  // applied to. For the operators T applied to vectors u of one width,
  //   Z^{T u} = c_T Z^u + Zhat^{T u},   c_T = tr(T) if T maps a width to itself, else 0,
  // the Zhat's jointly Gaussian, independent of every other leaf, with
  //   Cov(Zhat^{T u}, Zhat^{T' u'}) = (tr(T T'^T) - c_T c_T') E[Z^u Z^u']
  // for T, T' into the same width (0 otherwise): (1/d) (T u)^T (T' u') is a
  // rotation-invariant quadratic form, u^T (T^T T') u' / d, of vectors
  // independent of it, which concentrates at tr(T^T T') u^T u' / d; its
  // fluctuations are Gaussian, as for a Gaussian matrix (the MatMul rule is
  // the case T = W: c = 0, tr(W W^T) = sigma^2). The traces come from the
  // free-probability back end (docs/free-probability.md).
  struct Applied {
    int family = -1;
    std::vector<int> ops;      // per leaf of the family: its operator
    std::vector<double> c;     // and c_T
  };
  std::map<std::tuple<int, int, int>, Applied> applied_;  // by (matrix group, input width, output width)
  std::map<VarId, int> group_;                            // matrix -> its group (operators sharing matrices)

  int matrix_group(int node) {
    if (group_.empty()) {  // connected components of "appear in one applied operator"
      std::map<VarId, VarId> up;
      std::function<VarId(VarId)> root = [&](VarId m) { return up[m] == m ? m : up[m] = root(up[m]); };
      for (const auto& in : p_.instrs)
        if (in.op == Op::Apply) {
          auto ms = ir::op_matrices(p_, in.op_node);
          for (VarId m : ms) up.try_emplace(m, m);
          for (VarId m : ms) up[root(m)] = root(ms[0]);
        }
      for (auto& [m, r] : up) group_[m] = root(m);
    }
    auto ms = ir::op_matrices(p_, node);
    return ms.empty() ? -1 : group_.at(ms[0]);
  }

  Estimate trace_of(ir::Program& q, int node, const ir::Instr& in) {
    try {
      Estimate e = free_trace(q, node, view());
      perturb(e);
      return e;
    } catch (const FreeRefusal& r) {
      refuse(in, "no limit for this operator applied to a vector: it needs tr(" + ir::op_text(q, node) + "), and " +
                     r.message, r.hint);
    }
  }

  void compute_apply(const ir::Instr& in) {
    const int T = in.op_node;
    const ir::OpNode& n = p_.op_nodes[T];
    const VarId u = in.arg;
    s_.order[in.out] = s_.order[u];
    const int group = matrix_group(T);
    Applied& A = applied_[{group, n.cols.width, n.rows.width}];
    if (A.family < 0) A.family = g_.new_family("applied[" + ir::op_text(p_, T) + "]");  // named by its first operator
    // u must be independent of the group's operators: no Zhat of theirs in it.
    for (int l : free_vars(z_of(u)))
      for (const auto& [key, other] : applied_)
        if (std::get<0>(key) == group && g_.leaf(l).family == other.family)
          refuse(in, "the limit of " + ir::op_text(p_, T) + " applied to '" + name(u) +
                         "' is not derived: '" + name(u) + "' is itself built from these matrices",
                 "an inverse applied to a vector has a limit when the vector is independent of the operator's "
                 "matrices; `netsor run` measures this one at finite width");
    ir::Program q = p_;  // products T T'^T are new operator nodes
    double worst = s_.rel[u];
    std::set<std::string> methods;
    auto take = [&](const Estimate& e) {
      worst = std::max(worst, rel(e.abs_error, e.value, 1.0));
      methods.insert(e.method);
      return e.value;
    };
    const bool square = n.rows == n.cols;
    const Estimate tr_T = square ? trace_of(q, T, in) : Estimate{0.0, 0.0, "exact (rectangular)", {}};
    const double c = take(tr_T);
    const int k = (int)A.ops.size();
    Eigen::VectorXd factor(k + 1);
    for (int j = 0; j <= k; ++j) {
      int Tj = j < k ? A.ops[j] : T;
      ir::OpError err;
      int prod = ir::op_product(q, T, ir::op_transpose(q, Tj), &err);
      if (prod < 0) throw std::logic_error("compute_apply: " + err.message);
      factor(j) = take(trace_of(q, prod, in)) - c * (j < k ? A.c[j] : c);
    }
    Eigen::VectorXd row = zhat_row(in, A.family, worst);  // E[Z^u Z^{u_j}] (the family's scale is 1)
    row.array() *= factor.array();
    if (row(k) < 0) row(k) = 0;  // rounding of tr(T T^T) - tr(T)^2 for an operator that is nearly a multiple of I
    int leaf = g_.new_zhat("Zhat[" + name(in.out) + "]", A.family, in.out, u, row);
    A.ops.push_back(T);
    A.c.push_back(c);
    set_leaf_z(in.out, leaf);
    ZVar zv{in.out, leaf, {}};
    if (c != 0) {
      zv.zdot.push_back({leaf, method_index(tr_T.method), c, tr_T.abs_error, c});
      g_.add_to_affine(in.out, c, u);
      s_.Z[in.out] = g_.affine(in.out).ok ? nullptr : add(var(leaf), mul(constant(c), z_of(u)));
    }
    s_.src[in.out].insert(s_.src[u].begin(), s_.src[u].end());
    for (const auto& m : methods) note(in.out, m);
    s_.rel[in.out] = worst;
    g_.cache_mean(in.out);
    zvars_.push_back(std::move(zv));
  }

  void compute_width(const ir::Instr& in) {
    s_.scalar[in.out] = Estimate{p_.widths.at(in.member).ratio, 0.0, "exact (width)", {}};
    s_.order[in.out] = 1.0;
  }
};

}  // namespace

namespace {
// An operator with inv(...) applied to a vector has a limit here when its law
// is invariant under rotations and independent of the vector (compute_apply):
// its matrices Gaussian, in no product of the program, and no diagonal of
// program vectors inside it. The one place that refuses the others.
void check_applied(const ir::Program& p) {
  std::map<VarId, const ir::Instr*> product_of;
  for (const auto& in : p.instrs)
    if (in.op == Op::MatMul) product_of.try_emplace(in.matrix, &in);
  for (const auto& in : p.instrs) {
    if (in.op != Op::Apply) continue;
    auto why = [&](const std::string& m, const std::string& hint) {
      refuse(in, "the limit of " + ir::op_text(p, in.op_node) + " applied to a vector is not derived: " + m,
             hint + "; `netsor run` and `netsor spectrum` measure it at finite width");
    };
    for (VarId m : ir::op_matrices(p, in.op_node)) {
      if (p.matrix_of(m).dist != ir::MatrixDist::Gaussian)
        why("'" + p.vars[m].name + "' is orthogonal", "the limit pass covers Gaussian matrices");
      auto it = product_of.find(m);
      if (it != product_of.end())
        why("'" + p.vars[m].name + "' also multiplies a vector at line " + std::to_string(it->second->loc.line) +
                ", so the operator is not independent of the vectors",
            "an inverse applied to a vector has a limit when its matrices enter no other product");
    }
    std::function<void(int)> walk = [&](int node) {
      const ir::OpNode& n = p.op_nodes[node];
      if (n.kind == ir::OpKind::Diag)
        for (int id : free_vars(n.entries))
          if (p.vars[id].kind != ir::VarKind::Scalar)
            why("diag(...) of the vector '" + p.vars[id].name + "' inside it breaks the rotation invariance the limit rests on",
                "tr(...) of such operators has a limit (free probability)");
      for (int a : n.args) walk(a);
    };
    walk(in.op_node);
  }
}
}  // namespace

Result compute(const ir::Program& p, const Options& o) {
  check_applied(p);
  const bool applied = std::any_of(p.instrs.begin(), p.instrs.end(), [](const ir::Instr& in) { return in.op == Op::Apply; });
  if (applied && o.method == Method::Sampled)
    for (const auto& in : p.instrs)
      if (in.op == Op::Apply)
        refuse(in, "the sampled evaluator does not derive an operator with inv(...) applied to a vector",
               "use --method quadrature (or auto)");
  if (o.method == Method::Sampled ||
      (o.method == Method::Auto && !applied && integral_dimension(p) > kAutoDimension))
    return compute_sampled(p, o);
  if (o.propagation == Propagation::Bound || o.perturb) return ZCalculus(p, o).run();
  IntegralLog log;
  Result base = ZCalculus(p, o, &log).run();
  log.replay = true;
  if (base.numeric_rel_error < 1e-13) return base;  // closed forms and exact algebra only
  // Two perturbed runs with independent signs: one random direction can
  // nearly cancel by chance (|N(0,1)| < 0.1 one time in 12); the larger of two
  // does so one time in 150.
  std::vector<Result> moved;
  for (std::uint64_t k = 1; k <= 2; ++k) {
    Options q = o;
    q.perturb = o.seed * 0x2545F4914F6CDD1DULL + k;
    try {
      log.next = 0;
      moved.push_back(ZCalculus(p, q, &log).run());
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
  // What the perturbed run m did to e through its inputs: its own estimate's
  // shift taken out (that error is in e.abs_error already; counting it again
  // made a report that is one expectation carry 4x its error).
  auto widen = [](Estimate& e, const Estimate& m, const Result& moved, VarId v) {
    bool vanishing = e.order < 0;
    auto own = moved.own_shift.find(v);
    double d = vanishing ? m.coefficient - e.coefficient
                         : m.value - e.value - (own == moved.own_shift.end() ? 0.0 : own->second);
    double add = 3 * std::abs(d);
    if (!std::isfinite(add)) add = INFINITY;
    if (vanishing) return;  // a vanishing report's value is 0 exactly; its coefficient's error is not shown
    e.abs_error += add;
  };
  Result out = base;
  for (const auto& m : moved) {
    for (std::size_t i = 0; i < base.quantities.size(); ++i) {
      Estimate e = base.quantities[i].estimate;
      widen(e, m.quantities[i].estimate, m, p.reports[i].var);
      out.quantities[i].estimate.abs_error = std::max(out.quantities[i].estimate.abs_error, e.abs_error);
    }
    for (std::size_t i = 0; i < base.scalars.size() && i < m.scalars.size(); ++i)
      if (base.scalars[i].first == m.scalars[i].first) {
        Estimate e = base.scalars[i].second;
        widen(e, m.scalars[i].second, m, m.scalars[i].first);
        out.scalars[i].second.abs_error = std::max(out.scalars[i].second.abs_error, e.abs_error);
      }
  }
  return out;
}

}  // namespace netsor::limit
