// MasterExpectation: E[f(g)] for g a finite Gaussian vector (primer section 2,
// "Consequences for an implementation"). See include/netsor/limit.hpp.
#include <algorithm>
#include <boost/math/constants/constants.hpp>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <optional>

#include "netsor/expr_walk.hpp"
#include "netsor/limit.hpp"
#include "netsor/quadrature.hpp"
#include "netsor/tape.hpp"

namespace netsor::limit {
namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
constexpr double kPi = boost::math::constants::pi<double>();
// Tensor Gauss-Hermite up to this many dimensions (quadrature.cpp gh_orders).
constexpr int kTensorDims = 6;

// ------------------------------------------------------------ affine analysis

// An expression is affine in the leaves if it is built from leaves and
// constants by +, -, scaling and division by constants: its coefficients over
// the local leaf indices, node by node (memoised over the DAG by the walker).
struct Affine {
  bool ok = false;
  VectorXd c;  // coefficients over the local leaf indices
  double off = 0;
  bool is_const() const { return ok && c.isZero(0.0); }
};

struct AffineRules {
  const std::map<int, int>& local;
  int k;
  Affine none() const { return {false, VectorXd::Zero(k), 0.0}; }
  Affine constant(const Expr& e) { return {true, VectorXd::Zero(k), e->value}; }
  Affine variable(const Expr& e) {
    Affine r{true, VectorXd::Zero(k), 0.0};
    r.c(local.at(e->var)) = 1;
    return r;
  }
  Affine add(const Expr&, const Affine& a, const Affine& b) { return sum(a, b, 1); }
  Affine sub(const Expr&, const Affine& a, const Affine& b) { return sum(a, b, -1); }
  Affine sum(const Affine& a, const Affine& b, double s) const {
    return a.ok && b.ok ? Affine{true, a.c + s * b.c, a.off + s * b.off} : none();
  }
  Affine neg(const Expr&, const Affine& a) { return a.ok ? Affine{true, -a.c, -a.off} : none(); }
  Affine mul(const Expr&, const Affine& a, const Affine& b) {
    if (a.ok && b.ok && a.is_const()) return {true, a.off * b.c, a.off * b.off};
    if (a.ok && b.ok && b.is_const()) return {true, b.off * a.c, b.off * a.off};
    return none();
  }
  Affine div(const Expr&, const Affine& a, const Affine& b) {
    if (a.ok && b.ok && b.is_const() && b.off != 0) return {true, a.c / b.off, a.off / b.off};
    return none();
  }
  Affine pow(const Expr&, const Affine& a, const Affine& b) {
    if (!a.ok || !b.ok || !b.is_const()) return none();
    if (b.off == 1) return a;
    if (a.is_const()) return {true, VectorXd::Zero(k), std::pow(a.off, b.off)};
    return none();
  }
  Affine call(const Expr& e, const Affine& a) {
    return a.is_const() ? Affine{true, VectorXd::Zero(k), apply_fn(e->fn, a.off)} : none();
  }
};

// Rules over the local leaf indices, whose memo serves every later question.
template <class T, class Rules>
class LocalMemo {
 public:
  explicit LocalMemo(const std::map<int, int>& local) : rules_{local, (int)local.size()}, fold_(rules_) {}
  const T& get(const Expr& e) { return fold_(e); }

