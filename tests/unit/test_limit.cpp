// The limit pass against references that do not come from netsor: closed forms
// and recursions from primer section 3, and an independent adaptive integration
// (Boost's double-exponential sinh-sinh rule, which netsor does not use).
#include <doctest/doctest.h>

#include <boost/math/quadrature/exp_sinh.hpp>
#include <boost/math/quadrature/sinh_sinh.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <map>

#include "limit_helpers.hpp"
#include "netsor/frontend.hpp"
#include "netsor/limit.hpp"

using namespace netsor;

namespace {

const std::string kDir = NETSOR_SOURCE_DIR;

std::map<std::string, limit::Estimate> limits(const std::string& file, FrontendOptions fo = {},
                                              limit::Options lo = {}) {
  auto p = compile_file(kDir + "/" + file, fo);
  auto r = limit::compute(p, lo);
  std::map<std::string, limit::Estimate> m;
  for (const auto& q : r.quantities) m[q.name] = q.estimate;
  return m;
}

using netsor_test::limits_of;

double binom(int n, int k) {
  double r = 1;
  for (int i = 1; i <= k; ++i) r = r * (n - k + i) / i;
  return r;
}

// E[f(u) g(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]) by nested sinh-sinh
// quadrature over R^2 (the reference integrator of these tests).
// `kink`: where f is not smooth (in u); the outer integral is split there.
template <class F, class G>
double gauss2(F f, G g, double k11, double k12, double k22, double kink = NAN) {
  boost::math::quadrature::sinh_sinh<double> ss(12);
  boost::math::quadrature::exp_sinh<double> es(12);
  double a = std::sqrt(k11), b = k12 / a, c = std::sqrt(std::max(0.0, k22 - b * b));
  const double inv = 1 / std::sqrt(2 * M_PI);
  auto outer = [&](double z1) {
    auto inner = [&](double z2) { return inv * std::exp(-0.5 * z2 * z2) * g(b * z1 + c * z2); };
    return inv * std::exp(-0.5 * z1 * z1) * f(a * z1) * ss.integrate(inner, 1e-14);
  };
  if (std::isnan(kink)) return ss.integrate(outer, 1e-13);
  double k = kink / a;
  return es.integrate(outer, -INFINITY, k, 1e-13) + es.integrate(outer, k, INFINITY, 1e-13);
}

template <class F>
double gauss1(F f, double var) {
  boost::math::quadrature::sinh_sinh<double> ss(12);
  double s = std::sqrt(var);
  return ss.integrate([&](double z) { return std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI) * f(s * z); }, 1e-14);
}

}  // namespace

TEST_CASE("Wigner moments are Catalan numbers (semicircle law)") {
  auto m = limits("programs/wigner_moments.tp");
  const double expected[] = {0, 1, 0, 2, 0, 5, 0, 14, 0, 42};
  for (int k = 1; k <= 10; ++k) {
    const auto& e = m.at("m[" + std::to_string(k) + "]");
    INFO("k = " << k << " method " << e.method);
    CHECK(std::abs(e.value - expected[k - 1]) <= 1e-10);
    CHECK(e.abs_error <= 1e-10);
  }
}

TEST_CASE("Wishart moments for rho = 2 and rho = 1/2 (Marchenko-Pastur)") {
  auto m = limits("programs/wishart_moments.tp");
  for (double rho : {2.0, 0.5}) {
    for (int k = 1; k <= 6; ++k) {
      double mk = 0;
      for (int r = 0; r < k; ++r) mk += std::pow(rho, -r) * binom(k, r) * binom(k - 1, r) / (r + 1);
      mk *= std::pow(rho, k);
      std::string name = (rho == 2.0 ? "rho2[" : "rho_half[") + std::to_string(k) + "]";
      INFO(name);
      CHECK(std::abs(m.at(name).value - mk) <= 1e-10 * std::max(1.0, mk));
    }
  }
}

TEST_CASE("products of Ginibre matrices: Fuss-Catalan moments") {
  auto m = limits("programs/ginibre_product.tp");
  for (int L : {2, 3})
    for (int k = 1; k <= 4; ++k) {
      double fc = binom((L + 1) * k, k) / (L * k + 1);
      std::string name = "L" + std::to_string(L) + "[" + std::to_string(k) + "]";
      INFO(name);
      CHECK(std::abs(m.at(name).value - fc) <= 1e-10 * fc);
    }
}

