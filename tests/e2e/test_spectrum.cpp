// Acceptance of `netsor spectrum` and of operator traces against closed forms
// and against the limits the Z calculus derives for the same moments
// (programs/spectra). Release only: dense spectra at n = 2048.
//
// Real Gaussian ensembles have an O(1/n) bias in their spectral moments (the
// Wigner fourth moment is about 2 + 5/n), of the same order as one seed's
// fluctuation, so a check "within k standard errors" at one width fails once
// there are enough seeds. The moments are therefore extrapolated in 1/n from
// widths n/2 and n, m = 2 m(n) - m(n/2), which removes the O(1/n) term, and
// compared with the limit within 4 standard errors of that combination.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace e2e;
using nlohmann::json;

namespace {

json netsor_json(const std::string& args) {
  auto r = run(args + " --json");
  INFO(args << "\n" << r.err);
  REQUIRE(r.rc == 0);
  return json::parse(r.out);
}

json spectrum(const std::string& file, int width, int seeds, const std::string& extra = "") {
  return netsor_json("spectrum programs/spectra/" + file + " --width " + std::to_string(width) + " --seeds " +
                     std::to_string(seeds) + " " + extra);
}

// A 4-s.e. criterion needs the s.e. itself to be reliable: with 4 seeds
// (Student t, 3 degrees of freedom) |t| > 4 happens 3% of the time, with 8
// seeds 0.5%.
constexpr int kSeeds = 8;

struct Extrapolated {
  double value, se;
};

Extrapolated extrapolate(double big, double big_se, double small, double small_se) {
  return {2 * big - small, std::sqrt(4 * big_se * big_se + small_se * small_se)};
}

// Every moment of the named spectra against the limit of the report
// `prefix[k]` (an avg(v * S^k v) program in the same file).
void moments_match_limits(const std::string& file, const std::map<std::string, std::string>& spectra, int kmax,
                          const std::string& defines = "") {
  json lim = netsor_json("limit programs/spectra/" + file + " " + defines);
  json big = spectrum(file, 2048, kSeeds, defines), small = spectrum(file, 1024, kSeeds, defines);
  for (const auto& [name, prefix] : spectra) {
    for (int k = 1; k <= kmax; ++k) {
      const json& l = lim["quantities"][prefix + "[" + std::to_string(k) + "]"];
      const json& b = big["spectra"][name]["moments"][k - 1];
      const json& s = small["spectra"][name]["moments"][k - 1];
      Extrapolated m = extrapolate(b["mean"], b["sem"], s["mean"], s["sem"]);
      double limit = l["value"], err = l["abs_error"];
      INFO(file << " " << name << " k=" << k << ": n=2048 " << b["mean"].get<double>() << ", extrapolated "
                << m.value << " +- " << m.se << ", limit " << limit << " +- " << err);
      CHECK(b["k"] == k);
      CHECK(std::abs(m.value - limit) <= 4 * m.se + 4 * err);
    }
  }
}

}  // namespace

TEST_CASE("Wigner: spectral moments agree with the Z-calculus limits (0, 1, 0, 2)") {
  moments_match_limits("semicircle.tp", {{"wigner", "m"}}, 4);
}

TEST_CASE("Wishart at ratios 0.3 and 3: spectral moments agree with the limits") {
  moments_match_limits("marchenko_pastur.tp", {{"rho_0_3", "thin_m"}, {"rho_3", "wide_m"}}, 4);
}

TEST_CASE("Fuss-Catalan, L = 2 and 3: spectral moments agree with the limits") {
  moments_match_limits("fuss_catalan.tp", {{"L2", "L2_m"}, {"L3", "L3_m"}}, 4);
}

TEST_CASE("tanh Jacobian J J^T: spectral moments agree with the limits") {
  moments_match_limits("tanh_jacobian.tp", {{"JJT", "m"}}, 3, "-D L=2");
}

TEST_CASE("the Marchenko-Pastur atom: X.T @ X with X 0.3n x n has 70% of its eigenvalues at 0") {
  json j = spectrum("marchenko_pastur.tp", 1024, 1);
  CHECK(j["spectra"]["rho_0_3"]["near_zero"].get<double>() == doctest::Approx(1 - 307.0 / 1024).epsilon(1e-12));
  CHECK(j["spectra"]["rho_3"]["near_zero"].get<double>() == 0.0);
}

