// The sampled evaluator of the Z calculus: every Z of the program on one set
// of points, in program order (docs/accuracy.md, "Sampled limits").
//
// Every Gaussian leaf (an initial vector, or the Zhat of a MatMul) gets its
// own coordinate of a Sobol sequence, mapped to a standard normal xi. The
// points are M per randomization, in R randomizations that scramble the same
// M-point net independently (nested uniform, "Owen", scrambling). On each
// randomization the Z rules (primer section 2) run on the points:
//
//   Init    Z = mean + A xi, A A' the family's covariance
//   MatMul  Zhat_k = sum_i L_ki xi_i: L is the Cholesky factor of the
//           family's covariance sigma^2 E[Z^{x_i} Z^{x_j}], grown one row per
//           product from the moments on the same points (Gram-Schmidt);
//           Zdot = sigma^2 sum_j E[dZ^x / dZhat_j] Z^{y_j} over the opposite
//           family, the expectations by Gaussian integration by parts in the
//           whitened leaves: E[xi_i Z^x] = sum_j L_ji E[dZ^x / dZhat_j]
//           (no derivative of phi, so step/sign/relu' need no delta terms)
//   Nonlin  Z = phi(Z...) through the evaluation tape, chunk by chunk
//   Moment  the mean over the randomization's points
//
// Every scalar is thereby computed R times independently; the report is the
// mean of the R values and its error three standard errors of that mean (t
// with R - 1 degrees of freedom: 16 randomizations put 3 s.e. at ~99%).
// Everything upstream (covariances, Zdot coefficients, moments feeding later
// steps) is inside each randomization, so the spread carries it: nothing is
// propagated separately. The cost is O(M R) per instruction plus O(k M R) for
// the k-th product by a matrix; the orders of n are the deterministic path's
// order analysis (order.cpp), run per randomization with its scalar values.
#include "sampled.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <boost/math/special_functions/erf.hpp>
#include <boost/random/sobol.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>
#include <thread>

#include "netsor/free_probability.hpp"
#include "netsor/tape.hpp"
#include "order.hpp"
#include "zstate.hpp"

namespace netsor::limit {

namespace {

std::uint64_t mix(std::uint64_t z) {  // a 64-bit finalizer (splitmix64's)
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint32_t reverse_bits(std::uint32_t x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}

// Direction numbers v_k = m_k 2^{31-k} of Sobol coordinate d, from the
// primitive polynomials and initial m of Joe and Kuo (Boost's table), by the
// recurrence of Bratley and Fox: for x^s + a_1 x^{s-1} + ... + a_{s-1} x + 1,
// m_k = m_{k-s} xor 2^s m_{k-s} xor (xor over j < s of 2^j a_j m_{k-j}).
std::array<std::uint32_t, 32> directions(int d) {
  std::array<std::uint32_t, 32> v{};
  if (d == 0) {
    for (int k = 0; k < 32; ++k) v[k] = 1u << (31 - k);
    return v;
  }
  using Table = boost::random::detail::qrng_tables::sobol;
  if (d >= (int)Table::max_dimension) throw std::out_of_range("Sobol dimension");
  unsigned poly = Table::polynomial(d - 1);
  int s = std::bit_width(poly) - 1;
  std::array<std::uint32_t, 32> m{};
  for (int k = 0; k < 32; ++k) {
    if (k < s) {
      m[k] = Table::minit(d - 1, k);
      continue;
    }
    m[k] = m[k - s] ^ (m[k - s] << s);
    for (int j = 1; j < s; ++j)
      if ((poly >> (s - j)) & 1u) m[k] ^= m[k - j] << j;
  }
  for (int k = 0; k < 32; ++k) v[k] = m[k] << (31 - k);
  return v;
}

using DoublePolicy = boost::math::policies::policy<boost::math::policies::promote_double<false>>;

}  // namespace

void scrambled_sobol(int d, std::uint64_t key, std::uint32_t begin, std::uint32_t end, double* u) {
  auto v = directions(d);
  // Owen's scrambling permutes the digits of each coordinate, each digit by a
  // choice that depends on the digits before it. Bit-reversed, "before" is
  // "below": adding a constant and x ^= x * c for an even c change bit i by a
  // function of the bits below i only, and are bijections; three rounds with
  // keyed constants make the permutation.
  std::uint32_t add[3], mul[3];
  std::uint64_t h = key;
  for (int k = 0; k < 3; ++k) {
    h = mix(h);
    add[k] = std::uint32_t(h);
    mul[k] = std::uint32_t(h >> 32) & ~1u;
  }
  std::uint32_t x = 0, gray = begin ^ (begin >> 1);
  for (int b = 0; b < 32; ++b)
    if ((gray >> b) & 1u) x ^= v[b];
  for (std::uint32_t i = begin; i < end; ++i) {
    if (i > begin) x ^= v[std::countr_zero(i)];  // Gray-code order: the same set of 2^k points
    std::uint32_t y = x;
    if (key) {
      y = reverse_bits(y);
      for (int k = 0; k < 3; ++k) {
        y += add[k];
        y ^= y * mul[k];
      }
      y = reverse_bits(y);
    }
    u[i - begin] = (double(y) + 0.5) * 0x1p-32;
  }
}

namespace {

using ir::Op;
using ir::VarId;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Work split into fixed chunks of points: each chunk's result is the same
// whichever thread computes it, and sums are taken chunk by chunk in order, so
// the numbers do not depend on the number of threads.
class Chunks {
 public:
  Chunks(int threads) : threads_(std::max(1, threads)) {}
  template <class F>
  void each(int n, const F& f) const {
    int t = std::min(threads_, n);
    if (t <= 1) {
      for (int c = 0; c < n; ++c) f(c);
      return;
    }
    std::atomic<int> next{0};
    auto work = [&] {
      for (int c; (c = next++) < n;) f(c);
    };
    std::vector<std::thread> pool;
    for (int i = 1; i < t; ++i) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
  }