TEST_CASE("a 1000-step linear iteration is exact algebra and stays fast") {
  auto m = limits_of(R"(
matrix W : gaussian(var=1)
vector x[0] : gaussian(var=1)
for k in 1..1000 {
  x[k] = (W @ x[k-1] + W.T @ x[k-1]) / sqrt(2)
}
report m2 = avg(x[0] * x[2])
report m400 = avg(x[0] * x[400])
report m1000 = avg(x[999] * x[1])
)");
  CHECK(m.at("m2").value == doctest::Approx(1.0).epsilon(1e-12));
  double catalan200 = 1;  // C_n = prod_{k=2..n} (n + k) / k
  for (int k = 2; k <= 200; ++k) catalan200 *= double(200 + k) / k;
  CHECK(std::abs(m.at("m400").value / catalan200 - 1) <= 1e-9);
  CHECK(m.at("m1000").method == "exact (Gaussian algebra)");
}

namespace {
// NNGP recursion (primer section 3) for the four inputs of programs/mlp_nngp.tp.
struct Kernel {
  double k[4][4];
};
Kernel nngp_recursion(int layers, double sw2, double sb2, int act /*0 relu, 1 erf*/) {
  const double xi[4][3] = {{1.0, 0.0, 0.5}, {0.2, -1.0, 0.3}, {0.2, -1.0, 0.3}, {-0.7, 0.4, 1.1}};
  Kernel K;
  for (int a = 0; a < 4; ++a)
    for (int c = 0; c < 4; ++c) {
      double dot = 0;
      for (int i = 0; i < 3; ++i) dot += xi[a][i] * xi[c][i];
      K.k[a][c] = sw2 * dot / 3 + sb2;
    }
  for (int l = 1; l < layers; ++l) {
    Kernel N;
    for (int a = 0; a < 4; ++a)
      for (int c = 0; c < 4; ++c) {
        double k11 = K.k[a][a], k22 = K.k[c][c], k12 = K.k[a][c];
        double e;
        if (act == 0) {
          double cs = std::clamp(k12 / std::sqrt(k11 * k22), -1.0, 1.0);
          double th = std::acos(cs);
          e = std::sqrt(k11 * k22) * (std::sin(th) + (M_PI - th) * std::cos(th)) / (2 * M_PI);
        } else {
          e = 2 / M_PI * std::asin(2 * k12 / std::sqrt((1 + 2 * k11) * (1 + 2 * k22)));
        }
        N.k[a][c] = sw2 * e + sb2;
      }
    K = N;
  }
  return K;
}
}  // namespace

TEST_CASE("ReLU and erf NNGP, depth 5, four inputs with two identical: closed-form recursion") {
  FrontendOptions fo;
  fo.defines["depth"] = 5;  // 5 hidden layers: the report is K^6
  for (bool forced : {false, true}) {
    limit::Options lo;
    lo.force_quadrature = forced;
    auto m = limits("programs/mlp_nngp.tp", fo, lo);
    Kernel relu = nngp_recursion(6, 2.0, 0.1, 0), erf = nngp_recursion(6, 1.5, 0.1, 1);
    double tol = forced ? 1e-6 : 1e-10;
    for (int a = 1; a <= 4; ++a)
      for (int c = a; c <= 4; ++c) {
        std::string ix = "[" + std::to_string(a) + "][" + std::to_string(c) + "]";
        INFO(ix << (forced ? " forced quadrature" : ""));
        CHECK(std::abs(m.at("relu_K" + ix).value / relu.k[a - 1][c - 1] - 1) <= tol);
        CHECK(std::abs(m.at("erf_K" + ix).value / erf.k[a - 1][c - 1] - 1) <= tol);
        CHECK(m.at("relu_K" + ix).abs_error <= tol * relu.k[a - 1][c - 1]);
      }
  }
}

namespace {
// tanh MLP with biases as in programs/mlp_ntk.tp: NNGP and NTK recursions with
// every expectation by the reference integrator.
struct NTK {
  double K[3][3], T[3][3];
};
NTK tanh_ntk(int L, double sw2, double sb2) {
  const double xi[3][2] = {{1.0, 0.5}, {-0.3, 1.2}, {0.8, 0.8}};
  NTK r;
  for (int a = 0; a < 3; ++a)
    for (int c = 0; c < 3; ++c) r.K[a][c] = r.T[a][c] = sw2 * (xi[a][0] * xi[c][0] + xi[a][1] * xi[c][1]) / 2 + sb2;
  auto phi = [](double z) { return std::tanh(z); };
  auto dphi = [](double z) { double t = std::tanh(z); return 1 - t * t; };
  // Theta^{l+1} = K^{l+1} + sw2 E[phi'(u) phi'(v)] Theta^l for l = 1..L (the
  // last step is the readout layer).
  for (int l = 1; l <= L; ++l) {
    NTK n;
    for (int a = 0; a < 3; ++a)
      for (int c = 0; c < 3; ++c) {
        double k11 = r.K[a][a], k12 = r.K[a][c], k22 = r.K[c][c];
        n.K[a][c] = sw2 * gauss2(phi, phi, k11, k12, k22) + sb2;
        n.T[a][c] = n.K[a][c] + sw2 * gauss2(dphi, dphi, k11, k12, k22) * r.T[a][c];
      }
    r = n;
  }
  return r;
}
}  // namespace

