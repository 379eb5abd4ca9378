// The free-probability back end (src/limit/pencil.cpp, free_probability.cpp)
// against closed forms: Marchenko-Pastur resolvent traces, the semicircle's
// Cauchy transform, and the agreement of its moments with the Z calculus.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "limit_helpers.hpp"

using netsor_test::limits_of;
using netsor_test::refusal;

namespace {

// s = tr(inv(X X^T + lam I)) for X[m, n] entries N(0, 1/n), gamma = m / n: the
// positive root of gamma lam s^2 + (lam + 1 - gamma) s - 1 = 0 (primer section 5).
double mp_s(double gamma, double lam) {
  double b = lam + 1 - gamma;
  return (-b + std::sqrt(b * b + 4 * gamma * lam)) / (2 * gamma * lam);
}

std::string mp_program(double gamma, double lam) {
  return "width m = " + std::to_string(gamma) + " n\nmatrix X[m, n] : gaussian(var=1)\nconst lam = " +
         std::to_string(lam) + "\nreport s = tr(inv(X @ X.T + lam * I))\nreport t = tr(inv(X.T @ X + lam * I))\n";
}

}  // namespace

TEST_CASE("free probability: Marchenko-Pastur resolvent traces to 1e-10") {
  for (double gamma : {0.25, 0.5, 1.0, 2.0, 3.0})
    for (double lam : {0.1, 0.5, 2.0}) {
      CAPTURE(gamma);
      CAPTURE(lam);
      auto L = limits_of(mp_program(gamma, lam));
      double s = mp_s(gamma, lam), t = (1 - gamma) / lam + gamma * s;
      CHECK(std::abs(L["s"].value - s) < 1e-10);
      CHECK(std::abs(L["t"].value - t) < 1e-10);
      CHECK(L["s"].abs_error < 1e-9);
      CHECK(L["s"].method.find("free probability") != std::string::npos);
    }
}

TEST_CASE("free probability: semicircle resolvent and polynomial traces") {
  // A = (W + W^T) / sqrt 2 is semicircular of variance 1: G(z) = (z - sqrt(z^2 - 4)) / 2,
  // tr(inv(A + 3 I)) = -G(-3) = (3 - sqrt 5) / 2; tr(A^2) = 1, tr(A^4) = 2 (Catalan).
  auto L = limits_of(
      "matrix W : gaussian(var=1)\noperator A = (W + W.T) / sqrt(2)\nreport r = tr(inv(A + 3 * I))\n"
      "report m2 = tr(A @ A)\nreport m4 = tr(A @ A @ A @ A)\nreport m3 = tr(A @ A @ A)\n");
  CHECK(std::abs(L["r"].value - (3 - std::sqrt(5.0)) / 2) < 1e-12);
  CHECK(std::abs(L["m2"].value - 1) < 1e-12);
  CHECK(std::abs(L["m3"].value) < 1e-12);
  CHECK(std::abs(L["m4"].value - 2) < 1e-12);
}

TEST_CASE("free probability: products of Ginibre matrices have Fuss-Catalan moments") {
  // tr((P2 P1 P1^T P2^T)^k) = C(3k, k) / (2k + 1): 1, 3, 12.
  auto L = limits_of(
      "matrix P[1] : gaussian(var=1)\nmatrix P[2] : gaussian(var=1)\noperator J = P[2] @ P[1]\n"
      "operator S = J @ J.T\nreport m1 = tr(S)\nreport m2 = tr(S @ S)\nreport m3 = tr(S @ S @ S)\n");
  CHECK(std::abs(L["m1"].value - 1) < 1e-11);
  CHECK(std::abs(L["m2"].value - 3) < 1e-11);
  CHECK(std::abs(L["m3"].value - 12) < 1e-10);
}

// The same moments of S = J J^T as tr(S^k) (pencil and fixed point over the
// diagonals' law) and as avg(v * S^k v) (the Z calculus): two routes, one answer.
namespace {

void two_routes(const std::string& net, int K) {
  std::string src = net + "operator S = J @ J.T\nvector v : gaussian(var=1)\nu0 = v\n", power = "S";
  for (int k = 1; k <= K; ++k) {
    std::string n = std::to_string(k);
    src += "report f" + n + " = tr(" + power + ")\nu" + n + " = S @ u" + std::to_string(k - 1) + "\nreport z" + n +
           " = avg(v * u" + n + ")\n";
    power += " @ S";
  }
  auto L = limits_of(src);
  for (int k = 1; k <= K; ++k) {
    std::string n = std::to_string(k);
    CAPTURE(k);
    CHECK(std::abs(L["f" + n].value - L["z" + n].value) < 1e-8);
    CHECK(L["f" + n].abs_error < 1e-8);
  }
}

}  // namespace

const std::string kTanh1 =
    "matrix W : gaussian(var=1.5)\nvector x : gaussian(var=1)\nh = W @ x\noperator J = diag(tanh'(h)) @ W\n";

TEST_CASE("free probability: two routes, one answer (tanh Jacobian, depth 1)") { two_routes(kTanh1, 2); }