 private:
  int threads_;
};

// tanh through exp: Eigen vectorizes exp for doubles but not tanh (libm's
// scalar tanh was half of this evaluator's time on training programs);
// 1 - 2 / (exp(2 z) + 1) is within ~2e-16 of tanh z in absolute terms (and
// exactly +-1 where exp overflows or underflows), far below any sampling error.
Expr vectorizable(const Expr& e, std::map<const ExprNode*, Expr>& memo) {
  if (!e || e->op == ExprOp::Const || e->op == ExprOp::Var) return e;
  auto it = memo.find(e.get());
  if (it != memo.end()) return it->second;
  Expr a = vectorizable(e->a, memo), b = vectorizable(e->b, memo), out;
  switch (e->op) {
    case ExprOp::Add: out = add(a, b); break;
    case ExprOp::Sub: out = sub(a, b); break;
    case ExprOp::Mul: out = mul(a, b); break;
    case ExprOp::Div: out = div(a, b); break;
    case ExprOp::Pow: out = pow(a, b); break;
    case ExprOp::Neg: out = neg(a); break;
    case ExprOp::Call:
      out = e->fn == Fn::Tanh ? sub(constant(1.0), div(constant(2.0), add(call(Fn::Exp, mul(constant(2.0), a)), constant(1.0))))
                              : call(e->fn, a);
      break;
    default: out = e;
  }
  return memo[e.get()] = out;
}

class Sampler {
 public:
  Sampler(const ir::Program& p, const Options& o, int points)
      : p_(p), o_(o), M_(points), R_(std::max(2, o.randomizations)), chunk_(std::min(points, 2048)),
        N_(std::size_t(points) * R_), nchunks_(int(N_ / chunk_)),
        pool_(o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency())), s_(p.vars.size()),
        Z_(p.vars.size()), val_(p.vars.size()), varies_(p.vars.size(), false), keep_(p.vars.size(), false),
        last_(p.vars.size(), -1), init_done_(p.families.size(), false) {
    std::ostringstream m;
    m << "sampled (scrambled Sobol, M = " << M_ << " points x R = " << R_ << " randomizations, 3 s.e.)";
    method_ = m.str();
    for (std::size_t i = 0; i < p_.instrs.size(); ++i) {
      const auto& in = p_.instrs[i];
      if (in.op == Op::MatMul) keep_[in.arg] = true;  // later products by W, and by W^T, read it
      if (in.arg >= 0) last_[in.arg] = (int)i;
      if (in.expr)
        for (int id : free_vars(in.expr)) last_[id] = (int)i;
    }
    drop_at_.resize(p_.instrs.size());
    for (std::size_t v = 0; v < p_.vars.size(); ++v)
      if (p_.vars[v].def >= 0 && p_.vars[v].kind != ir::VarKind::Scalar && !keep_[v])
        drop_at_[std::max(last_[v], p_.vars[v].def)].push_back((VarId)v);
  }

