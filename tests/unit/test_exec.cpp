// The finite-width executor (src/exec): reproducibility, memory checks, and
// finite-n values that the laws of the sampled objects fix.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <cmath>
#include <cstdint>
#include <vector>

#include "netsor/converge.hpp"
#include "netsor/exec.hpp"
#include "netsor/frontend.hpp"
#include "netsor/spectrum.hpp"
#include "../../src/exec/operator_engine.hpp"
#include "../../src/exec/random.hpp"

using namespace netsor;

namespace {
const std::string kDir = NETSOR_SOURCE_DIR;
ir::Program prog(const std::string& src) { return compile_string(src, kDir + "/tests/unit/snippet.tp"); }
ir::Program file(const std::string& f) { return compile_file(kDir + "/" + f); }

exec::RunResult run(const ir::Program& p, std::int64_t n, int seeds, int threads, std::uint64_t seed = 0,
                    bool f32 = false) {
  exec::Options o;
  o.width = n;
  o.seeds = seeds;
  o.threads = threads;
  o.seed = seed;
  o.float32 = f32;
  return exec::run(p, o);
}
}  // namespace

TEST_CASE("the same seed gives bit-identical numbers with 1, 2 and 4 threads, and other seeds differ") {
  for (const char* f : {"programs/transpose_correction.tp", "programs/mlp_ntk.tp", "programs/wishart_moments.tp"}) {
    INFO(f);
    auto p = file(f);
    // 1 thread: seeds one after another; 2 and 4: seeds at once; one seed on 4 threads: its
    // sampling and fused products split over threads (tiles of rows, blocks of columns).
    // 392 rows: two tiles of the fused kernels, the last chunk of 16 rows cut at 8.
    auto a = run(p, 392, 3, 1), b = run(p, 392, 3, 2), b4 = run(p, 392, 3, 4), b1 = run(p, 392, 1, 4);
    for (std::size_t q = 0; q < a.quantities.size(); ++q) {
      for (int s = 0; s < 3; ++s) CHECK(a.quantities[q].per_seed[s] == b.quantities[q].per_seed[s]);
      for (int s = 0; s < 3; ++s) CHECK(a.quantities[q].per_seed[s] == b4.quantities[q].per_seed[s]);
      CHECK(a.quantities[q].per_seed[0] == b1.quantities[q].per_seed[0]);
    }
    // Seed k is the same whether 3 or 5 seeds run; a different base seed changes everything.
    auto c = run(p, 392, 5, 2);
    auto d = run(p, 392, 3, 2, 99);
    for (std::size_t q = 0; q < a.quantities.size(); ++q) {
      CHECK(c.quantities[q].per_seed[2] == a.quantities[q].per_seed[2]);
      CHECK(d.quantities[q].per_seed[0] != a.quantities[q].per_seed[0]);
      CHECK(a.quantities[q].per_seed[0] != a.quantities[q].per_seed[1]);
    }
  }
}