TEST_CASE("free probability: tanh Jacobian moments against free cumulants (mpmath)") {
  // tests/unit/free_probability_refs.py: the moment-cumulant formula for the
  // free pair W W^T, D^2, with E[tanh'(h)^(2j)] by mpmath.
  auto L = limits_of(kTanh1 + "operator S = J @ J.T\nreport m1 = tr(S)\nreport m2 = tr(S @ S)\n"
                              "report m3 = tr(S @ S @ S)\n");
  const double ref[] = {0.59230437440154791, 0.99145875771598469, 2.1349394427208054};
  for (int k = 1; k <= 3; ++k) {
    CAPTURE(k);
    const auto& e = L["m" + std::to_string(k)];
    CHECK(std::abs(e.value - ref[k - 1]) < 1e-10);
    CHECK(std::abs(e.value - ref[k - 1]) <= e.abs_error + 1e-12);
  }
}

// Release only: the fixed point over a 2-d diagonal law is ~30 s here and
// 15 min under ASan; depth 1 runs the same code under the sanitizers.
#ifndef NETSOR_SANITIZED
TEST_CASE("free probability: two routes, one answer (tanh Jacobian, depth 2)") {
  two_routes("matrix W[1] : gaussian(var=1.5)\nmatrix W[2] : gaussian(var=1.5)\nvector x : gaussian(var=1)\n"
             "h[1] = W[1] @ x\nh[2] = W[2] @ tanh(h[1])\n"
             "operator J = diag(tanh'(h[2])) @ W[2] @ diag(tanh'(h[1])) @ W[1]\n",
             2);
}
#endif

TEST_CASE("free probability: a Wigner matrix plus a diagonal (Pastur's equation, mpmath)") {
  // tests/unit/free_probability_refs.py: G = E[1 / (z - G - tanh(x))] at z = -3.
  auto L = limits_of(
      "matrix W : gaussian(var=1)\nvector x : gaussian(var=1)\n"
      "operator A = (W + W.T) / sqrt(2) + diag(tanh(x))\nreport r = tr(inv(A + 3 * I))\n");
  CHECK(std::abs(L["r"].value - 0.41150892091463789) < 1e-10);
  CHECK(std::abs(L["r"].value - 0.41150892091463789) <= L["r"].abs_error + 1e-12);
}

TEST_CASE("free probability: what it does not cover is refused with a reason") {
  CHECK(refusal("matrix O : orthogonal(var=1)\nreport t = tr(inv(O @ O.T + I))\n").find("Haar-orthogonal") !=
        std::string::npos);
  // An inverse applied to a vector whose matrix also multiplies a vector: the
  // operator is not independent of the program's vectors.
  CHECK(refusal("matrix W : gaussian(var=1)\nvector v : gaussian(var=1)\nu = inv(W @ W.T + I) @ v\n"
                "report q = avg(u * (W @ v))\n")
            .find("applied to a vector is not derived: 'W' also multiplies a vector at line 4") != std::string::npos);
}

TEST_CASE("free probability: an inverse applied to an independent vector (rotation invariance)") {
  // Square Wishart, lam = 1: tr(inv(W W^T + I)) = s with s^2 + s - 1 = 0, so
  // s = (sqrt 5 - 1) / 2, and E[Z^v Z^u] = s E[Z^v Z^v] (Marchenko-Pastur at ratio 1).
  auto L = limits_of("matrix W : gaussian(var=1)\nvector v : gaussian(var=1)\nu = inv(W @ W.T + I) @ v\n"
                     "report q = avg(v * u)\n");
  const double s = (std::sqrt(5.0) - 1) / 2;
  CHECK(std::abs(L["q"].value - s) <= L["q"].abs_error + 1e-14);
  CHECK(L["q"].abs_error < 1e-9);

  // A resolvent applied to a resolvent's output is one operator, R2 R1, applied
  // to v (lowered so). Ratio 1: lam s^2 + lam s - 1 = 0, tr R^2 = -s'(lam) =
  // (s^2 + s) / (lam (2 s + 1)), and R1 R2 = (R1 - R2) / (lam2 - lam1), so
  // tr(R2 R1) = s1 - s2 and tr((R2 R1)^2) = tr R1^2 - 2 (s1 - s2) + tr R2^2.
  auto M = limits_of("matrix W : gaussian(var=1)\nvector v : gaussian(var=1)\n"
                     "z = inv(W @ W.T + 2 * I) @ (inv(W @ W.T + I) @ v)\n"
                     "report a = avg(v * z)\nreport b = avg(z * z)\n");
  auto s_of = [](double lam) { return (-lam + std::sqrt(lam * lam + 4 * lam)) / (2 * lam); };
  auto tr2 = [&](double lam) { double x = s_of(lam); return (x * x + x) / (lam * (2 * x + 1)); };
  const double a = s_of(1) - s_of(2), b = tr2(1) - 2 * a + tr2(2);
  CHECK(std::abs(M["a"].value - a) <= M["a"].abs_error + 1e-14);
  CHECK(std::abs(M["b"].value - b) <= M["b"].abs_error + 1e-14);
  CHECK(M["b"].abs_error < 1e-9);
}
