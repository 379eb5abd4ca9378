// netsor spectrum and operator instructions from the command line: output
// shapes, files, determinism across thread counts, refusals. Small widths only
// (the statistical acceptance is tests/e2e/test_spectrum.cpp).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace e2e;
using nlohmann::json;

namespace {

const char* kOps =
    "width m = 0.5 n\n"
    "matrix A[m, n] : gaussian(var=1)\n"
    "matrix W : gaussian(var=1)\n"
    "vector x : gaussian(var=1)\n"
    "vector v : gaussian(var=1)\n"
    "operator D = diag(tanh'(W @ x))\n"
    "operator S = W @ D @ W.T\n"
    "spectrum S\n"
    "spectrum A.T @ A + 0.5 * I as ridge\n"
    "report t = tr(inv(A.T @ A + 0.5 * I))\n"
    "report q = avg(v * (inv(S + I) @ v))\n"
    "spectrum inv(S + I) as resolvent\n";

}  // namespace

TEST_CASE("every program in programs/spectra passes netsor check") {
  auto files = tp_files(kSrc / "programs/spectra");
  CHECK(files.size() >= 7);
  for (const auto& f : files) {
    INFO(f.string());
    auto r = run("check '" + f.string() + "'");
    CHECK(r.rc == 0);
    CHECK(r.err.empty());
  }
}

TEST_CASE("spectrum --json: the documented shape, a density that integrates to 1, eigenvalues on request") {
  fs::path p = write_program("ops.tp", kOps);
  auto r = run("spectrum '" + p.string() + "' --width 64 --seeds 3 --bins 10 --json --eigenvalues");
  REQUIRE(r.rc == 0);
  json j = json::parse(r.out);
  CHECK(j["width"] == 64);
  CHECK(j["seeds"] == 3);
  REQUIRE(j["spectra"].contains("S"));
  REQUIRE(j["spectra"].contains("ridge"));
  const json& s = j["spectra"]["ridge"];
  CHECK(s["dim"] == 64);
  CHECK(s["method"] == "dense");
  CHECK(s["moments"].size() == 4);
  CHECK(s["moments"][0]["k"] == 1);
  CHECK(s["histogram"]["edges"].size() == 11);
  REQUIRE(s["histogram"]["density"].size() == 10);
  double mass = 0;
  for (int b = 0; b < 10; ++b)
    mass += s["histogram"]["density"][b].get<double>() *
            (s["histogram"]["edges"][b + 1].get<double>() - s["histogram"]["edges"][b].get<double>());
  CHECK(mass == doctest::Approx(1).epsilon(1e-12));
  // A.T @ A has rank 32 of 64: half the eigenvalues of the ridge operator are 0.5.
  CHECK(s["min"].get<double>() == doctest::Approx(0.5).epsilon(1e-10));
  CHECK(s["eigenvalues"].size() == 3);
  CHECK(s["eigenvalues"][0].size() == 64);
  // The resolvent of S = W D W.T (D = diag(tanh') > 0) has its spectrum in (0, 1].
  const json& res = j["spectra"]["resolvent"];
  CHECK(res["min"].get<double>() > 0);
  CHECK(res["max"].get<double>() <= 1 + 1e-12);
}

TEST_CASE("spectra, traces and inverses do not depend on the thread count") {
  fs::path p = write_program("ops.tp", kOps);
  for (const char* cmd : {"spectrum", "run"}) {
    auto a = run(std::string(cmd) + " '" + p.string() + "' --width 96 --seeds 3 --threads 1 --json");
    auto b = run(std::string(cmd) + " '" + p.string() + "' --width 96 --seeds 3 --threads 2 --json");
    REQUIRE(a.rc == 0);
    CHECK(a.out == b.out);
  }
}

TEST_CASE("spectrum --plot and --csv write an SVG histogram and a table") {
  fs::path p = write_program("ops.tp", kOps);
  fs::path svg = scratch() / "s.svg", csv = scratch() / "s.csv";
  auto r = run("spectrum '" + p.string() + "' --width 48 --seeds 2 --plot '" + svg.string() + "' --csv '" +
               csv.string() + "'");
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("spectrum ridge") != std::string::npos);
  std::string s = slurp(svg);
  CHECK(s.rfind("<svg", 0) == 0);
  CHECK(s.find("class=\"limit\"") != std::string::npos);
  CHECK(slurp(csv).rfind("spectrum,bin_lo,bin_hi,density\n", 0) == 0);
}

TEST_CASE("large widths: traces and conjugate gradients") {
  // Beyond n = 4096 a trace is exact for diagonals and linear over sums (only
  // other terms are Hutch++ estimates); CG on a diagonal must reach the
  // coordinatewise quotient.
  fs::path p = write_program("big.tp",
                             "vector x : gaussian(var=1)\nvector v : gaussian(var=1)\n"
                             "operator D = diag(1 + x * x)\n"
                             "report t = tr(D)\nreport a = avg(1 + x * x)\n"
                             "report q = avg(v * (inv(D) @ v))\nreport b = avg(v * v / (1 + x * x))\n");
  auto r = run("run '" + p.string() + "' --width 5000 --seeds 1 --json");
  REQUIRE(r.rc == 0);
  json j = json::parse(r.out)["quantities"];
  CHECK(j["t"]["mean"].get<double>() == doctest::Approx(j["a"]["mean"].get<double>()).epsilon(1e-12));
  CHECK(j["q"]["mean"].get<double>() == doctest::Approx(j["b"]["mean"].get<double>()).epsilon(1e-8));
}

TEST_CASE("refusals: no spectrum statement, limits of inv and tr, a singular inverse") {
  fs::path none = write_program("none.tp", "vector x : gaussian(var=1)\nreport m = avg(x * x)\n");
  expect_usage_error(run("spectrum '" + none.string() + "' --width 16"), "no `spectrum` statement");
  fs::path p = write_program("ops.tp", kOps);
  // tr(...) has a limit (free probability); this inverse applied to a vector
  // has none: W also multiplies x, and its diagonal reads a vector.
  auto lim = run("limit '" + p.string() + "'");
  expect_clean_error(lim, "applied to a vector is not derived: 'W' also multiplies a vector at line 6");
  CHECK(lim.err.find("ops.tp:11:") != std::string::npos);
  fs::path sing = write_program("sing.tp",
                                "width m = 0.5 n\nmatrix A[m, n] : gaussian(var=1)\nreport t = tr(inv(A.T @ A))\n");
  expect_clean_error(run("run '" + sing.string() + "' --width 32 --seeds 1"), "(the operator is singular or nearly so)");
}