  Result run() {
    auto shown = Clock::now();
    for (std::size_t i = 0; i < p_.instrs.size(); ++i) {
      const auto& in = p_.instrs[i];
      switch (in.op) {
        case Op::Init: init(in); break;
        case Op::MatMul: matmul(in); break;
        case Op::Nonlin: nonlin(in); break;
        case Op::Moment: moment(in); break;
        case Op::Scalar: scalar(in); break;
        case Op::Width: width(in); break;
        case Op::Trace: trace(in); break;
        case Op::Apply: break;  // refused in compute()
      }
      release((int)i);
      if (o_.progress && seconds_since(shown) > 0.25) {
        shown = Clock::now();
        std::ostringstream m;
        m << "sampled limit, M = " << M_ << " x R = " << R_ << ": instruction " << i + 1 << "/" << p_.instrs.size();
        o_.progress(m.str());
      }
    }
    Result r;
    for (const auto& rep : p_.reports) r.quantities.push_back(reported_quantity(s_, rep));
    for (std::size_t v = 0; v < p_.vars.size(); ++v)
      if (s_.scalar[v]) r.scalars.emplace_back((VarId)v, *s_.scalar[v]);
    r.numeric_rel_error = 0;
    for (const auto& q : r.quantities)
      if (q.estimate.abs_error > 0)
        r.numeric_rel_error = std::max(r.numeric_rel_error, q.estimate.abs_error / std::max(std::abs(q.estimate.value), 1e-300));
    return r;
  }

 private:
  // A Gaussian family of MatMul leaves (all products by W, or by W^T).
  struct Family {
    double scale = 1;
    std::vector<Eigen::ArrayXd> xi;          // each leaf's own normal coordinate
    std::vector<VarId> arg;                  // the vector it multiplied
    std::vector<std::vector<std::vector<double>>> L;  // [randomization][leaf]: Zhat = sum L xi
  };

  const ir::Program& p_;
  Options o_;
  int M_, R_, chunk_;
  std::size_t N_;
  int nchunks_;
  Chunks pool_;
  VarState s_;
  std::vector<Eigen::ArrayXd> Z_;             // a vector's (leading) Z on all M R points
  std::vector<std::vector<double>> val_;      // a scalar's value in each randomization
  std::vector<bool> varies_;                  // the scalar's value differs across randomizations
  std::vector<bool> keep_;                    // MatMul arguments: kept to the end
  std::vector<int> last_;                     // the last instruction that reads a vector
  std::vector<std::vector<VarId>> drop_at_;  // the vectors to release after each instruction
  std::vector<bool> init_done_;
  std::vector<Family> fam_;
  std::map<std::pair<VarId, bool>, int> fam_of_;
  int dims_ = 0;  // Sobol coordinates used
  // Released arrays, reused: a fresh allocation of M R doubles is fresh pages
  // from the kernel, whose zeroing cost more than the arithmetic at large M.
  std::vector<Eigen::ArrayXd> spare_;
  Eigen::ArrayXd fresh() {
    if (spare_.empty()) return Eigen::ArrayXd(N_);
    Eigen::ArrayXd a = std::move(spare_.back());
    spare_.pop_back();
    return a;
  }
  std::string method_;

  const std::string& name(VarId v) const { return p_.vars[v].name; }
  int block(int c) const { return int(std::size_t(c) * chunk_ / M_); }

  // A new leaf's normals: Sobol coordinate dims_, each randomization scrambled by its own key.
  Eigen::ArrayXd normals() {
    int d = dims_++;
    if (d >= (int)boost::random::detail::qrng_tables::sobol::max_dimension)
      throw std::runtime_error("the sampled evaluator has Sobol coordinates for 3667 Gaussian leaves; this program has more");
    Eigen::ArrayXd out = fresh();
    pool_.each(nchunks_, [&](int c) {
      int r = block(c);
      std::uint32_t begin = std::uint32_t(std::size_t(c) * chunk_ - std::size_t(r) * M_);
      std::uint64_t key = mix(o_.seed ^ mix(std::uint64_t(d) * 0x100000001B3ULL + std::uint64_t(r) + 1));
      double* u = out.data() + std::size_t(c) * chunk_;
      scrambled_sobol(d, key | 1, begin, begin + chunk_, u);
      for (int i = 0; i < chunk_; ++i) u[i] = -std::sqrt(2.0) * boost::math::erfc_inv(2.0 * u[i], DoublePolicy());
    });
    return out;
  }

