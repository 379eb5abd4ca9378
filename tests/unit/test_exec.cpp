// The finite-width executor (src/exec): reproducibility, memory checks, and
// finite-n values that the laws of the sampled objects fix.
#include <doctest/doctest.h>

#include <cmath>

#include "netsor/converge.hpp"
#include "netsor/exec.hpp"
#include "netsor/frontend.hpp"

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

TEST_CASE("the same seed gives bit-identical numbers with 1 and 2 threads; other seeds differ") {
  for (const char* f : {"programs/transpose_correction.tp", "programs/mlp_ntk.tp", "programs/wishart_moments.tp"}) {
    INFO(f);
    auto p = file(f);
    auto a = run(p, 384, 3, 1), b = run(p, 384, 3, 2);
    for (std::size_t q = 0; q < a.quantities.size(); ++q)
      for (int s = 0; s < 3; ++s) CHECK(a.quantities[q].per_seed[s] == b.quantities[q].per_seed[s]);
    // Seed k is the same whether 3 or 5 seeds run; a different base seed changes everything.
    auto c = run(p, 384, 5, 2);
    auto d = run(p, 384, 3, 2, 99);
    for (std::size_t q = 0; q < a.quantities.size(); ++q) {
      CHECK(c.quantities[q].per_seed[2] == a.quantities[q].per_seed[2]);
      CHECK(d.quantities[q].per_seed[0] != a.quantities[q].per_seed[0]);
      CHECK(a.quantities[q].per_seed[0] != a.quantities[q].per_seed[1]);
    }
  }
}

TEST_CASE("a streamed matrix (used once) has the same entries as a stored one") {
  // In the first program W is used by one batched product and is streamed; in
  // the second it is used twice and stored. y = W x must agree.
  const char* once = "matrix W : gaussian(var=2)\nvector x : gaussian(var=1)\ny = W @ x\nreport r = avg(y * x + y^2)\n";
  const char* twice =
      "matrix W : gaussian(var=2)\nvector x : gaussian(var=1)\ny = W @ x\nz = W @ tanh(y)\nreport r = avg(y * x + y^2)\n";
  auto a = run(prog(once), 700, 2, 1), b = run(prog(twice), 700, 2, 1);
  for (int s = 0; s < 2; ++s)
    CHECK(a.quantities[0].per_seed[s] == doctest::Approx(b.quantities[0].per_seed[s]).epsilon(1e-12));
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
  auto p = file("programs/mlp_ntk.tp");
  auto a = run(p, 512, 2, 2), b = run(p, 512, 2, 2, 0, true);
  for (std::size_t q = 0; q < a.quantities.size(); ++q)
    CHECK(b.quantities[q].mean == doctest::Approx(a.quantities[q].mean).epsilon(1e-4));
}

TEST_CASE("a width that does not fit is refused before allocating, with the bytes it needs") {
  auto p = file("programs/wigner_moments.tp");  // W is used at every step: stored, n^2 doubles
  std::size_t need = exec::peak_bytes(p, 1000000, false);
  CHECK(need >= std::size_t(8) * 1000000 * 1000000);
  exec::Options o;
  o.width = 1000000;
  o.memory_limit = std::size_t(24) << 30;
  try {
    exec::run(p, o);
    FAIL("expected a refusal");
  } catch (const ProgramError& e) {
    CHECK(e.diagnostic().message.find("needs " + std::to_string(need) + " bytes") != std::string::npos);
  }
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
  std::string svg = exec::svg_plot(r, "t");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(svg.find("polyline") != std::string::npos);
}