 private:
  Rules rules_;
  Fold<T, Rules> fold_;
};
using AffineMemo = LocalMemo<Affine, AffineRules>;

// ------------------------------------------------------------ quadratics

// Polynomials of degree <= 2: c + b.g + g'Qg; their expectation is exact.
struct Quadratic {
  bool ok = false;
  int deg = 0;
  double c = 0;
  VectorXd b;
  MatrixXd Q;
};

struct QuadRules {
  const std::map<int, int>& local;
  int k;
  Quadratic konst(double v) const { return {true, 0, v, VectorXd::Zero(k), MatrixXd::Zero(k, k)}; }
  static Quadratic product(const Quadratic& a, const Quadratic& b) {
    if (!a.ok || !b.ok || a.deg + b.deg > 2) return {};
    Quadratic r;
    r.ok = true;
    r.deg = a.deg + b.deg;
    r.c = a.c * b.c;
    r.b = a.c * b.b + b.c * a.b;
    MatrixXd outer = a.b * b.b.transpose();
    r.Q = a.c * b.Q + b.c * a.Q + 0.5 * (outer + outer.transpose());
    return r;
  }
  static Quadratic sum(const Quadratic& a, const Quadratic& b, double s) {
    if (!a.ok || !b.ok) return {};
    return {true, std::max(a.deg, b.deg), a.c + s * b.c, a.b + s * b.b, a.Q + s * b.Q};
  }
  Quadratic constant(const Expr& e) { return konst(e->value); }
  Quadratic variable(const Expr& e) {
    Quadratic r = konst(0);
    r.deg = 1;
    r.b(local.at(e->var)) = 1;
    return r;
  }
  Quadratic add(const Expr&, const Quadratic& a, const Quadratic& b) { return sum(a, b, 1); }
  Quadratic sub(const Expr&, const Quadratic& a, const Quadratic& b) { return sum(a, b, -1); }
  Quadratic neg(const Expr&, const Quadratic& a) {
    if (!a.ok) return {};
    return {true, a.deg, -a.c, -a.b, -a.Q};
  }
  Quadratic mul(const Expr&, const Quadratic& a, const Quadratic& b) { return product(a, b); }
  Quadratic div(const Expr&, const Quadratic& a, const Quadratic& b) {
    if (!a.ok || !b.ok || b.deg != 0 || b.c == 0) return {};
    return {true, a.deg, a.c / b.c, a.b / b.c, a.Q / b.c};
  }
  Quadratic pow(const Expr&, const Quadratic& a, const Quadratic& p) {
    if (!a.ok || !p.ok || p.deg != 0) return {};
    if (a.deg == 0) return konst(std::pow(a.c, p.c));
    if (p.c == 1) return a;
    if (p.c == 2) return product(a, a);
    return {};
  }
  Quadratic call(const Expr& e, const Quadratic& a) {
    if (a.ok && a.deg == 0) return konst(apply_fn(e->fn, a.c));
    return {};
  }
};

using QuadMemo = LocalMemo<Quadratic, QuadRules>;

// ------------------------------------------------------------ polynomial degree

// The degree of an expression as a polynomial in each of k leaves (kNotPoly
// where a leaf reaches a nonlinearity, a divisor or a non-integer power).
// Where an integrand is a polynomial of degree D in some Gaussian directions,
// a Gauss-Hermite rule of order D/2 + 1 in those directions is exact.
constexpr int kNotPoly = 1 << 20;
// Leaf i counts towards group[i] (-1: towards none), k groups.
struct DegreeRules {
  const std::vector<int>& group;
  int k;
  using D = std::vector<int>;
  D zero() const { return D(k, 0); }
  static D poison(D a) {
    for (int& x : a)
      if (x > 0) x = kNotPoly;
    return a;
  }
  D constant(const Expr&) { return zero(); }
  D variable(const Expr& e) {
    D r = zero();
    if (group[e->var] >= 0) r[group[e->var]] = 1;
    return r;
  }
  static D max(D a, const D& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::max(a[i], b[i]);
    return a;
  }
  D add(const Expr&, const D& a, const D& b) { return max(a, b); }
  D sub(const Expr&, const D& a, const D& b) { return max(a, b); }
  D neg(const Expr&, const D& a) { return a; }
  D mul(const Expr&, D a, const D& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::min(kNotPoly, a[i] + b[i]);
    return a;
  }
  D div(const Expr&, const D& a, const D& b) { return max(a, poison(b)); }
  D pow(const Expr& e, const D& a, const D& b) {
    double p;
    if (is_const(e->b, &p) && p >= 0 && p == std::floor(p) && p <= 64) {
      D r = a;
      for (int& x : r) x = std::min<long>(kNotPoly, (long)x * (long)p);
      return r;
    }
    return max(poison(a), poison(b));
  }
  D call(const Expr&, const D& a) { return poison(a); }
};

// ------------------------------------------------------------ closed forms

struct Factor {
  Fn fn;
  Expr arg;
};

// t = c * f1(A1) [* f2(A2)] with f in {relu, step, erf} and A affine? Only
// products, constants, and calls and their squares are looked into; the
// constants are kept in the order met and multiplied left to right.
struct CallProduct {
  bool ok = false;
  std::vector<double> consts;
  std::vector<Factor> fs;
};
struct CallProducts {
  static CallProduct fail() { return {}; }
  std::optional<CallProduct> stop(const Expr& t) {
    double v;
    if (t->op == ExprOp::Mul || t->op == ExprOp::Const) return std::nullopt;
    if (t->op == ExprOp::Pow && is_const(t->b, &v) && v == 2 && t->a->op == ExprOp::Call) return std::nullopt;
    if (t->op != ExprOp::Call || (t->fn != Fn::Relu && t->fn != Fn::Step && t->fn != Fn::Erf)) return fail();
    return CallProduct{true, {}, {{t->fn, t->a}}};
  }
  CallProduct constant(const Expr& t) { return {true, {t->value}, {}}; }
  CallProduct mul(const Expr&, CallProduct a, const CallProduct& b) {
    if (!a.ok || !b.ok) return fail();
    a.consts.insert(a.consts.end(), b.consts.begin(), b.consts.end());
    a.fs.insert(a.fs.end(), b.fs.begin(), b.fs.end());
    return a;
  }
  CallProduct pow(const Expr& t, const CallProduct& a, const CallProduct&) { return mul(t, a, a); }  // a square
  CallProduct variable(const Expr&) { return fail(); }  // (settled by stop)
  CallProduct add(const Expr&, const CallProduct&, const CallProduct&) { return fail(); }
  CallProduct sub(const Expr&, const CallProduct&, const CallProduct&) { return fail(); }
  CallProduct div(const Expr&, const CallProduct&, const CallProduct&) { return fail(); }
  CallProduct neg(const Expr&, const CallProduct&) { return fail(); }
  CallProduct call(const Expr&, const CallProduct&) { return fail(); }
};

bool as_call_product(const Expr& t, double& c, std::vector<Factor>& fs) {
  CallProduct p = fold<CallProduct>(t, CallProducts{});
  if (!p.ok) return false;
  for (double k : p.consts) c *= k;
  fs = std::move(p.fs);
  return true;
}

// The factors of a product (its Mul nodes flattened, left to right).
struct Factors {
  using List = std::vector<Expr>;
  std::optional<List> stop(const Expr& e) { return e->op == ExprOp::Mul ? std::nullopt : std::optional<List>(List{e}); }
  List mul(const Expr&, List a, const List& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  // Everything but a product is one factor (settled by stop).
  List constant(const Expr& e) { return {e}; }
  List variable(const Expr& e) { return {e}; }
  List add(const Expr& e, const List&, const List&) { return {e}; }
  List sub(const Expr& e, const List&, const List&) { return {e}; }
  List div(const Expr& e, const List&, const List&) { return {e}; }
  List neg(const Expr& e, const List&) { return {e}; }
  List pow(const Expr& e, const List&, const List&) { return {e}; }
  List call(const Expr& e, const List&) { return {e}; }
};

// ------------------------------------------------------------ the engine

struct Term {
  double value = 0, error = 0;
  std::string method;
};

class Engine {
 public:
  Engine(const Expr& f, const GaussianLaw& law, const Options& opt, IntegralLog* log) : f_(f), opt_(opt), log_(log) {
    auto ids = free_vars(f);
    for (std::size_t i = 0; i < ids.size(); ++i) local_[ids[i]] = (int)i;
    k_ = (int)ids.size();
    mu_ = VectorXd(k_);
    S_ = MatrixXd(k_, k_);
    for (int i = 0; i < k_; ++i) {
      mu_(i) = law.mean(ids[i]);
      for (int j = 0; j <= i; ++j) S_(i, j) = S_(j, i) = law.cov(ids[i], ids[j]);
    }
  }