  const Eigen::ArrayXd& z_of(VarId v) {
    if (Z_[v].size() == 0) {
      if (std::isinf(s_.order[v]) && s_.order[v] < 0) Z_[v] = Eigen::ArrayXd::Zero(N_);  // zero at every order
      else throw std::logic_error("sampled limit: the Z of '" + name(v) + "' was released before its last use");
    }
    return Z_[v];
  }

  // The estimate of a scalar from its R values.
  Estimate combined(const std::vector<double>& v) const {
    double mean = 0, var = 0;
    for (double x : v) mean += x;
    mean /= R_;
    for (double x : v) var += (x - mean) * (x - mean);
    var /= (R_ - 1);
    return {mean, 3 * std::sqrt(var / R_), method_, {}};
  }

  // The leading order of an instruction's expression, with the scalar values
  // of randomization r (r < 0: their means, for the order and the decisions).
  Lead lead(const ir::Instr& in, int r) {
    std::vector<std::pair<int, double>> saved;
    if (r >= 0)
      for (int id : free_vars(in.expr))
        if (varies_[id] && s_.scalar[id]) {
          saved.emplace_back(id, s_.scalar[id]->value);
          s_.scalar[id]->value = val_[id][r];
        }
    Carried carried;
    Lead l = OrderAnalysis(p_, s_, in, carried).lead(in.expr);
    for (auto& [id, v] : saved) s_.scalar[id]->value = v;
    return l;
  }
  bool any_varies(const ir::Instr& in) const {
    for (int id : free_vars(in.expr))
      if (varies_[id]) return true;
    return false;
  }
  // The leading expression in each randomization (the same one when no scalar in it varies).
  std::vector<Lead> leads(const ir::Instr& in, const Lead& common) {
    std::vector<Lead> ls(R_, common);
    if (any_varies(in))
      for (int r = 0; r < R_; ++r) ls[r] = lead(in, r);
    return ls;
  }

