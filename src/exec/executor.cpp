// The finite-width executor (include/netsor/exec.hpp).
//
// Schedule: instructions are grouped by dependency level; within a level,
// products by the same matrix (and the same side, W or W^T) do not depend on
// each other and run as one GEMM. Matrices are sampled at their first use and
// freed after their last, and so are vectors; the peak is computed from the
// schedule before anything is allocated.
//
// Random numbers: entry (row, col) of every random object (matrix, Gaussian
// family) of every seed is a function of (base seed, seed index, object and
// width, col, row) alone (src/exec/random.hpp), so a seed fixes every number
// whatever the number of threads and however a matrix is split into panels.
//
// A matrix used by one batched product is never stored: its columns are
// generated a tile at a time and, for at most kThin vectors, multiplied in
// while they are in the L1 cache (thin_product, thin_product_t). The schedule
// and the memory model are in schedule.cpp.
#include "netsor/exec.hpp"

#include <unistd.h>

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>

#include "netsor/operators.hpp"
#include "netsor/tape.hpp"
#include "blas.hpp"
#include "operator_engine.hpp"
#include "random.hpp"
#include "schedule.hpp"

namespace netsor::exec {

std::int64_t dim_size(const ir::Program& p, const ir::Dim& d, std::int64_t n) {
  if (d.is_finite()) return d.finite;
  return std::max<std::int64_t>(1, std::llround(p.widths[d.width].ratio * double(n)));
}

namespace {

using ir::Op;
using ir::VarId;

constexpr int kBlock = 64;   // columns per task when a matrix is sampled in parallel
constexpr int kTile = 256;   // rows of a tile of the fused kernels (a multiple of kNormalChunk)
static_assert(kTile % kNormalChunk == 0);

// The largest dimension: a vector of 2^31 doubles is already 16 GiB, and
// converting a larger ratio * n to an integer can overflow.
constexpr double kMaxDim = 2147483648.0;

// Refuses a width whose ratio makes a dimension too large to round to an
// integer (`width m = 1e300 n`), before anything is computed from it.
void check_dims(const ir::Program& p, std::int64_t n) {
  for (std::size_t w = 0; w < p.widths.size(); ++w) {
    double size = p.widths[w].ratio * double(n);
    if (size <= kMaxDim) continue;
    // Located at the first variable of that width (cols count for matrices
    // only: a vector's are unset); the base width comes from the command line,
    // so its message points at no line.
    Diagnostic d;
    bool base = w == 0;
    for (const auto& v : p.vars) {
      bool rows = !v.rows.is_finite() && v.rows.width == (int)w;
      bool cols = v.kind == ir::VarKind::A && !v.cols.is_finite() && v.cols.width == (int)w;
      if (!base && (rows || cols)) {
        d.loc = v.loc;
        break;
      }
    }
    if (d.loc.file.empty() && !p.vars.empty()) d.loc.file = p.vars[0].loc.file;
    std::ostringstream m;
    m.precision(10);  // 2147483649 must not print as 2.14748e+09
    if (base) m << "width " << p.widths[w].name << " = " << n << " (from the command line)";
    else if (p.widths[w].ratio == 1) m << "width " << p.widths[w].name << " = " << n;
    else m << "width " << p.widths[w].name << " = " << p.widths[w].ratio << " n is " << size << " at n = " << n;
    m << ": more than 2^31 coordinates";
    d.message = m.str();
    d.hint = "every dimension must stay within 2^31 (2.1e9); use a smaller ratio or --width";
    throw ProgramError(d);
  }
}

// ------------------------------------------------------------ one seed

// Runs task(i) for i < count on up to `threads` threads (the calling one included).
template <class F>
void parallel_for(std::int64_t count, int threads, const F& task) {
  std::atomic<std::int64_t> next{0};
  auto work = [&] {
    for (std::int64_t i; (i = next++) < count;) task(i);
  };
  int t = int(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, count)));
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

// Fills a rows x cols matrix with the key's N(0, 1) entries. `first_col`
// places `out` within a larger matrix whose columns are streamed.
template <class M>
void fill_normal(M& out, std::uint64_t key, int threads, Eigen::Index first_col = 0) {
  const Eigen::Index cols = out.cols(), rows = out.rows();
  parallel_for((cols + kBlock - 1) / kBlock, threads, [&](std::int64_t b) {
    for (Eigen::Index c = b * kBlock; c < std::min(cols, (b + 1) * kBlock); ++c)
      normals(key, std::uint64_t(first_col + c), 0, rows, out.col(c).data());
  });
}

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

// The thin products: W X and W^T X for k <= kThin columns X, where `col(c,
// r0, len, buf)` gives rows [r0, r0 + len) of W's column c (generated into
// buf for a streamed W, or a pointer into a stored one). No packing: each
// element of W is read once, while it is in the L1 cache. Sums run in a fixed
// order whatever the number of threads.
//
// Y = scale W X: each tile of kTile rows accumulates its k outputs in place,
// W's columns four at a time.
template <class T, class Col>
Mat<T> thin_product(std::int64_t rows, T scale, const Mat<T>& X, int threads, const Col& col) {
  const std::int64_t cols = X.rows(), k = X.cols();
  Mat<T> Y(rows, k);
  parallel_for((rows + kTile - 1) / kTile, threads, [&](std::int64_t tile) {
    const std::int64_t r0 = tile * kTile, len = std::min<std::int64_t>(kTile, rows - r0);
    alignas(64) T acc[kThin][kTile] = {}, buf[4][kTile];
    static const T zero[kTile] = {};
    for (std::int64_t c0 = 0; c0 < cols; c0 += 4) {
      const T* w[4] = {zero, zero, zero, zero};
      const int g = int(std::min<std::int64_t>(4, cols - c0));
      for (int i = 0; i < g; ++i) w[i] = col(c0 + i, r0, len, buf[i]);
      for (std::int64_t j = 0; j < k; ++j) {
        T x[4] = {};
        for (int i = 0; i < g; ++i) x[i] = X(c0 + i, j) * scale;
        T* a = acc[j];
        for (std::int64_t r = 0; r < len; ++r) a[r] += w[0][r] * x[0] + w[1][r] * x[1] + w[2][r] * x[2] + w[3][r] * x[3];
      }
    }
    for (std::int64_t j = 0; j < k; ++j) std::copy(acc[j], acc[j] + len, &Y(r0, j));
  });
  return Y;
}

// Y = scale W^T X: each column of W, a tile at a time, dotted with the k
// columns of X (partial sums per row of a tile, then added in order).
template <class T, class Col>
Mat<T> thin_product_t(std::int64_t cols, T scale, const Mat<T>& X, int threads, const Col& col) {
  const std::int64_t rows = X.rows(), k = X.cols();
  Mat<T> Y(cols, k);
  parallel_for((cols + kBlock - 1) / kBlock, threads, [&](std::int64_t b) {
    alignas(64) T acc[kThin][kTile], buf[kTile];
    for (std::int64_t c = b * kBlock; c < std::min(cols, (b + 1) * kBlock); ++c) {
      for (std::int64_t j = 0; j < k; ++j) std::fill(acc[j], acc[j] + kTile, T(0));
      for (std::int64_t r0 = 0; r0 < rows; r0 += kTile) {
        const std::int64_t len = std::min<std::int64_t>(kTile, rows - r0);
        const T* w = col(c, r0, len, buf);
        for (std::int64_t j = 0; j < k; ++j) {
          const T* x = &X(r0, j);
          T* a = acc[j];
          for (std::int64_t r = 0; r < len; ++r) a[r] += w[r] * x[r];
        }
      }
      for (std::int64_t j = 0; j < k; ++j) {
        T sum = 0;
        for (int r = 0; r < kTile; ++r) sum += acc[j][r];
        Y(c, j) = sum * scale;
      }
    }
  });
  return Y;
}

class SeedRun {
 public:
  SeedRun(const ir::Program& p, const Schedule& s, const Options& o, std::uint64_t seed_index, int gen_threads)
      : p_(p), s_(s), o_(o), seed_(seed_index), threads_(gen_threads) {
    vec_.resize(p.vars.size());
    scal_.assign(p.vars.size(), 0.0);
    matd_.resize(p.vars.size());
    matf_.resize(p.vars.size());
    family_.resize(p.families.size());
    taken_.assign(p.families.size(), 0);
  }