  Estimate run() {
    if (k_ == 0) return {evaluate(f_, [](int) { return 0.0; }), 0.0, "exact (deterministic)"};
    // E is linear: each additive term may take its own (cheapest exact)
    // method. Products of sums are distributed first (up to 64 terms), so that
    // terms over independent groups of Gaussians factor.
    auto terms = additive_terms(f_, 64);
    AffineMemo aff(local_);
    std::unique_ptr<QuadMemo> quad;
    // Each node of the memo holds a k x k matrix: bounded to ~128 MB.
    if (k_ <= 400 && double(k_) * k_ * double(node_count(f_)) <= double(1 << 24)) quad = std::make_unique<QuadMemo>(local_);
    Estimate out{0, 0, ""};
    Expr residual = constant(0.0);
    bool any_residual = false;
    std::map<std::string, int> methods;
    for (const auto& [coef, t] : terms) {
      if (!opt_.force_quadrature) {
        if (quad) {
          const Quadratic& q = quad->get(t);
          if (q.ok) {
            double e = q.c + q.b.dot(mu_) + (q.Q.cwiseProduct(S_)).sum() + mu_.dot(q.Q * mu_);
            // Rounding, bounded by the sizes of the summed terms (they may cancel).
            double size = std::abs(q.c) + q.b.cwiseAbs().dot(mu_.cwiseAbs()) +
                          (q.Q.cwiseAbs().cwiseProduct(S_.cwiseAbs())).sum() +
                          mu_.cwiseAbs().dot(q.Q.cwiseAbs() * mu_.cwiseAbs());
            out.value += coef * e;
            out.abs_error += std::abs(coef) * size * 4e-16 * (k_ + 1);
            methods["exact (Gaussian algebra)"]++;
            continue;
          }
        }
        Term cf;
        if (closed_form(t, aff, cf)) {
          out.value += coef * cf.value;
          out.abs_error += std::abs(coef) * cf.error;
          methods[cf.method]++;
          continue;
        }
      }
      Term fac;
      if (factorize(t, fac)) {
        out.value += coef * fac.value;
        out.abs_error += std::abs(coef) * fac.error;
        methods[fac.method]++;
        continue;
      }
      residual = add(residual, mul(constant(coef), t));
      any_residual = true;
    }
    if (any_residual) {
      Term q = numeric(residual);
      out.value += q.value;
      out.abs_error += q.error;
      methods[q.method]++;
    }
    for (const auto& [m, n] : methods) out.method += (out.method.empty() ? "" : " + ") + m;
    return out;
  }

 private:
  const Expr& f_;
  const Options& opt_;
  IntegralLog* log_;
  std::map<int, int> local_;
  int k_ = 0;
  VectorXd mu_;
  MatrixXd S_;

  // A product of factors over mutually independent groups of Gaussians (zero
  // cross-covariance) has the product of their expectations: the backward pass
  // (through W^T) and the forward pass are often such groups, and integrating
  // each alone keeps the dimension low.
  bool factorize(const Expr& t, Term& out) {
    std::vector<Expr> factors = fold<Factors::List>(t, Factors{});
    if (factors.size() < 2) return false;
    std::size_t F = factors.size();
    std::vector<std::vector<int>> deps(F);
    for (std::size_t i = 0; i < F; ++i)
      for (int id : free_vars(factors[i])) deps[i].push_back(local_.at(id));
    // Union-find over factors: joined when any pair of their leaves correlates.
    std::vector<int> parent(F);
    for (std::size_t i = 0; i < F; ++i) parent[i] = (int)i;
    std::function<int(int)> root = [&](int i) { return parent[i] == i ? i : parent[i] = root(parent[i]); };
    for (std::size_t i = 0; i < F; ++i)
      for (std::size_t j = i + 1; j < F; ++j) {
        bool linked = false;
        for (int a : deps[i]) {
          for (int b : deps[j])
            if (S_(a, b) != 0) { linked = true; break; }
          if (linked) break;
        }
        if (linked) parent[root((int)i)] = root((int)j);
      }
    std::map<int, Expr> groups;
    for (std::size_t i = 0; i < F; ++i) {
      int r = root((int)i);
      groups[r] = groups.count(r) ? mul(groups[r], factors[i]) : factors[i];
    }
    if (groups.size() < 2) return false;
    GaussianLaw sub;
    sub.mean = [this](int id) { return mu_(local_.at(id)); };
    sub.cov = [this](int a, int b) { return S_(local_.at(a), local_.at(b)); };
    out.value = 1;
    out.error = 0;
    std::map<std::string, int> ms;
    for (const auto& [r, g] : groups) {
      Estimate e = Engine(g, sub, opt_, log_).run();
      // d(ab) = |a| db + |b| da
      out.error = std::abs(out.value) * e.abs_error + std::abs(e.value) * out.error;
      out.value *= e.value;
      ms[e.method]++;
    }
    out.method.clear();
    for (const auto& [m, n] : ms) out.method += (out.method.empty() ? "" : " x ") + m;
    out.method += " (independent factors)";
    return true;
  }