TEST_CASE("the normal sampler: moments, tails and the Kolmogorov-Smirnov distance of N(0, 1)") {
  // 2^22 normals from 64 columns of one key, generated in pieces that start at
  // different chunks; references are N(0, 1)'s closed forms. Bounds: 5 standard
  // errors of each statistic (fixed key, so the outcome is deterministic).
  const std::int64_t rows = 65536, cols = 64;
  const double N = double(rows * cols);
  std::vector<double> z(rows * cols);
  const std::uint64_t key = exec::stream_key(7, 3, 0x1234);
  for (std::int64_t c = 0; c < cols; ++c) {
    std::int64_t cut = exec::kNormalChunk * (1 + c * 37);  // pieces [0, cut) and [cut, rows)
    exec::normals(key, c, 0, cut, &z[c * rows]);
    exec::normals(key, c, cut, rows - cut, &z[c * rows + cut]);
  }
  // Piecewise generation gives the same numbers as one call; float rounds them.
  std::vector<double> whole(rows);
  std::vector<float> single(rows);
  exec::normals(key, 5, 0, rows, whole.data());
  exec::normals(key, 5, 0, rows, single.data());
  CHECK(std::equal(whole.begin(), whole.end(), z.begin() + 5 * rows));
  for (std::int64_t r = 0; r < rows; r += 997) CHECK(single[r] == float(whole[r]));
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0, lag = 0, t3 = 0, t4 = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    double x = z[i];
    m1 += x, m2 += x * x, m3 += x * x * x, m4 += x * x * x * x;
    t3 += std::abs(x) > 3, t4 += std::abs(x) > 4;
    if (i + 8 < z.size()) lag += x * z[i + 8];  // a Box-Muller pair: entries r and r + 8
  }
  // Entries of one row in neighbouring columns, and their squares (a Wishart
  // moment sees these): uncorrelated.
  double row = 0, row2 = 0;
  for (std::int64_t c = 0; c + 1 < cols; ++c)
    for (std::int64_t r = 0; r < rows; ++r) {
      double a = z[c * rows + r], b = z[(c + 1) * rows + r];
      row += a * b, row2 += (a * a - 1) * (b * b - 1);
    }
  const double pairs = double(rows * (cols - 1));
  CHECK(std::abs(row / pairs) < 5 * std::sqrt(1 / pairs));
  CHECK(std::abs(row2 / pairs) < 5 * std::sqrt(4 / pairs));
  m1 /= N, m2 /= N, m3 /= N, m4 /= N, lag /= N;
  CHECK(std::abs(m1) < 5 * std::sqrt(1 / N));
  CHECK(std::abs(m2 - 1) < 5 * std::sqrt(2 / N));
  CHECK(std::abs(m3) < 5 * std::sqrt(15 / N));
  CHECK(std::abs(m4 - 3) < 5 * std::sqrt(96 / N));
  CHECK(std::abs(lag) < 5 * std::sqrt(1 / N));
  for (auto [count, x] : {std::pair{t3, 3.0}, std::pair{t4, 4.0}}) {
    double p = std::erfc(x / std::sqrt(2.0));  // P(|Z| > x)
    CHECK(std::abs(count - N * p) < 5 * std::sqrt(N * p * (1 - p)));
  }
  // Kolmogorov-Smirnov: P(sqrt(N) D > 1.95) ~ 0.001.
  std::sort(z.begin(), z.end());
  double d = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    double F = 0.5 * std::erfc(-z[i] / std::sqrt(2.0));
    d = std::max({d, std::abs(F - double(i) / N), std::abs(F - double(i + 1) / N)});
  }
  CHECK(std::sqrt(N) * d < 1.95);
  CHECK(z.front() > -9);  // Box-Muller from 52-bit uniforms: |z| <= 8.49
  CHECK(z.back() < 9);
}

TEST_CASE("a streamed matrix (used once) has the same entries as a stored one") {
  // In the first program of each pair W (700 x 500) is used by one batched
  // product and is streamed; in the second it is used twice and stored. The
  // products must agree: the fused kernels W x and W^T x, and the panels of a
  // product of more than 16 vectors.
  const std::string head = "width m = 0.71428571 n\nmatrix W[n, m] : gaussian(var=2)\n";
  const std::pair<std::string, std::string> cases[] = {
      {"vector x[m] : gaussian(var=1)\ny = W @ x\n", "z = W.T @ tanh(y)\nreport r = avg(y^2)\n"},
      {"vector x : gaussian(var=1)\ny = W.T @ x\n", "z = W @ tanh(y)\nreport r = avg(y^2)\n"},
      {"for i in 1..17 {\n  vector x[i][m] : gaussian(var=1)\n  y[i] = W @ x[i]\n}\n",
       "z = W.T @ tanh(y[1])\nreport r = avg(y[1] * y[17] + y[3]^2)\n"}};
  for (const auto& [prod, rest] : cases) {
    std::string report = rest.substr(rest.find("report"));
    auto a = run(prog(head + prod + report), 700, 2, 1), b = run(prog(head + prod + rest), 700, 2, 1);
    INFO(prod);
    for (int s = 0; s < 2; ++s)
      CHECK(a.quantities[0].per_seed[s] == doctest::Approx(b.quantities[0].per_seed[s]).epsilon(1e-12));
  }
}