  std::vector<double> run() {
    for (std::size_t lv = 0; lv < s_.levels.size(); ++lv) {
      for (const auto& g : s_.levels[lv]) {
        switch (g.op) {
          case Op::Init: for (int i : g.instrs) init(p_.instrs[i]); break;
          case Op::MatMul: matmul(g); break;
          case Op::Nonlin: for (int i : g.instrs) nonlin(p_.instrs[i]); break;
          case Op::Moment: for (int i : g.instrs) moment(p_.instrs[i]); break;
          case Op::Scalar: for (int i : g.instrs) scalar(p_.instrs[i]); break;
          case Op::Width:
            for (int i : g.instrs) scal_[p_.instrs[i].out] = double(size({p_.instrs[i].member, 0}));
            break;
          case Op::Apply: case Op::Trace: for (int i : g.instrs) operator_instr(p_.instrs[i]); break;
        }
      }
      release(lv);
    }
    if (o_.on_operators && !p_.spectra.empty()) o_.on_operators(int(seed_), operators());
    // A scalar that is not a number (1/(s-s), sqrt'(0)) is an error, named
    // at the first one in program order, not a NaN in the table.
    for (const auto& in : p_.instrs)
      if (p_.vars[in.out].kind == ir::VarKind::Scalar && !std::isfinite(scal_[in.out])) {
        Diagnostic d;
        d.loc = in.loc;
        std::ostringstream m;
        double v = scal_[in.out];
        m << "'" << p_.vars[in.out].name << "' is " << (std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf") << " at width " << o_.width << " (seed " << seed_
          << ")";
        d.message = m.str();
        d.hint = "a division by zero, a function or derivative outside its domain (log(0), sqrt'(0)), or values "
                 "beyond double range (an iteration that grows without bound)";
        throw ProgramError(d);
      }
    std::vector<double> out;
    for (const auto& r : p_.reports) out.push_back(scal_[r.var]);
    // Then each report's own estimator error (a Hutch++ trace's), 0 if exact.
    for (const auto& r : p_.reports) out.push_back(trace_sem_.count(r.var) ? trace_sem_.at(r.var) : 0.0);
    return out;
  }

 private:
  const ir::Program& p_;
  const Schedule& s_;
  const Options& o_;
  std::uint64_t seed_;
  int threads_;
  std::vector<Eigen::ArrayXd> vec_;
  std::vector<double> scal_;
  std::map<VarId, double> trace_sem_;  // Hutch++ standard errors of this seed's traces
  std::vector<Eigen::MatrixXd> matd_;
  std::vector<Eigen::MatrixXf> matf_;
  std::vector<Eigen::MatrixXd> poold_;  // storage of matrices released at the last level
  std::vector<Eigen::MatrixXf> poolf_;
  std::vector<Eigen::MatrixXd>& pool_of(std::vector<Eigen::MatrixXd>&) { return poold_; }
  std::vector<Eigen::MatrixXf>& pool_of(std::vector<Eigen::MatrixXf>&) { return poolf_; }
  std::vector<Eigen::MatrixXd> family_;  // sampled members, until all are taken
  std::vector<std::size_t> taken_;
  std::unique_ptr<OperatorEngine> ops_;  // operators over this seed's matrices and vectors

  OperatorEngine& operators() {
    if (!ops_)
      ops_ = std::make_unique<OperatorEngine>(OperatorInputs{
          &p_, o_.width, o_.seed, seed_, [this](VarId m) -> const Eigen::MatrixXd& { return matrix(m, matd_); },
          [this](VarId v) -> const Eigen::ArrayXd& { return vec_[v]; }, [this](VarId v) { return scal_[v]; },
          [this](VarId m, bool t, const Eigen::MatrixXd& X) { return operator_product(m, t, X); }});
    return *ops_;
  }

  // An operator's W X: streamed if run() chose so for memory, through the
  // fused thin kernels for a few columns (Lanczos, vectors), BLAS beyond.
  Eigen::MatrixXd operator_product(VarId m, bool transposed, const Eigen::MatrixXd& X) {
    const bool stream = s_.forced.count(m) && matd_[m].size() == 0;
    if (stream || X.cols() <= kThin) return product<double>(m, transposed, X, stream);
    return blas::gemm(matrix(m, matd_), transposed, X);
  }

  void operator_instr(const ir::Instr& in) {
    OperatorEngine& ops = operators();
    ops.set_location(in.loc);
    if (in.op == Op::Trace) {
      TraceEstimate t = ops.trace(in.op_node);
      scal_[in.out] = t.value;
      if (t.sem > 0) trace_sem_[in.out] = t.sem;
    }
    else vec_[in.out] = ops.apply(in.op_node, vec_[in.arg].matrix()).col(0).array();
  }

  std::int64_t size(const ir::Dim& d) const { return dim_size(p_, d, o_.width); }
  // Stream keys hash the object's name (FNV-1a), so that editing one part of
  // a program leaves the random objects of the rest unchanged.
  static std::uint64_t key(const std::string& kind, const std::string& name) {
    std::uint64_t h = 0xCBF29CE484222325ull;
    for (char c : kind + ":" + name) h = (h ^ std::uint8_t(c)) * 0x100000001B3ull;
    return h;
  }
  // The width is part of the key: runs at different widths are independent
  // samples, not prefixes of one another (which would correlate their errors).
  std::uint64_t matrix_object(VarId m) const { return key("matrix", p_.vars[m].name) ^ std::uint64_t(o_.width) * 0x9E3779B97F4A7C15ull; }
  std::uint64_t family_object(int f) const {
    return key("family", p_.vars[p_.families[f].members.at(0)].name) ^ std::uint64_t(o_.width) * 0x9E3779B97F4A7C15ull;
  }
  std::uint64_t matrix_key(VarId m) const { return stream_key(o_.seed, seed_, matrix_object(m)); }

  void release(std::size_t lv) {
    // A released matrix's storage is kept while a later matrix of the same
    // shape is still to be stored (fresh pages cost a fault each); peak_of
    // follows the same rule.
    for (const auto& [m, span] : s_.matrix_span)
      if (span.second == (int)lv) {
        if (matd_[m].size()) poold_.push_back(std::move(matd_[m]));
        if (matf_[m].size()) poolf_.push_back(std::move(matf_[m]));
        matd_[m] = Eigen::MatrixXd();
        matf_[m] = Eigen::MatrixXf();
      }
    auto wanted = [&](Eigen::Index rows, Eigen::Index cols) {
      for (const auto& [m, span] : s_.matrix_span)
        if (span.first > (int)lv && !s_.streamed(p_, m) && size(p_.vars[m].rows) == rows && size(p_.vars[m].cols) == cols) return true;
      return false;
    };
    std::erase_if(poold_, [&](const Eigen::MatrixXd& x) { return x.size() == 0 || !wanted(x.rows(), x.cols()); });
    std::erase_if(poolf_, [&](const Eigen::MatrixXf& x) { return x.size() == 0 || !wanted(x.rows(), x.cols()); });
    for (std::size_t v = 0; v < p_.vars.size(); ++v)
      if (s_.last_use[v] == (int)lv || (s_.last_use[v] < 0 && p_.vars[v].def >= 0 && s_.level_of[p_.vars[v].def] == (int)lv))
        vec_[v] = Eigen::ArrayXd();
  }

  void init(const ir::Instr& in) {
    const auto& f = p_.families[in.family];
    Eigen::MatrixXd& X = family_[in.family];
    if (X.size() == 0) {
      // Coordinates iid N(mean, cov): X = 1 mean^T + G L^T with cov = L L^T from
      // an eigendecomposition (cov may be singular).
      std::int64_t n = size(p_.vars[in.out].rows);
      std::int64_t k = (std::int64_t)f.members.size();
      Eigen::MatrixXd G(n, k);
      fill_normal(G, stream_key(o_.seed, seed_, family_object(in.family)), threads_);
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(f.cov);
      Eigen::MatrixXd L = es.eigenvectors() * es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal();
      X = G * L.transpose();
      X.rowwise() += f.mean.transpose();
    }
    vec_[in.out] = X.col(in.member).array();
    if (++taken_[in.family] == f.members.size()) X = Eigen::MatrixXd();
  }

  template <class M>
  const M& matrix(VarId m, std::vector<M>& store) {
    M& W = store[m];
    if (W.size() != 0) return W;
    const ir::Var& v = p_.vars[m];
    const ir::Matrix& spec = p_.matrix_of(m);
    std::int64_t rows = size(v.rows), cols = size(v.cols);
    auto& pool = pool_of(store);
    for (auto& spare : pool)
      if (spare.rows() == rows && spare.cols() == cols) {
        W.swap(spare);
        break;
      }
    W.resize(rows, cols);
    fill_normal(W, matrix_key(m), threads_);
    if (spec.dist == ir::MatrixDist::Orthogonal) {
      // Haar: Q of a Gaussian matrix's QR, with the signs of R's diagonal.
      Eigen::MatrixXd G = W.template cast<double>();
      Eigen::HouseholderQR<Eigen::MatrixXd> qr(G);
      Eigen::MatrixXd Q = qr.householderQ();
      Eigen::VectorXd d = qr.matrixQR().diagonal().array().sign();
      W = (Q * d.asDiagonal() * std::sqrt(spec.variance)).template cast<typename M::Scalar>();
    } else {
      // Entries N(0, var / fan_in) (primer section 1).
      W *= typename M::Scalar(std::sqrt(spec.variance / double(cols)));
    }
    return W;
  }

  template <class T>
  std::vector<Mat<T>>& stored() {
    if constexpr (std::is_same_v<T, float>) return matf_;
    else return matd_;
  }

  // Y = W X or W^T X at precision T. A streamed W (never stored) is generated
  // column by column into the thin kernels, or a panel of columns at a time
  // for more than kThin vectors: the same numbers as a stored W.
  template <class T>
  Eigen::MatrixXd product(VarId m, bool transposed, const Eigen::MatrixXd& X, bool stream) {
    const Mat<T> Xs = X.cast<T>();
    const bool thin = X.cols() <= kThin;
    if (!stream) {
      const Mat<T>& M = matrix(m, stored<T>());
      auto col = [&](std::int64_t c, std::int64_t r0, std::int64_t, T*) { return &M(r0, c); };
      if (thin)
        return (transposed ? thin_product_t<T>(M.cols(), T(1), Xs, threads_, col)
                             : thin_product<T>(M.rows(), T(1), Xs, threads_, col))
            .template cast<double>();
      return (transposed ? Mat<T>(M.transpose() * Xs) : Mat<T>(M * Xs)).template cast<double>();
    }
    const ir::Var& W = p_.vars[m];
    const std::int64_t rows = size(W.rows), cols = size(W.cols);
    const std::uint64_t key = matrix_key(m);
    const T scale = T(std::sqrt(p_.matrix_of(m).variance / double(cols)));
    // Entries scaled as a stored W's are (matrix()), so that the thin
    // kernels give a stored W's numbers bit for bit.
    auto col = [&](std::int64_t c, std::int64_t r0, std::int64_t len, T* buf) {
      normals(key, std::uint64_t(c), r0, len, buf);
      for (std::int64_t r = 0; r < len; ++r) buf[r] *= scale;
      return static_cast<const T*>(buf);
    };
    if (thin)
      return (transposed ? thin_product_t<T>(cols, T(1), Xs, threads_, col)
                         : thin_product<T>(rows, T(1), Xs, threads_, col))
          .template cast<double>();
    Mat<T> Y = Mat<T>::Zero(transposed ? cols : rows, X.cols()), panel;
    for (std::int64_t c0 = 0; c0 < cols; c0 += kPanel) {
      std::int64_t w = std::min<std::int64_t>(kPanel, cols - c0);
      panel.resize(rows, w);
      fill_normal(panel, key, threads_, c0);
      panel *= scale;
      if (transposed) Y.middleRows(c0, w).noalias() = panel.transpose() * Xs;
      else Y.noalias() += panel * Xs.middleRows(c0, w);
    }
    return Y.template cast<double>();
  }

  void matmul(const Group& g) {
    const ir::Var& W = p_.vars[g.matrix];
    std::int64_t in_dim = size(g.transposed ? W.rows : W.cols);
    Eigen::MatrixXd X(in_dim, (Eigen::Index)g.instrs.size());
    for (std::size_t j = 0; j < g.instrs.size(); ++j) X.col(j) = vec_[p_.instrs[g.instrs[j]].arg].matrix();
    const bool stream = s_.streamed(p_, g.matrix);
    Eigen::MatrixXd Y = o_.float32 ? product<float>(g.matrix, g.transposed, X, stream)
                                   : product<double>(g.matrix, g.transposed, X, stream);
    for (std::size_t j = 0; j < g.instrs.size(); ++j) vec_[p_.instrs[g.instrs[j]].out] = Y.col(j).array();
  }

  // Scalars enter as their values at this width; vectors through the tape.
  Eigen::ArrayXd coordinatewise(const ir::Instr& in) {
    Expr e = substitute(in.expr, [&](int id) -> Expr {
      return p_.vars[id].kind == ir::VarKind::Scalar ? constant(scal_[id]) : var(id);
    });
    std::vector<int> ids = free_vars(e);
    std::map<int, int> slot;
    std::vector<const Eigen::ArrayXd*> args;
    for (int id : ids) {
      slot[id] = (int)args.size();
      args.push_back(&vec_[id]);
    }
    Tape t(e, [&](int id) { return slot.at(id); });
    if (args.empty()) {
      // A constant expression: the vector is that constant.
      std::vector<double> work;
      return Eigen::ArrayXd::Constant(size(p_.vars[in.out].rows), t.eval(nullptr, work));
    }
    return t.eval(args);
  }

  void nonlin(const ir::Instr& in) { vec_[in.out] = coordinatewise(in); }

  void moment(const ir::Instr& in) {
    // (1/n_i) sum over the coordinates of the vectors' own width.
    bool any_vector = false;
    for (int id : free_vars(in.expr)) any_vector |= p_.vars[id].kind != ir::VarKind::Scalar;
    if (!any_vector) {
      scal_[in.out] = evaluate(in.expr, [&](int id) { return scal_[id]; });
      return;
    }
    scal_[in.out] = coordinatewise(in).mean();
  }

  void scalar(const ir::Instr& in) { scal_[in.out] = evaluate(in.expr, [&](int id) { return scal_[id]; }); }
};

}  // namespace

std::size_t default_memory_limit() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::size_t(8) << 30;
  return std::size_t(0.8 * double(pages) * double(page));
}

namespace {
std::size_t to_bytes(double b) { return b >= 18446744073709551615.0 ? SIZE_MAX : std::size_t(b); }

}  // namespace

std::size_t peak_bytes(const ir::Program& p, std::int64_t width, bool float32, std::size_t limit) {
  check_dims(p, width);
  Schedule s = make_schedule(p);
  return to_bytes(plan_memory(p, s, width, float32, limit ? limit : default_memory_limit()));
}

RunResult run(const ir::Program& p, const Options& o) {
  Schedule s = make_schedule(p);
  if (o.on_operators) s.spectrum_work = o.spectrum_work;
  RunResult res;
  res.width = o.width;
  res.seeds = o.seeds;
  check_dims(p, o.width);
  std::size_t limit = o.memory_limit ? o.memory_limit : default_memory_limit();
  const double stored = peak_of(p, s, o.width, o.float32);
  double peak = plan_memory(p, s, o.width, o.float32, limit);
  res.peak_bytes = to_bytes(peak);
  res.streamed_matrices = int(s.forced.size());
  if (peak > double(limit)) {
    Diagnostic d;
    if (!p.vars.empty()) d.loc.file = p.vars[0].loc.file;
    std::ostringstream m;
    auto bytes = [&](double b) {
      m << std::fixed;
      m.precision(0);
      m << b << " bytes (";
      m.precision(1);
      m << b / double(1ull << 30) << " GiB)";
    };
    m << "width " << o.width << " needs ";
    bytes(stored);
    m << " for one seed";
    if (peak < stored) {
      m << ", or ";
      bytes(peak);
      m << " with " << s.forced.size() << " of its matrices generated at every use instead of stored";
    }
    m << "; the memory limit is ";
    bytes(double(limit));
    d.message = m.str();
    d.hint = "use a smaller --width, --float32 for the matrices, or raise --memory";
    throw ProgramError(d);
  }
  int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  int concurrent = std::max(1, std::min({threads, o.seeds, int(limit / std::max<std::size_t>(res.peak_bytes, 1))}));
  res.concurrent = concurrent;
  int gen_threads = std::max(1, threads / concurrent);

  std::vector<std::vector<double>> values(o.seeds);
  std::atomic<int> next{0}, done{0};
  std::mutex mu;
  std::exception_ptr error;
  auto worker = [&] {
    for (int sd; (sd = next++) < o.seeds;) {
      try {
        values[sd] = SeedRun(p, s, o, std::uint64_t(sd), gen_threads).run();
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        return;
      }
      int d = ++done;
      if (o.progress) {
        std::lock_guard<std::mutex> lock(mu);
        o.progress(d, o.seeds);
      }
    }
  };
  if (o.progress) o.progress(0, o.seeds);  // the start, for the time left
  std::vector<std::thread> pool;
  for (int i = 1; i < concurrent; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);

  for (std::size_t q = 0; q < p.reports.size(); ++q) {
    QuantityStats st;
    st.name = p.reports[q].name;
    const std::size_t nq = p.reports.size();
    for (int sd = 0; sd < o.seeds; ++sd) {
      st.per_seed.push_back(values[sd][q]);
      st.estimator_sem += values[sd][nq + q] * values[sd][nq + q] / double(o.seeds) / double(o.seeds);
    }
    st.estimator_sem = std::sqrt(st.estimator_sem);
    double mean = 0;
    for (double v : st.per_seed) mean += v;
    mean /= o.seeds;
    double var = 0;
    for (double v : st.per_seed) var += (v - mean) * (v - mean);
    st.mean = mean;
    // Over seeds the spread includes each seed's estimator noise; one seed has
    // only its estimator's own standard error.
    st.sem = o.seeds > 1 ? std::sqrt(var / (o.seeds - 1) / o.seeds) : st.estimator_sem;
    st.sd = o.seeds > 1 ? std::sqrt(var / (o.seeds - 1)) : 0.0;
    res.quantities.push_back(st);
  }
  return res;
}

}  // namespace netsor::exec