  // Closed forms of primer section 3 for centred Gaussians (u, v) with
  // covariance [[k11, k12], [k12, k22]].
  bool closed_form(const Expr& t, AffineMemo& aff, Term& out) {
    double c = 1;
    std::vector<Factor> fs;
    if (!as_call_product(t, c, fs) || fs.empty() || fs.size() > 2) return false;
    std::vector<const Affine*> A;
    for (const auto& f : fs) {
      const Affine& a = aff.get(f.arg);
      if (!a.ok) return false;
      double mean = a.off + a.c.dot(mu_);
      double scale = std::abs(a.off) + a.c.cwiseAbs().dot(mu_.cwiseAbs());
      if (std::abs(mean) > 1e-15 * std::max(scale, 1e-300) && mean != 0) return false;
      A.push_back(&a);
    }
    double k11 = A[0]->c.dot(S_ * A[0]->c);
    if (fs.size() == 1) {
      switch (fs[0].fn) {
        case Fn::Relu: out.value = c * std::sqrt(k11 / (2 * kPi)); break;
        case Fn::Step: out.value = k11 > 0 ? 0.5 * c : 0.0; break;
        case Fn::Erf: out.value = 0; break;
        default: return false;
      }
      out.error = std::abs(out.value) * 4e-16;
      out.method = std::string("closed form (") + fn_name(fs[0].fn) + ")";
      return true;
    }
    if (fs[0].fn != fs[1].fn) return false;
    double k22 = A[1]->c.dot(S_ * A[1]->c);
    double k12 = A[0]->c.dot(S_ * A[1]->c);
    double v = 0;
    if (fs[0].fn == Fn::Erf) {
      v = (2 / kPi) * std::asin(std::clamp(2 * k12 / std::sqrt((1 + 2 * k11) * (1 + 2 * k22)), -1.0, 1.0));
    } else if (k11 <= 0 || k22 <= 0) {
      v = 0;  // relu(0) = step(0) = 0
    } else {
      // theta = angle between u and v, from the residual of v after projecting
      // out u, which avoids the cancellation in 1 - rho^2 for nearby inputs.
      VectorXd r = A[1]->c - (k12 / k11) * A[0]->c;
      double s = std::max(0.0, r.dot(S_ * r));
      double theta = std::atan2(std::sqrt(k11 * s), k12);
      if (fs[0].fn == Fn::Relu)
        v = std::sqrt(k11 * k22) * (std::sin(theta) + (kPi - theta) * std::cos(theta)) / (2 * kPi);
      else
        v = (kPi - theta) / (2 * kPi);
    }
    out.value = c * v;
    out.error = std::abs(out.value) * 1e-15 * (1 + k_);
    out.method = std::string("closed form (") + fn_name(fs[0].fn) + " pair)";
    return true;
  }

  // g rebuilt over its atoms, the maximal affine subexpressions of g: each
  // becomes a leaf numbered in order of discovery (operands right to left, the
  // order the recursive rebuild had, which fixes the integration coordinates).
  struct Atoms : Rebuild {
    static constexpr bool kRightToLeft = true;
    AffineMemo& aff;
    std::vector<const Affine*>& atoms;
    Atoms(AffineMemo& a, std::vector<const Affine*>& at) : aff(a), atoms(at) {}
    std::optional<Expr> stop(const Expr& e) {
      const Affine& a = aff.get(e);
      if (!a.ok) return std::nullopt;
      if (a.is_const()) return netsor::constant(a.off);
      for (std::size_t i = 0; i < atoms.size(); ++i)
        if (atoms[i]->off == a.off && atoms[i]->c == a.c) return var((int)i);
      atoms.push_back(&a);
      return var((int)atoms.size() - 1);
    }
  };

  Term numeric(const Expr& g) {
    AffineMemo aff(local_);
    std::vector<const Affine*> atoms;
    Atoms rules{aff, atoms};
    Expr F = fold<Expr>(g, rules);
    int m = (int)atoms.size();
    if (m == 0) return {evaluate(F, [](int) { return 0.0; }), 0.0, "exact (deterministic)"};
    MatrixXd C(k_, m);
    VectorXd mean(m);
    for (int i = 0; i < m; ++i) {
      C.col(i) = atoms[i]->c;
      mean(i) = atoms[i]->off + atoms[i]->c.dot(mu_);
    }
    MatrixXd K = C.transpose() * S_ * C;
    // Integrate in the range of K: atoms = mean + L xi, xi ~ N(0, I_r).
    Eigen::SelfAdjointEigenSolver<MatrixXd> es(K);
    double top = std::max(0.0, es.eigenvalues().maxCoeff());
    std::vector<int> keep;
    for (int i = 0; i < m; ++i)
      if (es.eigenvalues()(i) > 1e-14 * top * m && es.eigenvalues()(i) > 0) keep.push_back(i);
    int r = (int)keep.size();
    MatrixXd L(m, r);
    for (int j = 0; j < r; ++j) L.col(j) = es.eigenvectors().col(keep[j]) * std::sqrt(es.eigenvalues()(keep[j]));

    Tape tape(F, [](int id) { return id; });
    if (r == 0) {
      std::vector<double> work;
      return {tape.eval(mean.data(), work), 0.0, "exact (deterministic: zero variance)"};
    }
    Integrand in{tape, mean, L, m, r, opt_};
    std::string exact_part;
    if (r >= 3) exact_part = split_polynomial_directions(F, in);
    if (in.r == 0) return exact_sum(in, exact_part);
    find_kinks(F, in);
    quad::Result q = integrate(in);
    if (!exact_part.empty()) q.method += " x " + exact_part;
    return {q.value, q.abs_error, q.method};
  }

