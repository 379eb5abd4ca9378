// netsor spectrum: eigenvalue laws at finite width (include/netsor/spectrum.hpp).
//
// Each seed runs the program (so diagonals see that seed's vectors), then every
// `spectrum` operator is either formed densely and diagonalized by LAPACK's
// dsyevd (eigenvalues only), or, beyond dense_max, probed by stochastic
// Lanczos quadrature: Lanczos from Rademacher start vectors, with full
// reorthogonalization, whose tridiagonal matrices' eigenpairs are Gauss
// quadrature nodes and weights for the spectral measure (Ubaru, Chen and
// Saad 2017). Moments are averaged per seed, and their standard errors are
// over seeds.
#include "netsor/spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <sstream>

#include "netsor/frontend.hpp"
#include "netsor/operators.hpp"
#include "blas.hpp"
#include "operator_engine.hpp"
#include "random.hpp"

namespace netsor::exec {
namespace {

constexpr int kMoments = 4;
constexpr std::uint64_t kLanczosObject = 0x4C414E43ull;  // "LANC": the start vectors' stream

// The dense form of a symmetric operator, lower triangle at least. A proven
// symmetric product is a palindrome X @ X.T or X @ M @ X.T: X is formed once
// and multiplied by its own transpose (a rank-k update, half a product).
Eigen::MatrixXd dense_symmetric(OperatorEngine& ops, int node) {
  const ir::OpNode& n = ops.program().op_nodes[node];
  if (n.kind != ir::OpKind::Product) return ops.dense(node);
  std::size_t h = n.args.size() / 2;
  Eigen::MatrixXd X = ops.dense(n.args[h - 1]);
  for (std::size_t i = h - 1; i-- > 0;) X = ops.apply(n.args[i], X);
  if (n.args.size() % 2) return blas::gemm(X, false, ops.apply(n.args[h], X.transpose()));
  return blas::syrk_lower(X);
}

struct SeedSpectrum {
  std::vector<double> values, weights;  // nodes and their masses (summing to 1)
  std::string method;
};

SeedSpectrum dense_spectrum(OperatorEngine& ops, int node) {
  Eigen::MatrixXd A = dense_symmetric(ops, node);
  SeedSpectrum s;
  s.values = blas::symmetric_eigenvalues(A);
  s.weights.assign(s.values.size(), 1.0 / double(s.values.size()));
  s.method = "dense";
  return s;
}

// Gauss quadrature nodes and weights of one Lanczos run's tridiagonal matrix.
void add_quadrature(const std::vector<double>& alpha, const std::vector<double>& beta, double mass, SeedSpectrum& s) {
  int m = (int)alpha.size();
  Eigen::MatrixXd T = Eigen::MatrixXd::Zero(m, m);
  for (int j = 0; j < m; ++j) {
    T(j, j) = alpha[j];
    if (j + 1 < m) T(j, j + 1) = T(j + 1, j) = beta[j];
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(T);
  for (int j = 0; j < m; ++j) {
    s.values.push_back(es.eigenvalues()(j));
    s.weights.push_back(mass * es.eigenvectors()(0, j) * es.eigenvectors()(0, j));
  }
}

// Lanczos on all probes at once (one block application per step), each
// probe its own recurrence, fully reorthogonalized against its own basis.
SeedSpectrum lanczos_spectrum(OperatorEngine& ops, int node, const SpectrumOptions& o) {
  const std::int64_t d = ops.rows(node);
  const int P = o.lanczos_probes, m = (int)std::min<std::int64_t>(o.lanczos_steps, d);
  const OperatorInputs& in = ops.inputs();
  std::vector<Eigen::MatrixXd> Q(P, Eigen::MatrixXd(d, m));
  Eigen::MatrixXd V(d, P);
  const std::uint64_t key = stream_key(in.base_seed, in.seed_index, kLanczosObject ^ std::uint64_t(node));
  for (int p = 0; p < P; ++p) {
    rademacher(key, std::uint64_t(p), d, V.col(p).data());
    V.col(p) /= std::sqrt(double(d));
  }
  std::vector<std::vector<double>> alpha(P), beta(P);
  std::vector<bool> done(P, false);
  for (int j = 0; j < m; ++j) {
    for (int p = 0; p < P; ++p) Q[p].col(j) = V.col(p);
    Eigen::MatrixXd W = ops.apply(node, V);
    for (int p = 0; p < P; ++p) {
      if (done[p]) continue;
      Eigen::VectorXd w = W.col(p);
      alpha[p].push_back(Q[p].col(j).dot(w));
      for (int pass = 0; pass < 2; ++pass)  // twice is enough (Parlett's "twice is enough")
        w -= Q[p].leftCols(j + 1) * (Q[p].leftCols(j + 1).transpose() * w);
      double b = w.norm();
      if (j + 1 == m || b < 1e-10 * std::max(1.0, std::abs(alpha[p].back()))) {
        done[p] = true;  // an invariant subspace: the quadrature is exact
        V.col(p).setZero();
        continue;
      }
      beta[p].push_back(b);
      V.col(p) = w / b;
    }
  }
  SeedSpectrum s;
  for (int p = 0; p < P; ++p) add_quadrature(alpha[p], beta[p], 1.0 / P, s);
  std::ostringstream method;
  method << "lanczos (" << m << " steps, " << P << " probes per seed)";
  s.method = method.str();
  return s;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

double sem_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  double m = mean_of(v), ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / double(v.size() - 1) / double(v.size()));
}

SpectrumStats summarize(const std::string& name, std::int64_t dim, std::vector<SeedSpectrum>& seeds, int bins,
                        bool keep) {
  SpectrumStats st;
  st.name = name;
  st.dim = dim;
  st.method = seeds[0].method;
  st.min = INFINITY;
  st.max = -INFINITY;
  double near = 0;
  for (const auto& s : seeds) {
    double big = 0;
    for (double x : s.values) {
      st.min = std::min(st.min, x);
      st.max = std::max(st.max, x);
      big = std::max(big, std::abs(x));
    }
    for (std::size_t i = 0; i < s.values.size(); ++i)
      if (std::abs(s.values[i]) <= 1e-8 * big) near += s.weights[i] / double(seeds.size());
  }
  st.near_zero = near;
  for (int k = 1; k <= kMoments; ++k) {
    std::vector<double> per_seed;
    for (const auto& s : seeds) {
      double m = 0;
      for (std::size_t i = 0; i < s.values.size(); ++i) m += s.weights[i] * std::pow(s.values[i], k);
      per_seed.push_back(m);
    }
    st.moments.push_back({k, mean_of(per_seed), sem_of(per_seed)});
  }
  double lo = st.min, hi = st.max;
  if (!(hi > lo)) lo -= 0.5, hi += 0.5;  // a single point mass: a unit-wide bin around it
  double width = (hi - lo) / bins;
  for (int b = 0; b <= bins; ++b) st.edges.push_back(lo + b * width);
  st.density.assign(bins, 0.0);
  for (const auto& s : seeds)
    for (std::size_t i = 0; i < s.values.size(); ++i) {
      int b = std::clamp((int)std::floor((s.values[i] - lo) / width), 0, bins - 1);
      st.density[b] += s.weights[i] / double(seeds.size()) / width;
    }
  if (keep)
    for (auto& s : seeds) {
      st.values.push_back(std::move(s.values));
      st.weights.push_back(std::move(s.weights));
    }
  return st;
}

}  // namespace

SpectrumResult spectra(const ir::Program& p, const SpectrumOptions& o) {
  if (p.spectra.empty()) throw UsageError("the program has no `spectrum` statement: nothing to measure");
  std::vector<std::vector<SeedSpectrum>> per(p.spectra.size(), std::vector<SeedSpectrum>(o.run.seeds));
  Options ro = o.run;
  ro.spectrum_work = [&o](std::int64_t d) -> std::pair<double, bool> {
    const double n = double(d);
    if (d <= o.dense_max) return {3 * n * n * 8, true};  // the dense form and dsyevd's workspace
    // Lanczos: each probe's basis, and the block of probes with its image.
    const double P = o.lanczos_probes, m = double(std::min<std::int64_t>(o.lanczos_steps, d));
    return {(P * m + 4 * P) * n * 8, false};
  };
  ro.on_operators = [&](int seed, OperatorEngine& ops) {
    for (std::size_t k = 0; k < p.spectra.size(); ++k) {
      int node = p.spectra[k].node;
      ops.set_location(p.spectra[k].loc);
      per[k][seed] = ops.rows(node) <= o.dense_max ? dense_spectrum(ops, node) : lanczos_spectrum(ops, node, o);
    }
  };
  RunResult rr = run(p, ro);
  SpectrumResult r;
  r.width = o.run.width;
  r.seeds = o.run.seeds;
  r.streamed_matrices = rr.streamed_matrices;
  for (std::size_t k = 0; k < p.spectra.size(); ++k) {
    std::int64_t dim = dim_size(p, p.op_nodes[p.spectra[k].node].rows, o.run.width);
    r.spectra.push_back(summarize(p.spectra[k].name, dim, per[k], o.bins, o.keep_eigenvalues));
  }
  return r;
}

}  // namespace netsor::exec