TEST_CASE("tanh NNGP and NTK (depth 3, biases) from forward and backward passes: NTK recursion") {
  auto m = limits("programs/mlp_ntk.tp");
  // K^L of the last hidden preactivation: recursion run L-1 = 2 steps.
  NTK k2 = tanh_ntk(2, 1.5, 0.1);
  CHECK(std::abs(m.at("nngp[1][2]").value - k2.K[0][1]) <= 1e-8);
  NTK full = tanh_ntk(3, 1.5, 0.1);  // Theta^{L+1}: the output
  for (int a = 1; a <= 3; ++a)
    for (int c = a; c <= 3; ++c) {
      std::string nm = "ntk[" + std::to_string(a) + "][" + std::to_string(c) + "]";
      INFO(nm << " method " << m.at(nm).method);
      CHECK(std::abs(m.at(nm).value - full.T[a - 1][c - 1]) <= 1e-8);
      CHECK(m.at(nm).abs_error <= 1e-8);
    }
}

TEST_CASE("the transpose correction: hand-derived limits of programs/transpose_correction.tp") {
  // y = W x, u = tanh(y), z = W^T u, w = W tanh(z); sigma^2 = 1.5, E[x^2] = 2.
  // Z^z = Zhat^{W^T u} + a Z^x with a = sigma^2 E[tanh'(Z^y)], Var Z^y = 3, so
  //   c = E[x z] = a E[x^2]                                   (Zhat^{W^T u} independent of x)
  //   d = E[y w] = sigma^2 E[x tanh z] + sigma^2 E[tanh'(Z^z)] E[y tanh y]
  // and by Stein's lemma E[x tanh z] = a E[x^2] E[tanh' z], E[y tanh y] = 3 E[tanh' y] = c:
  //   d = 2 sigma^2 c E[tanh'(Z^z)],  Var Z^z = sigma^2 E[tanh(Z^y)^2] + a^2 E[x^2].
  auto dt = [](double z) { double t = std::tanh(z); return 1 - t * t; };
  auto t2 = [](double z) { double t = std::tanh(z); return t * t; };
  double s2 = 1.5, ex2 = 2.0, vy = s2 * ex2;
  double a = s2 * gauss1(dt, vy);
  double c = a * ex2;
  double vz = s2 * gauss1(t2, vy) + a * a * ex2;
  double d = 2 * s2 * c * gauss1(dt, vz);
  auto m = limits("programs/transpose_correction.tp");
  CHECK(std::abs(m.at("c").value - c) <= 1e-10);
  CHECK(std::abs(m.at("d").value - d) <= 1e-9);
  // The same two limits by mpmath at 40 digits (tanh-sinh over the real line),
  // a second reference independent of the one above; gradient independence
  // (dropping Zdot) would give 0 for both.
  CHECK(std::abs(m.at("c").value - 1.2316827465656092445) <= 1e-10);
  CHECK(std::abs(m.at("d").value - 1.9038476851118049681) <= 1e-9);
}

TEST_CASE("MasterExpectation: methods and rank-deficient families") {
  limit::MasterExpectation E;
  // Two leaves, identical (rank 1): E[relu(g0) relu(g1)] = E[relu(g)^2] = 1/2 for var 1.
  limit::GaussianLaw law{[](int) { return 0.0; }, [](int, int) { return 1.0; }};
  auto e = E.expect(mul(call(Fn::Relu, var(0)), call(Fn::Relu, var(1))), law);
  CHECK(e.value == doctest::Approx(0.5).epsilon(1e-14));
  CHECK(e.method.find("closed form") != std::string::npos);
  limit::MasterExpectation Q({1e-12, true, 1});
  auto q = Q.expect(mul(call(Fn::Relu, var(0)), call(Fn::Relu, var(1))), law);
  CHECK(q.value == doctest::Approx(0.5).epsilon(1e-10));
  // Kinked integrand with a shifted kink, against the reference integrator.
  limit::GaussianLaw shifted{[](int i) { return i == 0 ? 0.3 : 0.0; },
                             [](int a, int b) { return a == b ? 1.0 : 0.4; }};
  auto k = Q.expect(mul(call(Fn::Relu, var(0)), call(Fn::Tanh, var(1))), shifted);
  double ref = gauss2([](double u) { return std::max(u + 0.3, 0.0); }, [](double v) { return std::tanh(v); }, 1, 0.4, 1,
                    -0.3);
  CHECK(std::abs(k.value - ref) <= 1e-10);
  // Five dimensions, kinked and not separable: randomized QMC, with an error bar
  // consistent with a plain Monte Carlo estimate made here.
  limit::GaussianLaw iid{[](int) { return 0.0; }, [](int a, int b) { return a == b ? 1.0 : 0.0; }};
  Expr f = mul(mul(call(Fn::Sigmoid, add(var(0), mul(var(1), var(2)))), call(Fn::Relu, sub(var(3), var(4)))),
               call(Fn::Cos, mul(var(2), var(4))));
  auto s = E.expect(f, iid);
  CHECK(s.method.find("QMC") != std::string::npos);
  CHECK(s.abs_error < 1e-2);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> N;
  double sum = 0, sum2 = 0;
  const int M = 400000;
  for (int i = 0; i < M; ++i) {
    double g[5];
    for (double& x : g) x = N(rng);
    double v = 1 / (1 + std::exp(-(g[0] + g[1] * g[2]))) * std::max(g[3] - g[4], 0.0) * std::cos(g[2] * g[4]);
    sum += v;
    sum2 += v * v;
  }
  double mc = sum / M, se = std::sqrt((sum2 / M - mc * mc) / M);
  CHECK(std::abs(s.value - mc) <= 5 * std::sqrt(se * se + s.abs_error * s.abs_error / 4));
}