TEST_CASE("finite-n values fixed by the law: Haar matrices keep norms, families keep covariances") {
  auto o = run(prog("matrix Q : orthogonal(var=2)\nvector x : gaussian(var=1)\ny = Q @ x\n"
                    "report r = avg(y * y) / avg(x * x)\n"),
               300, 2, 1);
  for (double v : o.quantities[0].per_seed) CHECK(v == doctest::Approx(2.0).epsilon(1e-12));
  // avg(u1 u2) over n coordinates: mean 0.3, standard deviation sqrt((1*2 + 0.09)/n).
  auto f = run(prog("vectors (u1, u2) : gaussian(cov=[[1.0, 0.3], [0.3, 2.0]])\nreport c = avg(u1 * u2)\n"), 4096,
               16, 2);
  CHECK(std::abs(f.quantities[0].mean - 0.3) <= 4 * std::sqrt(2.09 / 4096 / 16));
  // A rank-deficient family: identical inputs give identical vectors.
  auto g = run(prog("input a = [1, 2]\ninput b = [1, 2]\nmatrix U[n, 2] : gaussian(var=1)\nx = U @ a\ny = U @ b\n"
                    "report d = avg((x - y)^2)\n"),
               512, 2, 1);
  CHECK(g.quantities[0].mean == doctest::Approx(0.0).epsilon(1e-20));
}

TEST_CASE("float32 agrees with float64 to single precision") {
  // The documented precision (README): averages agree to about 1e-7 relative
  // (measured 3e-8 to 3e-7 on these programs at n = 1024 and 4096): per-entry
  // rounding errors of the float products are independent and average out.
  // 1e-5 leaves 30x for a deeper recursion (wigner_moments: W^10 v).
  for (const char* name : {"programs/mlp_ntk.tp", "programs/wigner_moments.tp"}) {
    INFO(name);
    auto p = file(name);
    auto a = run(p, 512, 2, 2), b = run(p, 512, 2, 2, 0, true);
    for (std::size_t q = 0; q < a.quantities.size(); ++q)
      CHECK(std::abs(b.quantities[q].mean - a.quantities[q].mean) <= 1e-5 * std::max(1.0, std::abs(a.quantities[q].mean)));
  }
}

TEST_CASE("a width that does not fit is refused before allocating, with the bytes it needs") {
  // W is used at every step: stored, n^2 doubles; generated again at every
  // product, a seed needs only its vectors, which at n = 10^6 still exceed 4 MiB.
  auto p = file("programs/wigner_moments.tp");
  std::size_t need = exec::peak_bytes(p, 1000000, false, SIZE_MAX);
  CHECK(need >= std::size_t(8) * 1000000 * 1000000);
  const std::size_t limit = std::size_t(4) << 20;
  std::size_t streamed = exec::peak_bytes(p, 1000000, false, limit);
  CHECK(streamed > limit);
  CHECK(streamed < std::size_t(100) << 20);
  exec::Options o;
  o.width = 1000000;
  o.memory_limit = limit;
  try {
    exec::run(p, o);
    FAIL("expected a refusal");
  } catch (const ProgramError& e) {
    CHECK(e.diagnostic().message.find("needs " + std::to_string(need) + " bytes") != std::string::npos);
    CHECK(e.diagnostic().message.find("or " + std::to_string(streamed) + " bytes (") != std::string::npos);
    CHECK(e.diagnostic().message.find("GiB) with 1 of its matrices generated at every use") != std::string::npos);
  }
}

TEST_CASE("matrices streamed to fit in memory give the same numbers as stored ones") {
  // Under a memory limit below the stored peak, the largest Gaussian matrices
  // are generated again at every product and operator application: the same
  // entries, the same fused kernels, so bit-identical reports and spectra.
  for (const char* f : {"programs/wigner_moments.tp", "programs/spectra/tanh_jacobian.tp"}) {
    INFO(f);
    auto p = file(f);
    auto a = run(p, 600, 2, 2, 3);
    CHECK(a.streamed_matrices == 0);
    exec::Options o;
    o.width = 600;
    o.seeds = 2;
    o.threads = 2;
    o.seed = 3;
    o.memory_limit = a.peak_bytes - 1;
    auto b = exec::run(p, o);
    CHECK(b.streamed_matrices >= 1);
    CHECK(b.peak_bytes < a.peak_bytes);
    REQUIRE(a.quantities.size() == b.quantities.size());
    for (std::size_t q = 0; q < a.quantities.size(); ++q) CHECK(a.quantities[q].per_seed == b.quantities[q].per_seed);
  }
  // Lanczos (forced at n = 600 by dense_max) over the Jacobian's matrices, stored and streamed.
  auto p = file("programs/spectra/tanh_jacobian.tp");
  exec::SpectrumOptions so;
  so.run.width = 600;
  so.run.seeds = 1;
  so.run.seed = 3;
  so.dense_max = 100;
  so.lanczos_steps = 20;
  so.keep_eigenvalues = true;
  auto a = exec::spectra(p, so);
  so.run.memory_limit = exec::run(p, so.run).peak_bytes;  // the program alone fits; its spectrum's work does not
  auto b = exec::spectra(p, so);
  REQUIRE(a.spectra.size() == 1);
  CHECK(a.spectra[0].method.rfind("lanczos", 0) == 0);
  CHECK(a.spectra[0].values == b.spectra[0].values);
  CHECK(a.spectra[0].weights == b.spectra[0].weights);
}