  // The integrand in standard coordinates: atoms = mean + L xi, xi ~ N(0, I_r),
  // each value summed over an exact inner rule where one is set
  // (split_polynomial_directions): atoms + atom_inner(:, j) with weight(j).
  struct Integrand {
    const Tape& tape;
    const VectorXd& mean;
    MatrixXd L;
    int m, r;
    const Options& opt;
    MatrixXd atom_inner;  // m x M
    VectorXd weight;      // M (empty: no inner rule)
    // Where the integrand is not smooth: the zero sets of the arguments of
    // relu, step, abs, sign, sqrt, log and fractional powers, as hyperplanes
    // when the argument is an atom (else `unknown_kink`); and "scale
    // features", the zero sets of atoms of standard deviation > kFeatureStd
    // inside a nonlinearity, where a smooth built-in changes over a width
    // < 1/kFeatureStd in these coordinates (tanh(20 x), exp(-x^2) at variance
    // 400): global rules miss them; a rule split there resolves them.
    std::vector<quad::Hyperplane> kinks;
    bool unknown_kink = false;
    bool has_features = false;

    // The values at B points whose atoms are `base` (m arrays of size B),
    // summed over the inner rule (of |value| where `abs`).
    Eigen::ArrayXd values(const std::vector<Eigen::ArrayXd>& base, bool abs = false) const {
      std::vector<const Eigen::ArrayXd*> ptr(m);
      if (weight.size() == 0) {
        for (int i = 0; i < m; ++i) ptr[i] = &base[i];
        return abs ? Eigen::ArrayXd(tape.eval(ptr).abs()) : tape.eval(ptr);
      }
      long B = base[0].size(), M = weight.size();
      long chunk = std::max(1L, 16384 / B);
      Eigen::ArrayXd acc = Eigen::ArrayXd::Zero(B);
      std::vector<Eigen::ArrayXd> at(m);
      for (long j0 = 0; j0 < M; j0 += chunk) {
        long c = std::min(chunk, M - j0);
        for (int i = 0; i < m; ++i) {
          at[i].resize(B * c);
          for (long jj = 0; jj < c; ++jj) at[i].segment(jj * B, B) = base[i] + atom_inner(i, j0 + jj);
          ptr[i] = &at[i];
        }
        Eigen::ArrayXd v = tape.eval(ptr);
        if (abs) v = v.abs();
        for (long jj = 0; jj < c; ++jj) acc += weight(j0 + jj) * v.segment(jj * B, B);
      }
      return acc;
    }
    std::vector<Eigen::ArrayXd> atoms_at(const MatrixXd& LL, const std::vector<Eigen::ArrayXd>& xi, long B) const {
      std::vector<Eigen::ArrayXd> at(m);
      for (int i = 0; i < m; ++i) {
        at[i] = Eigen::ArrayXd::Constant(B, mean(i));
        for (int j = 0; j < r; ++j) at[i] += LL(i, j) * xi[j];
      }
      return at;
    }
    quad::BatchIntegrand batch(const MatrixXd& LL) const {
      return [this, &LL](const std::vector<Eigen::ArrayXd>& xi) { return values(atoms_at(LL, xi, xi[0].size())); };
    }
    quad::Integrand pointwise() const {
      return [this](const double* xi) {
        thread_local std::vector<double> work, base, atom;
        base.resize(m);
        for (int i = 0; i < m; ++i) {
          double s = mean(i);
          for (int j = 0; j < r; ++j) s += L(i, j) * xi[j];
          base[i] = s;
        }
        if (weight.size() == 0) return tape.eval(base.data(), work);
        // (The adaptive rules call this millions of times: no allocation per call.)
        atom.resize(m);
        double sum = 0;
        for (Eigen::Index k = 0; k < weight.size(); ++k) {
          for (int i = 0; i < m; ++i) atom[i] = base[i] + atom_inner(i, k);
          sum += weight(k) * tape.eval(atom.data(), work);
        }
        return sum;
      };
    }
  };
  // Directions in which the integrand is a polynomial are integrated exactly.
  // The atoms P that reach no nonlinearity, divisor or non-integer power enter
  // F polynomially. Split xi = Q_N eta + Q_P zeta with Q_N spanning the
  // directions the other atoms N move in: N depends on eta alone, and for each
  // eta F is a polynomial in zeta. The P atoms fall into groups whose parts in
  // zeta are uncorrelated across groups (each group moves in its own
  // subspace); where F has total degree D_c in group c's atoms, the tensor
  // Gauss-Hermite rule of order D_c/2 + 1 on that group's subspace is exact
  // (Gaussian integration, primer section 2). Lanczos and Hessian-vector
  // programs have integrands of this kind: polynomial in 4-6 independent
  // Zhat's, nonlinear in one or two. `in` becomes the outer integral over eta;
  // the returned method names the exact part ("" where F has no such
  // directions or the rule would be too large; `in` is then unchanged).
  std::string split_polynomial_directions(const Expr& F, Integrand& in) {
    int m = in.m, r = in.r;
    // (The degree fold keeps m numbers per node: bounded like the quadratic memo.)
    if (double(m) * double(node_count(F)) > double(1 << 24)) return "";
    std::vector<int> self(m);
    for (int i = 0; i < m; ++i) self[i] = i;
    std::vector<int> deg = fold<DegreeRules::D>(F, DegreeRules{self, m});
    std::vector<int> N, P;
    for (int i = 0; i < m; ++i) (deg[i] >= kNotPoly ? N : P).push_back(i);
    if (P.empty()) return "";
    // Q_N: an orthonormal basis of the span of the N atoms' rows of L.
    int rN = 0;
    MatrixXd Q = MatrixXd::Identity(r, r);
    if (!N.empty()) {
      MatrixXd LN(r, (int)N.size());
      for (std::size_t j = 0; j < N.size(); ++j) LN.col((int)j) = in.L.row(N[j]).transpose();
      Eigen::ColPivHouseholderQR<MatrixXd> qr(LN);
      qr.setThreshold(1e-12);
      rN = (int)qr.rank();
      Q = qr.householderQ();
    }
    // From 2 outer (nonlinear) dimensions on the split does not pay (below).
    if (rN > 1) return "";
    int rP = r - rN;
    if (rP == 0) return "";
    MatrixXd R = in.L * Q.rightCols(rP);  // each atom's part in zeta
    for (int i : N) R.row(i).setZero();   // (roundoff: N atoms do not move with zeta)
    // Groups: P atoms joined where their zeta parts correlate.
    std::vector<int> group(m, -1);
    int G = 0;
    for (int i : P) {
      if (R.row(i).norm() == 0) continue;
      std::vector<int> joined;
      for (int j : P)
        if (group[j] >= 0 && std::abs(R.row(i).dot(R.row(j))) > 1e-12 * R.row(i).norm() * R.row(j).norm())
          joined.push_back(group[j]);
      int g = joined.empty() ? G++ : joined[0];
      for (int h : joined)
        for (int& x : group)
          if (x == h) x = g;
      group[i] = g;
    }
    std::vector<int> D = fold<DegreeRules::D>(F, DegreeRules{group, G});
    // Each group's subspace (an orthonormal basis B_c, rP x r_c) and order.
    std::vector<MatrixXd> basis;
    std::vector<int> order;
    double M = 1;
    int most_order = 0;
    for (int c = 0; c < G; ++c) {
      std::vector<int> rows;
      for (int i : P)
        if (group[i] == c) rows.push_back(i);
      if (rows.empty()) continue;
      MatrixXd Rc(rP, (int)rows.size());
      for (std::size_t j = 0; j < rows.size(); ++j) Rc.col((int)j) = R.row(rows[j]).transpose();
      Eigen::ColPivHouseholderQR<MatrixXd> qr(Rc);
      qr.setThreshold(1e-12);
      int rc = (int)qr.rank();
      MatrixXd Qc = qr.householderQ();
      basis.push_back(Qc.leftCols(rc));
      order.push_back(D[c] / 2 + 1);
      most_order = std::max(most_order, order.back());
      M *= std::pow(double(order.back()), rc);
    }
    // Every outer node costs M evaluations. In 1-d the outer rules take up to
    // ~2^14 nodes (more where an adaptive rule splits at kinks, pointwise), and
    // the split is made where M times that stays within ~2^26 evaluations.
    // From 2 outer dimensions on, the outer rules cost too much at any M > 1:
    // a 2-d outer rule that falls back to nested Gauss-Kronrod (millions of
    // nodes) doubled `netsor limit programs/ntk_mlp_train.tp` (17 s -> 33 s of
    // CPU), and 3-d outer rules made 4-5-d calibration cases 30-40x slower,
    // where the full-dimensional rules answer in a tenth of a second. Those
    // integrands keep the rules of their full dimension.
    bool kinked = any_node(F, [](const Expr& e) { return non_smooth_at_zero(e.get()); });
    double most = rN == 0 ? double(1 << 22) : kinked ? double(1 << 8) : double(1 << 12);
    if (most_order > 40 || M > most || M * m > double(1 << 24)) return "";
    // The product rule over the groups' subspaces, as each atom's shift.
    long count = (long)M;
    in.atom_inner = MatrixXd::Zero(m, count);
    in.weight = VectorXd::Ones(count);
    long stride = 1;
    int dims = 0;
    for (std::size_t c = 0; c < basis.size(); ++c) {
      const quad::Rule& g = quad::gauss_hermite(order[c]);
      MatrixXd shift = R * basis[c];  // m x r_c
      for (int d = 0; d < basis[c].cols(); ++d, ++dims) {
        for (long j = 0; j < count; ++j) {
          int a = int((j / stride) % order[c]);
          in.atom_inner.col(j) += shift.col(d) * g.x[a];
          in.weight(j) *= g.w[a];
        }
        stride *= order[c];
      }
    }
    in.L = MatrixXd(in.L * Q.leftCols(rN));
    in.r = rN;
    std::ostringstream s;
    s << "Gauss-Hermite exact in " << dims << " polynomial direction" << (dims > 1 ? "s" : "") << " (orders";
    for (std::size_t c = 0; c < basis.size(); ++c) s << (c ? ", " : " ") << order[c] << "^" << basis[c].cols();
    s << ")";
    return s.str();
  }

