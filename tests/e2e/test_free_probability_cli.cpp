// netsor spectrum --limit and netsor limit of tr(...) (free probability)
// against closed forms: the semicircle and Marchenko-Pastur densities, edges
// and atom, and the Fuss-Catalan right edge (L+1)^{L+1} / L^L (primer section 5).
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <map>

#include "harness.hpp"

using namespace e2e;
using nlohmann::json;

namespace {

json limit_spectra(const std::string& file_args) {
  auto r = run("spectrum " + file_args + " --limit --json");
  REQUIRE(r.rc == 0);
  return json::parse(r.out)["spectra"];
}

// Every grid point at least `margin` inside [a, b] against the closed form.
void check_density(const json& lim, double a, double b, const std::function<double(double)>& rho) {
  auto x = lim["x"].get<std::vector<double>>();
  int checked = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i] < a + 0.02 || x[i] > b - 0.02) continue;
    CAPTURE(x[i]);
    double d = lim["density"][i].get<double>(), e = lim["density_error"][i].get<double>();
    CHECK(std::abs(d - rho(x[i])) < 1e-6);
    CHECK(e < 1e-6);
    ++checked;
  }
  CHECK(checked > 100);
}

}  // namespace

TEST_CASE("spectrum --limit: the semicircle law") {
  json s = limit_spectra("programs/spectra/semicircle.tp")["wigner"]["limit"];
  check_density(s, -2, 2, [](double x) { return std::sqrt(4 - x * x) / (2 * M_PI); });
  REQUIRE(s["support"].size() == 1);
  CHECK(std::abs(s["support"][0][0].get<double>() + 2) < 1e-6);
  CHECK(std::abs(s["support"][0][1].get<double>() - 2) < 1e-6);
  CHECK(s["atoms"].empty());
  const double moments[] = {0, 1, 0, 2};
  for (int k = 0; k < 4; ++k) CHECK(std::abs(s["moments"][k]["value"].get<double>() - moments[k]) < 1e-10);
  CHECK(s["method"].get<std::string>().find("Stieltjes") != std::string::npos);
}

TEST_CASE("spectrum --limit: Marchenko-Pastur densities, edges and the atom at 0") {
  // X^T X for X[c n, n] with entries N(0, 1/n): density sqrt((b - x)(x - a)) / (2 pi x)
  // on [a, b] = [(1 - sqrt c)^2, (1 + sqrt c)^2], and an atom 1 - c at 0 for c < 1.
  json all = limit_spectra("programs/spectra/marchenko_pastur.tp");
  for (auto [name, c] : {std::pair<std::string, double>{"rho_0_3", 0.3}, {"rho_3", 3.0}}) {
    CAPTURE(name);
    json s = all[name]["limit"];
    double a = std::pow(1 - std::sqrt(c), 2), b = std::pow(1 + std::sqrt(c), 2);
    check_density(s, a, b, [&](double x) { return std::sqrt((b - x) * (x - a)) / (2 * M_PI * x); });
    REQUIRE(s["support"].size() == 1);
    CHECK(std::abs(s["support"][0][0].get<double>() - a) < 1e-6);
    CHECK(std::abs(s["support"][0][1].get<double>() - b) < 1e-6);
    if (c < 1) {
      REQUIRE(s["atoms"].size() == 1);
      CHECK(s["atoms"][0]["at"].get<double>() == 0);
      CHECK(s["atoms"][0]["mass"].get<double>() == doctest::Approx(1 - c).epsilon(1e-15));
      CHECK(s["atoms"][0]["method"].get<std::string>().find("exact") != std::string::npos);
    } else {
      CHECK(s["atoms"].empty());
    }
  }
}