  // f(c, tape, inputs, out): the leading expressions evaluated on chunk c.
  template <class F>
  void evaluate(const std::vector<Lead>& ls, const F& f) {
    std::vector<int> ids;
    for (const auto& l : ls) {
      auto fv = free_vars(l.e);
      ids.insert(ids.end(), fv.begin(), fv.end());
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<const Eigen::ArrayXd*> z;
    for (int id : ids) z.push_back(&z_of(id));
    auto slot = [&](int id) { return int(std::lower_bound(ids.begin(), ids.end(), id) - ids.begin()); };
    std::vector<Tape> tapes;
    bool same_expr = !std::any_of(ls.begin(), ls.end(), [&](const Lead& l) { return l.e != ls[0].e; });
    std::map<const ExprNode*, Expr> memo;
    for (int r = 0; r < (same_expr ? 1 : R_); ++r) tapes.emplace_back(vectorizable(ls[r].e, memo), slot);
    pool_.each(nchunks_, [&](int c) {
      std::vector<Eigen::ArrayXd> seg(ids.size());
      std::vector<const Eigen::ArrayXd*> in(ids.size());
      for (std::size_t k = 0; k < ids.size(); ++k) {
        seg[k] = z[k]->segment(std::size_t(c) * chunk_, chunk_);
        in[k] = &seg[k];
      }
      Eigen::ArrayXd v = tapes[same_expr ? 0 : block(c)].eval(in);
      if (v.size() != chunk_) v = Eigen::ArrayXd::Constant(chunk_, v(0));  // a constant expression
      f(c, v);
    });
  }

  // ---- Init: the members of a declared family, Z = mean + A xi.
  void init(const ir::Instr& in) {
    if (init_done_[in.family]) return;
    init_done_[in.family] = true;
    const ir::GaussianFamily& F = p_.families[in.family];
    int m = (int)F.members.size();
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(F.cov);
    Eigen::MatrixXd A = es.eigenvectors() * es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal();
    for (int i = 0; i < m; ++i) Z_[F.members[i]] = fresh().setConstant(F.mean(i));
    for (int j = 0; j < m; ++j) {
      Eigen::ArrayXd xi = normals();
      for (int i = 0; i < m; ++i)
        if (A(i, j) != 0) Z_[F.members[i]] += A(i, j) * xi;
      spare_.push_back(std::move(xi));
    }
  }

  int family(VarId matrix, bool transposed, double scale) {
    auto [it, fresh] = fam_of_.try_emplace({matrix, transposed}, (int)fam_.size());
    if (fresh) {
      fam_.emplace_back();
      fam_.back().scale = scale;
      fam_.back().L.resize(R_);
    }
    return it->second;
  }

  // Per randomization, the means over its points of a * b_k for each b_k.
  std::vector<std::vector<double>> means(const Eigen::ArrayXd& a, const std::vector<const Eigen::ArrayXd*>& b) {
    std::vector<double> part(std::size_t(nchunks_) * b.size());
    pool_.each(nchunks_, [&](int c) {
      auto x = a.segment(std::size_t(c) * chunk_, chunk_);
      for (std::size_t k = 0; k < b.size(); ++k)
        part[std::size_t(c) * b.size() + k] = (x * b[k]->segment(std::size_t(c) * chunk_, chunk_)).sum();
    });
    std::vector<std::vector<double>> out(R_, std::vector<double>(b.size(), 0.0));
    for (int c = 0; c < nchunks_; ++c)
      for (std::size_t k = 0; k < b.size(); ++k) out[block(c)][k] += part[std::size_t(c) * b.size() + k];
    for (auto& row : out)
      for (double& v : row) v /= M_;
    return out;
  }

  // ---- MatMul: Z^{Wx} = Zhat + Zdot, Zhat grown from the earlier ones by a fresh leaf.
  void matmul(const ir::Instr& in) {
    s_.order[in.out] = s_.order[in.arg];
    int f = family(in.matrix, in.transposed, zhat_scale(p_, in));
    auto gi = fam_of_.find({in.matrix, !in.transposed});
    int g = gi == fam_of_.end() ? -1 : gi->second;
    const Eigen::ArrayXd& x = z_of(in.arg);
    Family& F = fam_[f];
    int k = (int)F.xi.size();
    // One pass: E[Z^x Z^{x_j}] for the earlier products by W and itself,
    // and E[xi_i Z^x] for the leaves of W^T (integration by parts).
    std::vector<const Eigen::ArrayXd*> b;
    for (int j = 0; j < k; ++j) b.push_back(&z_of(F.arg[j]));
    b.push_back(&x);
    int kg = g < 0 ? 0 : (int)fam_[g].xi.size();
    for (int i = 0; i < kg; ++i) b.push_back(&fam_[g].xi[i]);
    auto mom = means(x, b);
    std::vector<std::vector<double>> coef(R_);  // Zdot: per randomization, the coefficient of Z^{y_j}
    for (int r = 0; r < R_; ++r) {
      auto& L = F.L[r];
      std::vector<double> row(k + 1, 0.0);
      double rest = F.scale * mom[r][k], var = rest;
      for (int i = 0; i < k; ++i) {
        if (L[i][i] == 0) continue;  // leaf i is a combination of earlier ones
        double c = F.scale * mom[r][i];
        for (int m = 0; m < i; ++m) c -= row[m] * L[i][m];
        row[i] = c / L[i][i];
        rest -= row[i] * row[i];
      }
      row[k] = rest > 1e-12 * var && var > 0 ? std::sqrt(rest) : 0.0;
      L.push_back(std::move(row));
      if (g < 0) continue;
      // E[xi_i Z^x] = sum_j L^G_ji d_j, d_j = E[dZ^x / dZhat^G_j]: back
      // substitution on the leaves that brought a coordinate of their own
      // (the others are combinations of them, and their Zdot terms with them).
      const auto& LG = fam_[g].L[r];
      std::vector<double> d(kg, 0.0);
      for (int i = kg - 1; i >= 0; --i) {
        if (LG[i][i] == 0) continue;
        double s = mom[r][k + 1 + i];
        for (int j = i + 1; j < kg; ++j) s -= LG[j][i] * d[j];
        d[i] = s / LG[i][i];
      }
      coef[r].resize(kg);
      for (int j = 0; j < kg; ++j) coef[r][j] = F.scale * d[j];
    }
    F.xi.push_back(normals());
    F.arg.push_back(in.arg);
    std::vector<const Eigen::ArrayXd*> y;
    for (int j = 0; j < kg; ++j) y.push_back(&z_of(fam_[g].arg[j]));
    Eigen::ArrayXd out = fresh();
    pool_.each(nchunks_, [&](int c) {
      int r = block(c);
      std::size_t at = std::size_t(c) * chunk_;
      auto o = out.segment(at, chunk_);
      o.setZero();
      const auto& row = F.L[r][k];
      for (int i = 0; i <= k; ++i)
        if (row[i] != 0) o += row[i] * F.xi[i].segment(at, chunk_);
      for (int j = 0; j < kg; ++j)
        if (coef[r][j] != 0) o += coef[r][j] * y[j]->segment(at, chunk_);
    });
    Z_[in.out] = std::move(out);
  }

  // ---- Nonlin: Z^y = phi(Z^x...; scalars)
  void nonlin(const ir::Instr& in) {
    check_bounded(p_, s_, in);
    Lead l = lead(in, -1);
    s_.order[in.out] = l.order;
    // (Not l.dropped, as the Z calculus now uses: with it, the rewrites re-derive
    // fewer differences from their definitions, and on tests/sampled's muP
    // program the 3-s.e. bars shrank by up to 20% with the same values, below
    // the independent reference's distance. Until that is understood, any
    // change from the expression, scalars replaced by their limits included.)
    s_.has_lower[in.out] = !same(l.e, in.expr);
    check_vector_growth(p_, s_, in);
    if (l.random) OrderAnalysis::refuse_random(p_, in, l);
    if (s_.has_lower[in.out]) keep_inputs(in.out, last_[in.out]);
    if (l.zero()) return;
    Eigen::ArrayXd out = fresh();
    evaluate(leads(in, l), [&](int c, const Eigen::ArrayXd& v) { out.segment(std::size_t(c) * chunk_, chunk_) = v; });
    Z_[in.out] = std::move(out);
  }

  // The order analysis inlines a vector whose definition had lower-order
  // terms where its leading term cancels (order.cpp): the inputs of that
  // definition live as long as the vector.
  void keep_inputs(VarId v, int until) {
    int d = p_.vars[v].def;
    if (d < 0 || !p_.instrs[d].expr) return;
    for (int id : free_vars(p_.instrs[d].expr)) {
      if (p_.vars[id].kind == ir::VarKind::Scalar || last_[id] >= until) continue;
      last_[id] = until;
      drop_at_[until].push_back(id);
      if (s_.has_lower[id]) keep_inputs(id, until);
    }
  }

  // Release the vectors no later instruction reads.
  void release(int i) {
    for (VarId v : drop_at_[i])
      if (last_[v] <= i && Z_[v].size()) {
        spare_.push_back(std::move(Z_[v]));
        Z_[v] = Eigen::ArrayXd();
      }
  }

  void set_scalar(VarId v, std::vector<double> vals, Estimate e) {
    varies_[v] = std::any_of(vals.begin(), vals.end(), [&](double x) { return x != vals[0]; });
    val_[v] = std::move(vals);
    s_.scalar[v] = std::move(e);
  }

  // A quantity zero to every order, settled by the order analysis.
  bool zero(const ir::Instr& in, const Lead& l) {
    s_.order[in.out] = l.order;
    if (!l.zero()) return false;
    set_scalar(in.out, std::vector<double>(R_, 0.0), Estimate{0.0, 0.0, "exact (zero to every order)", {}});
    return true;
  }

  // ---- Moment: theta = E phi(Z...), per randomization the mean over its points.
  void moment(const ir::Instr& in) {
    check_bounded(p_, s_, in);
    Lead l = lead(in, -1);
    if (zero(in, l)) return;
    if (l.random) OrderAnalysis::refuse_random(p_, in, l);
    std::vector<double> part(nchunks_);
    evaluate(leads(in, l), [&](int c, const Eigen::ArrayXd& v) { part[c] = v.sum(); });
    std::vector<double> theta(R_, 0.0);
    for (int c = 0; c < nchunks_; ++c) theta[block(c)] += part[c];
    for (double& t : theta) t /= M_;
    Estimate e = combined(theta);
    if (!std::isfinite(e.value) || !std::isfinite(e.abs_error))
      refuse(in, "the limit of '" + name(in.out) + "' is not finite: its master-theorem expectation diverges",
             "the integrand is not integrable under the Gaussian law of its arguments; check the nonlinearity");
    if (e.abs_error == 0 && !l.e->a && l.e->op == ExprOp::Const) e.method = "exact (constant)";
    // A moment of mean 0 (limit 0, size unknown): as in the Z rules.
    s_.fluct[in.out] = std::abs(e.value) <= e.abs_error + 1e-300;
    set_scalar(in.out, std::move(theta), e);
  }

  // ---- Scalar arithmetic, in each randomization.
  void scalar(const ir::Instr& in) {
    Lead l = lead(in, -1);
    if (zero(in, l)) return;
    if (l.random) {
      s_.random[in.out] = true;
      s_.random_why[in.out] = l.why;
      set_scalar(in.out, std::vector<double>(R_, 0.0),
                 Estimate{0.0, 0.0, "fluctuation (CLT scale) of '" + l.why + "'", {}});
      return;
    }
    auto ls = leads(in, l);
    std::vector<double> v(R_);
    for (int r = 0; r < R_; ++r) v[r] = netsor::evaluate(ls[r].e, [](int) { return 0.0; });
    Estimate e = combined(v);
    if (!any_varies(in)) {
      e = {v[0], std::abs(v[0]) * 1e-16, "exact (constant)", {}};
      for (int id : free_vars(in.expr))
        if (s_.scalar[id] && s_.scalar[id]->method.rfind("exact", 0) != 0) e.method = method_;
    }
    if (!std::isfinite(e.value) || !std::isfinite(e.abs_error))
      refuse(in, "the limit of '" + name(in.out) + "' is not finite (" + fmt(e.value) + " ± " + fmt(e.abs_error) + ")",
             "a division by a moment whose limit is 0?");
    s_.fluct[in.out] = e.value == 0 && !l.zero();
    set_scalar(in.out, std::move(v), e);
  }

  // tr(T) by the free-probability back end, as in the Z calculus. The sampler
  // has no Z expressions, so only operators without diagonals of vectors, and
  // with scale factors known exactly, are covered here.
  void trace(const ir::Instr& in) {
    ZView z;
    z.subst = [&](VarId v) -> Expr {
      if (p_.vars[v].kind != ir::VarKind::Scalar || !s_.scalar[v] || varies_[v] || std::abs(s_.order[v]) > kTol)
        throw FreeRefusal{"the sampled evaluator has no exact form for '" + p_.vars[v].name + "'",
                          "use --method quadrature for traces of operators built on program vectors or sampled scalars"};
      return constant(s_.scalar[v]->value);
    };
    try {
      Estimate e = free_trace(p_, in.op_node, z);
      set_scalar(in.out, std::vector<double>(R_, e.value), e);
    } catch (const FreeRefusal& r) {
      refuse(in, "no limit for this trace: " + r.message, r.hint);
    }
  }

  void width(const ir::Instr& in) {
    double w = p_.widths.at(in.member).ratio;
    set_scalar(in.out, std::vector<double>(R_, w), Estimate{w, 0.0, "exact (width)", {}});
    s_.order[in.out] = 1.0;
  }
};

// Leaf sets for integral_dimension, as bits: a linear iteration of T steps
// with transposes unites O(T^2) sets of O(T) leaves.
struct Deps {
  std::vector<std::uint64_t> w;
  bool has(int l) const { return l / 64 < (int)w.size() && (w[l / 64] >> (l % 64) & 1); }
  void insert(int l) {
    if (l / 64 >= (int)w.size()) w.resize(l / 64 + 1, 0);
    w[l / 64] |= std::uint64_t{1} << (l % 64);
  }
  void unite(const Deps& o) {
    if (w.size() < o.w.size()) w.resize(o.w.size(), 0);
    for (std::size_t i = 0; i < o.w.size(); ++i) w[i] |= o.w[i];
  }
  // |this ∪ o|
  int count_with(const Deps& o) const {
    int n = 0;
    for (std::size_t i = 0; i < std::max(w.size(), o.w.size()); ++i)
      n += std::popcount((i < w.size() ? w[i] : 0) | (i < o.w.size() ? o.w[i] : 0));
    return n;
  }
};

}  // namespace

int integral_dimension(const ir::Program& p) {
  std::vector<Deps> deps(p.vars.size());
  std::vector<bool> affine(p.vars.size(), true);
  std::map<std::pair<VarId, bool>, std::vector<std::pair<int, VarId>>> fam;  // leaf, argument
  int leaves = 0, dim = 0;
  auto integral = [&](int size) { dim = std::max(dim, size); };
  for (const auto& in : p.instrs) {
    switch (in.op) {
      case Op::Init: deps[in.out].insert(leaves++); break;
      case Op::MatMul: {
        VarId x = in.arg;
        int leaf = leaves++;
        Deps d;
        d.insert(leaf);
        bool aff = affine[x];
        for (const auto& [l, y] : fam[{in.matrix, !in.transposed}])
          if (deps[x].has(l)) {
            d.unite(deps[y]);
            aff = aff && affine[y];
          }
        if (!affine[x]) {  // Zhat's covariances and the Zdot expectations integrate Z^x
          integral(deps[x].count_with({}));
          for (const auto& [l, y] : fam[{in.matrix, in.transposed}]) integral(deps[x].count_with(deps[y]));
        }
        fam[{in.matrix, in.transposed}].push_back({leaf, x});
        deps[in.out] = std::move(d);
        affine[in.out] = aff;
        break;
      }
      case Op::Nonlin: case Op::Moment: {
        // Scalars as constants: affine in the vectors is what the exact algebra needs.
        Expr e = substitute(in.expr, [&](int id) {
          return p.vars[id].kind == ir::VarKind::Scalar ? constant(0.7390851332151607) : var(id);
        });
        std::vector<double> c;
        double off;
        bool aff = as_affine(e, c, off);
        Deps d;
        for (int id : free_vars(e)) {
          d.unite(deps[id]);
          aff = aff && affine[id];
        }
        if (in.op == Op::Nonlin) {
          deps[in.out] = d;
          affine[in.out] = aff;
        } else if (!aff) {
          // Polynomials of degree <= 2 in affine Z's are exact algebra; count the rest.
          bool poly = !any_node(e, [](const Expr& n) { return n->op == ExprOp::Call || n->op == ExprOp::Div; });
          bool inputs_affine = true;
          for (int id : free_vars(e)) inputs_affine = inputs_affine && affine[id];
          if (!(poly && inputs_affine)) integral(d.count_with({}));
        }
        break;
      }
      default: break;
    }
  }
  return dim;
}

Result compute_sampled(const ir::Program& p, const Options& o) {
  if (o.points > 0) {
    if (o.points < 2 || (o.points & (o.points - 1)))
      throw std::invalid_argument("the sampled evaluator's points per randomization must be a power of 2");
    Result r = Sampler(p, o, o.points).run();
    r.sampling = std::to_string(o.points) + " x " + std::to_string(std::max(2, o.randomizations)) + " points";
    return r;
  }
  auto start = Clock::now();
  for (int M = 4096;; M *= 2) {
    auto t = Clock::now();
    Result r = Sampler(p, o, M).run();
    double took = seconds_since(t), spent = seconds_since(start);
    double worst = 0;
    for (const auto& q : r.quantities)
      worst = std::max(worst, q.estimate.abs_error / std::max(std::abs(q.estimate.value), 1e-6));
    std::ostringstream m;
    m << M << " x " << std::max(2, o.randomizations) << " points, largest relative error " << fmt(worst);
    // The next doubling costs about twice this one.
    if (worst <= o.target) {
      r.sampling = m.str() + " (target " + fmt(o.target) + " reached in " + fmt(spent) + " s)";
      return r;
    }
    if (spent + 2.2 * took > o.budget || M >= (1 << 24)) {
      r.sampling = m.str() + " (target " + fmt(o.target) + " NOT reached: budget " + fmt(o.budget) + " s)";
      return r;
    }
  }
}

}  // namespace netsor::limit