  // Every direction polynomial: the inner rule alone, exact up to rounding.
  Term exact_sum(const Integrand& in, const std::string& method) const {
    std::vector<Eigen::ArrayXd> base(in.m);
    for (int i = 0; i < in.m; ++i) base[i] = Eigen::ArrayXd::Constant(1, in.mean(i));
    double v = in.values(base)(0), size = in.values(base, true)(0);
    return {v, 4e-16 * (in.m + 1) * size, method};
  }

  static constexpr double kFeatureStd = 4.0;

  static bool non_smooth_at_zero(const ExprNode* n) {
    double p;
    if (n->op == ExprOp::Call) return is_kinked(n->fn) || n->fn == Fn::Sqrt || n->fn == Fn::Log;
    if (n->op == ExprOp::Pow) return !is_const(n->b, &p) || p < 0 || p != std::floor(p);
    return false;
  }

  void find_kinks(const Expr& F, Integrand& in) {
    auto add_plane = [&](int atom) {
      quad::Hyperplane h;
      h.offset = in.mean(atom);
      h.normal.resize(in.r);
      for (int j = 0; j < in.r; ++j) h.normal[j] = in.L(atom, j);
      for (const auto& k : in.kinks)
        if (k.offset == h.offset && k.normal == h.normal) return;
      in.kinks.push_back(h);
    };
    std::vector<std::pair<const ExprNode*, bool>> stack{{F.get(), false}};  // (node, under a nonlinearity)
    std::set<std::pair<const ExprNode*, bool>> seen;
    while (!stack.empty()) {
      auto [n, under] = stack.back();
      stack.pop_back();
      if (!seen.insert({n, under}).second) continue;
      if (non_smooth_at_zero(n)) {
        if (n->a->op == ExprOp::Var) add_plane(n->a->var);
        else in.unknown_kink = true;
      }
      if (n->op == ExprOp::Var && under && in.L.row(n->var).norm() > kFeatureStd) {
        add_plane(n->var);
        in.has_features = true;
      }
      bool below = under || n->op == ExprOp::Call;
      if (n->a) stack.push_back({n->a.get(), below});
      if (n->b) stack.push_back({n->b.get(), below});
    }
  }