TEST_CASE("ReLU at criticality: variance of the J J^T spectrum ~ 2L (Gaussian) and ~ L (orthogonal)") {
  // Free multiplicative convolution: per layer, variance 1 from W^T W
  // (0 when orthogonal) and 1 from D^2 (programs/spectra/relu_jacobian.tp).
  const int L = 3;
  auto variances = [&](int width) {
    json j = spectrum("relu_jacobian.tp", width, kSeeds, "-D L=" + std::to_string(L) + " --eigenvalues");
    std::map<std::string, Extrapolated> out;
    for (const char* name : {"gaussian", "orthogonal"}) {
      std::vector<double> v;
      for (const auto& seed : j["spectra"][name]["eigenvalues"]) {
        double s1 = 0, s2 = 0, n = double(seed.size());
        for (double x : seed) s1 += x, s2 += x * x;
        v.push_back(s2 / n - (s1 / n) * (s1 / n));
      }
      double mean = 0, ss = 0;
      for (double x : v) mean += x / double(v.size());
      for (double x : v) ss += (x - mean) * (x - mean);
      out[name] = {mean, std::sqrt(ss / double(v.size() - 1) / double(v.size()))};
    }
    return out;
  };
  auto big = variances(1024), small = variances(512);
  for (const auto& [name, expect] : std::map<std::string, double>{{"gaussian", 2.0 * L}, {"orthogonal", 1.0 * L}}) {
    Extrapolated v = extrapolate(big[name].value, big[name].se, small[name].value, small[name].se);
    INFO(name << ": n=1024 " << big[name].value << ", extrapolated " << v.value << " +- " << v.se << ", expected "
              << expect);
    CHECK(std::abs(v.value - expect) <= 4 * v.se);
  }
}

TEST_CASE("ridge resolvent: tr(inv(X @ X.T + lam I)) at n = 2048 within 3 s.e. of Marchenko-Pastur") {
  // gamma = m / n = 0.5, lam = 0.5 (programs/spectra/ridge_resolvent.tp): the
  // positive root of gamma lam s^2 + (lam + 1 - gamma) s - 1 = 0 (docs/language.md).
  const double gamma = 0.5, lam = 0.5;
  double a = gamma * lam, b = lam + 1 - gamma;
  double s = (-b + std::sqrt(b * b + 4 * a)) / (2 * a);
  double t = (1 - gamma) / lam + gamma * s;
  // The resolvent applied to u (tests/e2e/ridge_applied_refs.py): tr R^2, and
  // gamma (s - lam tr R^2) for X.T @ R @ u; two ridges (lam2 = 1) share tr(R R2).
  double r2 = (gamma * s * s + s) / (2 * gamma * lam * s + lam + 1 - gamma);
  double s2 = (-(1.0 + 1 - gamma) + std::sqrt((2 - gamma) * (2 - gamma) + 4 * gamma * 1.0)) / (2 * gamma * 1.0);
  json r = netsor_json("run programs/spectra/ridge_resolvent.tp --width 2048 --seeds " + std::to_string(kSeeds));
  for (const auto& [name, expect] : std::map<std::string, double>{
           {"s", s}, {"t", t}, {"q", s}, {"r2", r2}, {"r3", gamma * (s - lam * r2)}, {"c12", (s - s2) / (1.0 - lam)}}) {
    const json& q = r["quantities"][name];
    INFO(name << " = " << q["mean"].get<double>() << " +- " << q["sem"].get<double>() << ", MP " << expect);
    CHECK(std::abs(q["mean"].get<double>() - expect) <= 3 * q["sem"].get<double>());
  }
}

TEST_CASE("stochastic Lanczos quadrature agrees with the dense eigenvalues of the same matrices") {
  json dense = spectrum("semicircle.tp", 1024, 4);
  json slq = spectrum("semicircle.tp", 1024, 4, "--dense-max 512 --lanczos-steps 40 --probes 8");
  const json &d = dense["spectra"]["wigner"], &q = slq["spectra"]["wigner"];
  CHECK(q["method"] == "lanczos (40 steps, 8 probes per seed)");
  for (int k = 0; k < 4; ++k) {
    INFO("k=" << k + 1 << ": lanczos " << q["moments"][k]["mean"] << " dense " << d["moments"][k]["mean"]);
    CHECK(std::abs(q["moments"][k]["mean"].get<double>() - d["moments"][k]["mean"].get<double>()) <=
          4 * q["moments"][k]["sem"].get<double>() + 1e-12);
  }
  // Gauss quadrature's extreme nodes converge to the extreme eigenvalues from inside.
  CHECK(q["max"].get<double>() <= d["max"].get<double>() + 1e-9);
  CHECK(q["max"].get<double>() >= 0.95 * d["max"].get<double>());
}