TEST_CASE("a divergent expectation is reported, naming the variable") {
  try {
    limits_of("vector x : gaussian(var=1)\nreport r = avg(x / x)\n");
    FAIL("expected an error");
  } catch (const ProgramError& e) {
    CHECK(e.diagnostic().message.find("'r'") != std::string::npos);
    CHECK(e.diagnostic().loc.line == 2);
  }
  try {
    limits_of("vector x : gaussian(var=1)\ny = exp(x^2)\nreport r = avg(y)\n");
    FAIL("expected an error");
  } catch (const ProgramError& e) {
    CHECK(e.diagnostic().message.find("exp of a random quantity unbounded above") != std::string::npos);
  }
}

TEST_CASE("NTK-parametrization training limit = kernel gradient descent with the NTK") {
  // programs/ntk_mlp_train.tp: tanh, 2 hidden layers, no biases, weights N(0, 1/fan_in) except the
  // input layer N(0, 1) (so K^1 = xi.xi'), eta = 1, full batch on 2 inputs, squared loss averaged
  // over them, output centred at initialization (g = f - f_0, g_0 = 0). Reference: the NTK
  // recursion of primer section 3 with the reference integrator, then
  //   g_{t+1} = g_t - eta Theta (g_t - y) / K.
  const double xi[2][3] = {{1.0, 0.5, -0.5}, {-0.3, 1.0, 0.8}};
  const double y[2] = {1.0, -0.5};
  double Kl[2][2], Th[2][2];
  for (int a = 0; a < 2; ++a)
    for (int c = 0; c < 2; ++c) {
      Kl[a][c] = 0;
      for (int i = 0; i < 3; ++i) Kl[a][c] += xi[a][i] * xi[c][i];
      Th[a][c] = Kl[a][c];
    }
  auto phi = [](double z) { return std::tanh(z); };
  auto dphi = [](double z) { double t = std::tanh(z); return 1 - t * t; };
  for (int l = 0; l < 2; ++l) {
    double Kn[2][2], Tn[2][2];
    for (int a = 0; a < 2; ++a)
      for (int c = 0; c < 2; ++c) {
        Kn[a][c] = gauss2(phi, phi, Kl[a][a], Kl[a][c], Kl[c][c]);
        Tn[a][c] = Kn[a][c] + gauss2(dphi, dphi, Kl[a][a], Kl[a][c], Kl[c][c]) * Th[a][c];
      }
    std::memcpy(Kl, Kn, sizeof Kl);
    std::memcpy(Th, Tn, sizeof Th);
  }
  auto m = limits("programs/ntk_mlp_train.tp");
  double g[2] = {0, 0};
  for (int t = 1; t <= 3; ++t) {
    double chi[2] = {(g[0] - y[0]) / 2, (g[1] - y[1]) / 2};
    for (int j = 0; j < 2; ++j) g[j] -= Th[j][0] * chi[0] + Th[j][1] * chi[1];
    for (int j = 0; j < 2; ++j) {
      std::string nm = "g_t[" + std::to_string(t) + "][" + std::to_string(j + 1) + "]";
      INFO(nm);
      CHECK(std::abs(m.at(nm).value - g[j]) <= 1e-8);
      CHECK(m.at(nm).abs_error >= std::abs(m.at(nm).value - g[j]));  // the error bar covers the truth
    }
  }
  // The features move like n^{-1/2}, with a nonzero coefficient.
  for (const char* q : {"move[1]", "move[2]"}) {
    CHECK(m.at(q).value == 0);
    CHECK(m.at(q).order == doctest::Approx(-0.5));
    CHECK(m.at(q).coefficient > 0.1);
  }
}