TEST_CASE("converge: verdicts and slopes on a program with a known limit") {
  auto p = file("programs/transpose_correction.tp");
  exec::ConvergeOptions o;
  o.widths = {256, 512, 1024, 2048};
  o.run.seeds = 8;
  o.run.threads = 2;
  auto r = exec::converge(p, o);
  REQUIRE(r.series.size() == 2);
  for (const auto& s : r.series) {
    INFO(s.name << ": " << s.verdict);
    CHECK(s.verdict.rfind("converging", 0) == 0);
    CHECK(std::abs(s.slope + 0.5) <= 0.25);  // within [-0.75, -0.25]
    CHECK(s.rows.back().error <= 4 * s.rows.back().sem);
  }
}

TEST_CASE("exact normalized traces: every route through a product gives the same number") {
  // The exact trace reads a product's first factor (a matrix or a diagonal)
  // row-block by row-block against the rest's columns instead of multiplying
  // by it; other operators are applied to identity panels. tr(A B) = tr(B A),
  // tr(I @ S) = tr(S) and (1/m) Tr(X X^T) = (n/m) (1/n) Tr(X^T X) send the same
  // matrices through different routes, which must agree to rounding. Width 300
  // is not a multiple of the 256-column panel.
  auto p = prog(R"(width m = 0.5 n
matrix W : gaussian(var=1)
matrix X[m, n] : gaussian(var=1)
vector h : gaussian(var=1)
operator D = diag(tanh'(h))
report a1 = tr(W @ W.T)
report a2 = tr(I @ W @ W.T)
report a3 = tr(W.T @ W)
report b1 = tr(D @ W @ W.T)
report b2 = tr(W.T @ D @ W)
report b3 = tr(I @ W.T @ D @ W)
report c1 = tr(0.5 * (W + W.T) + 2 * I)
report c2 = tr(I @ W) + 2
report d1 = tr(X @ X.T)
report d2 = tr(X.T @ X)
report d3 = tr(I @ X @ X.T)
)");
  exec::Options o;
  o.width = 300;
  o.seeds = 2;
  o.seed = 11;
  auto r = exec::run(p, o);
  std::map<std::string, std::vector<double>> v;
  for (const auto& q : r.quantities) v[q.name] = q.per_seed;
  for (int s = 0; s < 2; ++s) {
    CAPTURE(s);
    auto same = [&](const std::string& x, const std::string& y, double scale) {
      INFO(x << " = " << v[x][s] << ", " << y << " = " << v[y][s]);
      CHECK(std::abs(v[x][s] - scale * v[y][s]) <= 1e-12 * std::abs(v[x][s]));
    };
    same("a1", "a2", 1);
    same("a1", "a3", 1);
    same("b1", "b2", 1);
    same("b1", "b3", 1);
    same("c1", "c2", 1);
    same("d1", "d2", 2);  // (1/150) Tr X X^T = 2 (1/300) Tr X^T X
    same("d1", "d3", 1);
    CHECK(std::abs(v["a1"][s] - 1) < 0.2);  // E (1/n) Tr W W^T = 1 at var 1
  }
}

TEST_CASE("Hutch++ traces: exact on a low-rank operator, and on a spiked one its error bar covers the exact trace") {
  // Beyond OperatorEngine::kDenseMax a trace is Hutch++: the range of A S
  // (16 sketch columns) traced exactly, Hutchinson on the rest. A rank-8
  // operator lies wholly in that range, so its trace is exact to rounding,
  // where plain Hutchinson would be off by ~1%. (1/r) Tr X^T X is exact (r = 8).
  auto p = prog(R"(width r = 0.002 n
matrix X[n, r] : gaussian(var=1)
report a = tr(X @ X.T)
report b = tr(X.T @ X)
)");
  auto r = run(p, 4200, 2, 1, 5);
  for (int s = 0; s < 2; ++s) {
    double a = r.quantities[0].per_seed[s], b = r.quantities[1].per_seed[s] * 8.0 / 4200.0;
    CAPTURE(a);
    CAPTURE(b);
    CHECK(std::abs(a - b) <= 1e-11 * std::abs(b));
  }

  // One seed's Hutch++ trace carries its own standard error as the report's
  // sem: (1/n) Tr X X^T (n = 4200, Hutch++) against (r/n) (1/r) Tr X^T X
  // (r = 2100, exact), for three seeds run alone.
  auto h = prog(R"(width r = 0.5 n
matrix X[n, r] : gaussian(var=1)
report a = tr(X @ X.T)
report b = tr(X.T @ X)
)");
  for (std::uint64_t seed : {1, 2, 3}) {
    auto one = run(h, 4200, 1, 1, seed);
    const auto &a = one.quantities[0], &b = one.quantities[1];
    CAPTURE(a.mean - 0.5 * b.mean);
    CAPTURE(a.sem);
    CHECK(b.sem == 0);
    REQUIRE(a.sem > 0);
    CHECK(a.sem == a.estimator_sem);
    CHECK(std::abs(a.mean - 0.5 * b.mean) <= 4.5 * a.sem);
  }

  // A = M M^T, M = G / sqrt(n) + 30 (four orthonormal spikes): four eigenvalues
  // near 900 dominate Hutchinson's variance, 2 (||A||_F^2 - sum a_ii^2) / d^2
  // per probe; Hutch++ sketches them away. Each seed's sketch and probes are
  // independent: every estimate must lie within 4.5 of its standard errors
  // of the exact (1/n) ||M||_F^2, their mean square be about 1, and the
  // standard error far below plain Hutchinson's with as many applications.
  auto q = prog("matrix W : gaussian(var=1)\nreport t = tr(W @ W.T)\n");
  int node = -1;
  for (const auto& in : q.instrs)
    if (in.op == ir::Op::Trace) node = in.op_node;
  REQUIRE(node >= 0);
  const std::int64_t n = 4200;
  std::vector<double> g(n * n);
  exec::normals(exec::stream_key(3, 0, 99), 0, 0, n * n, g.data());
  Eigen::MatrixXd M = Eigen::Map<Eigen::MatrixXd>(g.data(), n, n) / std::sqrt(double(n));
  Eigen::MatrixXd U = Eigen::HouseholderQR<Eigen::MatrixXd>(M.leftCols(4)).householderQ() * Eigen::MatrixXd::Identity(n, 4);
  M += 30 * U * U.transpose();
  const double exact = M.squaredNorm() / double(n);
  Eigen::MatrixXd A = M * M.transpose();
  const double plain_sd =
      std::sqrt(2 * (A.squaredNorm() - A.diagonal().squaredNorm()) / double(n * n) /
                (2 * exec::OperatorEngine::kSketch + exec::OperatorEngine::kProbes));
  double z2 = 0;
  const int seeds = 12;
  for (int s = 0; s < seeds; ++s) {
    exec::OperatorInputs in;
    in.program = &q;
    in.width = n;
    in.base_seed = 17;
    in.seed_index = std::uint64_t(s);
    in.matrix = [&](ir::VarId) -> const Eigen::MatrixXd& { return M; };
    exec::OperatorEngine ops(in);
    exec::TraceEstimate t = ops.trace(node);
    CAPTURE(s);
    CAPTURE(t.value - exact);
    CAPTURE(t.sem);
    CHECK(t.matvecs == 2 * exec::OperatorEngine::kSketch + exec::OperatorEngine::kProbes);
    REQUIRE(t.sem > 0);
    CHECK(std::abs(t.value - exact) <= 4.5 * t.sem);
    CHECK(t.sem < 0.2 * plain_sd);
    z2 += (t.value - exact) * (t.value - exact) / (t.sem * t.sem) / seeds;
  }
  CHECK(z2 > 0.2);
  CHECK(z2 < 3.0);
}