TEST_CASE("spectrum --limit: Fuss-Catalan right edges for products of L = 1, 2, 3 Ginibre matrices") {
  fs::path p = write_program("fc.tp",
                             "matrix P : gaussian(var=1)\nmatrix Q[2] : gaussian(var=1)\nmatrix Q[1] : gaussian(var=1)\n"
                             "matrix R[3] : gaussian(var=1)\nmatrix R[2] : gaussian(var=1)\nmatrix R[1] : gaussian(var=1)\n"
                             "operator J2 = Q[2] @ Q[1]\noperator J3 = R[3] @ R[2] @ R[1]\n"
                             "spectrum P @ P.T as L1\n"
#ifndef NETSOR_SANITIZED
                             "spectrum J2 @ J2.T as L2\nspectrum J3 @ J3.T as L3\n"
#endif
                             );
  json all = limit_spectra("'" + p.string() + "'");
#ifdef NETSOR_SANITIZED
  const int max_L = 1;  // the same code for every L; L = 2, 3 take minutes under ASan
#else
  const int max_L = 3;
#endif
  for (int L = 1; L <= max_L; ++L) {
    CAPTURE(L);
    json s = all["L" + std::to_string(L)]["limit"];
    double edge = std::pow(L + 1.0, L + 1) / std::pow(L, L);
    REQUIRE(s["support"].size() == 1);
    CHECK(std::abs(s["support"][0][0].get<double>()) < 1e-6);
    CHECK(std::abs(s["support"][0][1].get<double>() - edge) < 1e-6);
    CHECK(s["atoms"].empty());  // the density blows up at 0, but there is no atom
  }
}

TEST_CASE("netsor limit: resolvents applied to vectors, against closed forms") {
  // programs/spectra/ridge_resolvent.tp, gamma = 0.5, lam2 = 1: references from
  // tests/e2e/ridge_applied_refs.py (Marchenko-Pastur closed forms, and
  // g = s E[sech^2(N(0, tr R^2))] by mpmath). At lam = 0.5, tr R^2 = tr R by
  // coincidence; lam = 0.3 tells them apart.
  const std::map<std::string, std::map<std::string, double>> refs = {
      {"0.5", {{"s", 0.8284271247461901}, {"q", 0.8284271247461901}, {"r2", 0.8284271247461901},
               {"g", 0.52992799410109539}, {"r3", 0.20710678118654752}, {"c12", 0.53374862387471965}}},
      {"0.3", {{"s", 1.0451762418866815}, {"q", 1.0451762418866815}, {"r2", 1.4290950788190243},
               {"g", 0.56494414039529613}, {"r3", 0.30822385912048712}, {"c12", 0.69089061296835892}}}};
  for (const auto& [lam, ref] : refs) {
    auto r = run("limit programs/spectra/ridge_resolvent.tp -D lam=" + lam + " --json");
    REQUIRE(r.rc == 0);
    json q = json::parse(r.out)["quantities"];
    for (const auto& [name, v] : ref) {
      INFO("lam = " << lam << ", " << name << " = " << q[name]["value"] << " ± " << q[name]["abs_error"] << ", reference " << v);
      const double got = q[name]["value"].get<double>(), bar = q[name]["abs_error"].get<double>();
      CHECK(std::abs(got - v) <= bar + 1e-15);  // the error bar covers the true error
      CHECK(bar < 1e-9);
    }
  }
}

TEST_CASE("netsor limit: an inverse applied to a vector is refused where rotation invariance fails") {
  const std::string head = "const lam = 0.5\nwidth m = 0.5 n\nmatrix X[m, n] : gaussian(var=1)\nvector u[m] : gaussian(var=1)\n"
                           "vector x : gaussian(var=1)\noperator R = inv(X @ X.T + lam * I)\n";
  const std::pair<const char*, const char*> cases[] = {
      // X multiplies a vector elsewhere: the operator is not independent of the program's vectors.
      {"y = R @ u\nh = X @ x\nreport a = avg(y * h)\n", "'X' also multiplies a vector at line 8"},
      // the argument is built from the same matrices
      {"y = R @ u\nz = R @ tanh(y)\nreport a = avg(z * u)\n", "is itself built from these matrices"},
      // a diagonal of a program vector inside the inverse
      {"v = tanh(u)\nw = inv(X @ X.T + diag(v * v) + lam * I) @ u\nreport a = avg(w * u)\n", "diag(...) of the vector 'v'"},
  };
  for (const auto& [body, message] : cases) {
    fs::path p = write_program("applied.tp", head + body);
    auto r = run("limit '" + p.string() + "'");
    INFO(body);
    expect_clean_error(r, message);
    CHECK(r.err.find("applied.tp:") != std::string::npos);
    CHECK(run("run '" + p.string() + "' --width 64 --seeds 1").rc == 0);  // finite width measures it
  }
}