  // A random rotation of the standard coordinates (the integral is invariant):
  // the same rule on rotated nodes is an independent estimate for a smooth
  // integrand (errors of product and sparse rules are tied to the axes).
  MatrixXd rotated(const MatrixXd& L, int r) const {
    std::mt19937_64 rng(opt_.seed * 0x9E3779B97F4A7C15ULL + (std::uint64_t)r);
    std::normal_distribution<double> N;
    MatrixXd A(r, r);
    for (int i = 0; i < r; ++i)
      for (int j = 0; j < r; ++j) A(i, j) = N(rng);
    Eigen::HouseholderQR<MatrixXd> qr(A);
    return L * MatrixXd(qr.householderQ());
  }

  static bool agree(const quad::Result& a, const quad::Result& b) {
    double floor = 1e-14 * std::max({1.0, std::abs(a.value), std::abs(b.value)});
    return std::abs(a.value - b.value) <= a.abs_error + b.abs_error + floor;
  }

  quad::Result qmc(const Integrand& in, int points) const {
    return quad::randomized_qmc_batch(in.batch(in.L), in.r, opt_.seed, 16, points);
  }

  // The integral, by the rule that suits its dimension and smoothness, and
  // checked by a second estimate of another family (primer section 2: one
  // rule's own refinement is not evidence in several dimensions):
  //   1-d smooth:  Gauss-Hermite, checked by adaptive Gauss-Kronrod;
  //   2-d smooth:  Gauss-Hermite, checked by the same order in rotated coordinates;
  //   <= 3-d with known kinks or scale features: Gauss-Kronrod split there,
  //                checked by tanh-sinh on the same pieces (<= 2-d) or by
  //                randomized QMC (3-d);
  //   3..10-d smooth: tensor Gauss-Hermite or a sparse grid, checked by the
  //                rotated rule and randomized QMC;
  //   otherwise:   randomized QMC, whose 16 independent randomizations are
  //                their own check.
  // A failed check means the deterministic rule's error bar cannot be
  // trusted: randomized QMC with more points decides, with its own error.
  quad::Result integrate(const Integrand& in) const {
    int r = in.r;
    bool smooth = in.kinks.empty() && !in.unknown_kink;
    double tol = std::max(opt_.tol, 1e-14);
    auto batch = in.batch(in.L);
    if (smooth && r <= 2) {
      quad::Result q = quad::tensor_gauss_hermite_batch(batch, r, tol);
      quad::Result c = r == 1 ? quad::nested_gauss_kronrod(in.pointwise(), 1, {}, tol, 200'000)
                              : rotated_rule(in, q, tol);
      if (q.converged && c.converged && agree(q, c)) return checked(q);
      // Disagreement, or Gauss-Hermite did not converge: the adaptive rule
      // (which localizes what a global rule misses) decides.
      if (r == 2) c = quad::nested_gauss_kronrod(in.pointwise(), 2, {}, tol, 20'000'000);
      if (!c.converged) return qmc(in, 1 << 15);
      if (q.converged) c.abs_error = std::max(c.abs_error, std::abs(q.value - c.value));
      return c;
    }
    if (!smooth && (r <= 2 || (r == 3 && !in.unknown_kink))) {
      quad::Result q = quad::nested_gauss_kronrod(in.pointwise(), r, in.kinks, r == 3 ? std::max(tol, 1e-9) : tol,
                                                  r == 3 ? 4'000'000 : 20'000'000);
      if (!q.converged) return qmc(in, 1 << 15);
      if (in.has_features) q.method += " (scale features)";
      if (r == 3) return qmc_checked(in, q);
      return kronrod_checked(in, q, tol);
    }
    if (smooth && r <= 10) {
      // (Logged from 5-d on, where the rules below cost the most.)
      std::size_t logged = log_ && r > 4 ? log_->next++ : 0;
      if (log_ && r > 4 && log_->replay && logged < log_->qmc.size() && log_->qmc[logged]) return qmc(in, 1 << 15);
      auto give_up = [&] {
        if (log_ && r > 4 && !log_->replay) {
          log_->qmc.resize(std::max(log_->qmc.size(), logged + 1));
          log_->qmc[logged] = true;
        }
        return qmc(in, 1 << 15);
      };
      // Tensor Gauss-Hermite (<= 6-d) or a sparse grid, once converged; an
      // unconverged sparse grid's self-estimate is not trusted (its levels can
      // agree far from the value): QMC then, unless the tensor rule came close.
      double owed = r <= 4 ? 1e-6 : 1e-4;
      quad::Result t = r <= kTensorDims ? quad::tensor_gauss_hermite_batch(batch, r, tol, 0, r <= 4 ? 0 : owed)
                                        : quad::Result{};
      quad::Result q = t;
      if (!q.converged) q = quad::sparse_grid(batch, r, std::max(tol, 1e-10), 200'000);
      // A tensor rule short of `tol` whose last two orders still agree to 1e-6
      // in <= 4-d, 1e-4 in 5-6-d (what a smooth integrand there is owed) is far
      // better than QMC's ~1e-3. Its error: the geometric decay of its
      // differences where they decay (else the last difference), checked by
      // randomized QMC, a rule of another family. (The rotated rule is no check
      // here: at an order short of convergence it is the worse of the two
      // orientations.)
      if (!q.converged && r <= kTensorDims && std::isfinite(t.value) &&
          t.abs_error <= owed * std::max(1.0, std::abs(t.value))) {
        q = t;
        q.method += " (short of the tolerance: orders differ by " + fmt(t.abs_error) + ")";
        q.abs_error = std::min(t.abs_error, t.geometric_error);
        return qmc_checked(in, q);
      }
      if (!q.converged) return give_up();
      quad::Result c = rotated_rule(in, q, tol);
      if (!agree(q, c)) q.abs_error = std::max(q.abs_error, 2 * std::abs(q.value - c.value));
      return qmc_checked(in, q);
    }
    return qmc(in, 1 << 15);
  }

  // Gauss-Kronrod's own estimate (|Kronrod - Gauss|) is far too large where
  // a piece ends at a square-root-type singularity; tanh-sinh on the same
  // pieces is a rule of another family. Where the two agree within
  // Gauss-Kronrod's bound, twice their difference is the error (two
  // independent rules agreeing to d); else Gauss-Kronrod's bound stands.
  quad::Result kronrod_checked(const Integrand& in, quad::Result q, double tol) const {
    quad::Result t = quad::nested_gauss_kronrod(in.pointwise(), in.r, in.kinks, tol, 2'000'000, true);
    double d = std::abs(q.value - t.value);
    if (t.converged && std::isfinite(t.value) && d <= q.abs_error) {
      q.abs_error = std::max({2 * d, t.abs_error, 1e-15 * std::max(1.0, std::abs(q.value))});
      q.method += ", checked by tanh-sinh";
    }
    return q;
  }

  // The converged rule again, at the same order or level, on rotated nodes.
  quad::Result rotated_rule(const Integrand& in, const quad::Result& q, double tol) const {
    MatrixXd LR = rotated(in.L, in.r);
    bool sparse = q.method.rfind("sparse", 0) == 0;
    quad::Result c = sparse ? quad::sparse_grid(in.batch(LR), in.r, tol, 2'000'000, q.order)
                            : quad::tensor_gauss_hermite_batch(in.batch(LR), in.r, tol, q.order);
    c.abs_error = 2 * q.abs_error;  // the same rule: as accurate as the original
    return c;
  }

  static quad::Result checked(quad::Result q) {
    q.method += ", checked";
    return q;
  }

  // A deterministic estimate against randomized QMC: agreement keeps it (or
  // the QMC value, where that is the more accurate); disagreement asks QMC with
  // 8x the points, whose value is reported if the disagreement stands.
  quad::Result qmc_checked(const Integrand& in, quad::Result q) const {
    quad::Result c = qmc(in, 1 << 12);
    if (agree(q, c) && q.abs_error <= c.abs_error) return checked(q);
    quad::Result f = qmc(in, 1 << 15);
    if (agree(q, f)) return q.abs_error <= f.abs_error ? checked(q) : f;
    f.method += " (a " + q.method + " disagreed: " + fmt(q.value) + ")";
    return f;
  }

  static std::string fmt(double v) {
    std::ostringstream s;
    s.precision(6);
    s << v;
    return s.str();
  }
};

}  // namespace

Estimate MasterExpectation::expect(const Expr& f, const GaussianLaw& law) const {
  Engine e(f, law, opt_, log_);
  return e.run();
}

}  // namespace netsor::limit