TEST_CASE("netsor limit: ridge resolvent traces") {
  fs::path p = write_program("ridge.tp",
                             "const lam = 0.5\nwidth m = 0.5 n\nmatrix X[m, n] : gaussian(var=1)\n"
                             "report s = tr(inv(X @ X.T + lam * I))\nreport t = tr(inv(X.T @ X + lam * I))\n");
  auto ok = run("limit '" + p.string() + "' --json");
  REQUIRE(ok.rc == 0);
  json q = json::parse(ok.out)["quantities"];
  CHECK(std::abs(q["s"]["value"].get<double>() - 2 * (std::sqrt(2.0) - 1)) < 1e-10);
  CHECK(std::abs(q["t"]["value"].get<double>() - std::sqrt(2.0)) < 1e-10);
  CHECK(q["t"]["method"].get<std::string>().find("free probability") != std::string::npos);
  auto d = run("derive '" + p.string() + "'");
  REQUIRE(d.rc == 0);
  CHECK(d.out.find("self-adjoint pencil") != std::string::npos);
  CHECK(d.out.find("C[X] = ") != std::string::npos);
  CHECK(d.out.find("fixed point: G(Lambda) = E_Z[") != std::string::npos);
  // The sampled evaluator gives the same traces (they need no samples), and
  // refuses, located, a trace whose diagonal reads a program vector: it once
  // printed 0 for it.
  auto sampled = run("limit '" + p.string() + "' --method sampled --points 256 --json");
  REQUIRE(sampled.rc == 0);
  json qs = json::parse(sampled.out)["quantities"];
  CHECK(std::abs(qs["s"]["value"].get<double>() - 2 * (std::sqrt(2.0) - 1)) < 1e-10);
  auto diag = run("limit programs/spectra/resolvents.tp --method sampled --points 256");
  expect_clean_error(diag, "no limit for this trace: the sampled evaluator has no exact form for 'x'");
  CHECK(diag.err.find("resolvents.tp:25:12") != std::string::npos);
  // derive shows the rule for a resolvent applied to a vector.
  auto applied = run("derive programs/spectra/ridge_resolvent.tp");
  REQUIRE(applied.rc == 0);
  CHECK(applied.out.find("rotation-invariant operators T applied to vectors u") != std::string::npos);
  CHECK(applied.out.find("c = tr(inv(X @ X.T + 0.5 * I)) = 0.828427124746") != std::string::npos);
}

TEST_CASE("netsor limit: programs/spectra/resolvents.tp against its closed forms") {
  auto r = run("limit programs/spectra/resolvents.tp --json");
  REQUIRE(r.rc == 0);
  json q = json::parse(r.out)["quantities"];
  const double r2 = std::sqrt(2.0);
  CHECK(std::abs(q["s"]["value"].get<double>() - 2 * (r2 - 1)) < 1e-10);
  CHECK(std::abs(q["t"]["value"].get<double>() - r2) < 1e-10);
  CHECK(std::abs(q["v"]["value"].get<double>() - (r2 - 1) / 2) < 1e-10);
  CHECK(std::abs(q["r"]["value"].get<double>() - 0.41150892091463789) < 1e-10);  // mpmath, free_probability_refs.py
  for (const char* k : {"s", "t", "v", "r"}) CHECK(q[k]["abs_error"].get<double>() < 1e-9);
}

TEST_CASE("spectrum --limit --width: the histogram, the limit density over it, and their distance") {
  fs::path svg = scratch() / "mp_limit.svg";
  auto r = run("spectrum programs/spectra/marchenko_pastur.tp --limit --width 512 --seeds 2 --json --plot '" +
               svg.string() + "'");
  REQUIRE(r.rc == 0);
  json s = json::parse(r.out)["spectra"];
  for (const char* name : {"rho_0_3", "rho_3"}) {
    CAPTURE(name);
    CHECK(s[name].contains("histogram"));
    CHECK(s[name]["limit"]["density"].size() == 400);
    // Eigenvalues at width 512 sit within O(1/n) of the limit law's quantiles.
    double d = s[name]["kolmogorov_distance"].get<double>();
    CHECK(d > 0);
    CHECK(d < 0.05);
  }
  std::string plot = slurp(svg);
  CHECK(plot.find("<g class=\"limit\"><polyline") != std::string::npos);
  CHECK(plot.find("atom 0.7") != std::string::npos);
}
