// abc-parametrizations (primer section 4) and the order analysis of width powers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "limit_helpers.hpp"
#include "netsor/abc.hpp"
#include "netsor/exec.hpp"
#include "netsor/frontend.hpp"
#include "netsor/limit.hpp"

using namespace netsor;

namespace {

// An independent reading of primer section 4, written for this test: the
// conditions as plain boolean algebra on (a, b, c).
struct Reference {
  bool stable, nontrivial;
  std::string regime;
  double r;
};
Reference reference(int L, const std::vector<double>& a, const std::vector<double>& b, double c) {
  const double e = 1e-9;
  double out_ab = a[L] + b[L], out_2ac = 2 * a[L] + c;
  double r = 1e300;
  for (int l = 0; l < L; ++l) r = std::min(r, std::min(out_ab, out_2ac) + c - 1 + 2 * a[l] + (l == 0));
  bool ok = std::abs(a[0] + b[0]) < e;
  for (int l = 1; l < L; ++l) ok = ok && std::abs(a[l] + b[l] - 0.5) < e;
  ok = ok && out_ab > 0.5 - e && r > -e && out_2ac > 1 - e && out_ab + r > 1 - e;
  bool nontriv = ok && (std::abs(out_ab + r - 1) < e || std::abs(out_2ac - 1) < e);
  std::string regime = !ok ? "unstable" : !nontriv ? "trivial" : std::abs(r) < e ? "feature_learning" : "kernel";
  return {ok, nontriv, regime, r};
}

std::map<std::string, limit::Estimate> limits(const std::string& src) { return netsor_test::limits_of(src); }
std::string error_of(const std::string& src) { return netsor_test::refusal(src); }

}  // namespace

TEST_CASE("the presets get the primer's verdicts for L = 1..4") {
  for (int L = 1; L <= 4; ++L) {
    INFO("L = " << L);
    // The primer's r values are for L >= 2 (its table's heading); the regimes hold for every L.
    auto sp = abc::classify(abc::preset("sp", L));
    CHECK(sp.regime == "unstable");
    if (L >= 2) CHECK(sp.r == doctest::Approx(-1));
    double one = 1;
    auto sp1 = abc::classify(abc::preset("sp", L, &one));
    CHECK(sp1.regime == "kernel");
    if (L >= 2) CHECK(sp1.r == doctest::Approx(0.5));
    auto ntk = abc::classify(abc::preset("ntk", L));
    CHECK(ntk.regime == "kernel");
    CHECK(ntk.r == doctest::Approx(0.5));
    auto mup = abc::classify(abc::preset("mup", L));
    CHECK(mup.regime == "feature_learning");
    CHECK(mup.stable);
    CHECK(mup.nontrivial);
    CHECK(mup.r == doctest::Approx(0));
  }
  auto mf = abc::classify(abc::preset("mf", 1));
  CHECK(mf.regime == "feature_learning");
  CHECK(mf.r == doctest::Approx(0));
  CHECK_THROWS_AS(abc::preset("mf", 2), std::invalid_argument);
  CHECK_THROWS_AS(abc::preset("xyz", 2), std::invalid_argument);
}

TEST_CASE("verdicts are invariant under (a + theta, b - theta, c - 2 theta)") {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> quarter(-8, 8);  // theta on a grid of 1/4: equalities stay exact
  for (const char* name : {"sp", "ntk", "mup"})
    for (int L = 1; L <= 4; ++L)
      for (int k = 0; k < 10; ++k) {
        auto p = abc::preset(name, L);
        auto q = abc::shift(p, quarter(rng) / 4.0);
        auto v = abc::classify(p), w = abc::classify(q);
        CHECK(v.regime == w.regime);
        CHECK(v.r == doctest::Approx(w.r));
        for (int l = 0; l < L; ++l) CHECK(v.r_l[l] == doctest::Approx(w.r_l[l]));
      }
}

TEST_CASE("200 random parametrizations agree with an independent implementation") {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> g(-4, 4), layers(1, 4), coin(0, 1);
  int stable = 0, fl = 0, kernel = 0;
  for (int t = 0; t < 200; ++t) {
    abc::Parametrization p;
    p.L = layers(rng);
    if (coin(rng)) {
      // Unstructured: every exponent on a grid of 1/4.
      for (int l = 0; l <= p.L; ++l) {
        p.a.push_back(g(rng) / 4.0);
        p.b.push_back(g(rng) / 4.0);
      }
      p.c = g(rng) / 4.0;
    } else {
      // Near the interesting region: a preset moved along the symmetry, then
      // perhaps one of a_{L+1}, b_{L+1}, c nudged by 1/4.
      const char* names[] = {"sp", "ntk", "mup"};
      double one = 1;
      int which = std::uniform_int_distribution<int>(0, 3)(rng);
      p = which == 3 ? abc::preset("sp", p.L, &one) : abc::preset(names[which], p.L);
      p = abc::shift(p, g(rng) / 4.0);
      int nudge = std::uniform_int_distribution<int>(0, 5)(rng);
      double d = coin(rng) ? 0.25 : -0.25;
      if (nudge == 0) p.a[p.L] += d;
      if (nudge == 1) p.b[p.L] += d;
      if (nudge == 2) p.c += d;
    }
    auto v = abc::classify(p);
    auto ref = reference(p.L, p.a, p.b, p.c);
    CHECK(v.stable == ref.stable);
    CHECK(v.nontrivial == ref.nontrivial);
    CHECK(v.regime == ref.regime);
    CHECK(v.r == doctest::Approx(ref.r));
    stable += v.stable;
    fl += v.regime == "feature_learning";
    kernel += v.regime == "kernel";
  }
  CHECK(stable >= 20);  // the sample covers the interesting cases
  CHECK(fl >= 5);
  CHECK(kernel >= 5);
}

TEST_CASE("order analysis: width powers in the limit pass") {
  const std::string pre = "vector x : gaussian(var=2)\nvector v : gaussian(var=1)\n";
  // n^p cancels: the limit is the moment's.
  auto m = limits(pre + "report r = n * avg(x * x) / n\nreport s = n^-0.5 * avg(x * x)\n");
  CHECK(m.at("r").value == doctest::Approx(2.0).epsilon(1e-12));
  CHECK(m.at("s").value == 0.0);
  CHECK(m.at("s").method.find("vanishes like n^-0.5") != std::string::npos);
  // Growth is an instability, named with its exponent.
  CHECK(error_of(pre + "report r = n^0.5 * avg(x * x)\n").find("unstable: report 'r' grows like n^0.5") !=
        std::string::npos);
  CHECK(error_of(pre + "y = n^0.25 * x\nreport r = avg(y * y)\n").find("'y' grow like n^0.25") != std::string::npos);
  // A growing power times a moment of mean 0 is a fluctuation, never a number.
  CHECK(error_of(pre + "report f = n^0.5 * avg(v * x)\n").find("fluctuation") != std::string::npos);
  // A vanishing vector rescaled to O(1) keeps its law: n * (n^-1 x) = x, and
  // E[tanh(x) x] for x ~ N(0, 2) is 0.96004850867210275294 (mpmath, 40 digits).
  auto k = limits(pre + "d = n^-1 * x\ny = tanh(n * d)\nreport q = avg(y * x)\n");
  CHECK(std::abs(k.at("q").value - 0.96004850867210275294) <= 1e-10);
  // Terms of lower order are dropped; nonlinearities of vanishing arguments expand.
  auto t = limits(pre + "y = x + n^-0.5 * tanh(v)\nz = tanh(n^-1 * x) * n\nreport a = avg(y * y)\nreport b = avg(z * x)\n");
  CHECK(t.at("a").value == doctest::Approx(2.0).epsilon(1e-12));
  CHECK(t.at("b").value == doctest::Approx(2.0).epsilon(1e-12));
}

TEST_CASE("order analysis: the rewrites of differences whose leading terms cancel") {
  // x ~ N(0, 2), v ~ N(0, 1) independent. Expected values by hand, the Gaussian
  // constants by mpmath (40 digits):
  //   E tanh(v)^2 = 0.39429449039784117442 (v ~ N(0, 1)),
  //   E tanh'(x) = 0.48002425433605137647, E x tanh(x) = 0.96004850867210275294,
  //   E x^2 tanh'(x) = 0.25223743213045724555 (x ~ N(0, 2)).
  const std::string pre = "vector x : gaussian(var=2)\nvector v : gaussian(var=1)\n";
  auto near = [](const limit::Estimate& e, double want) {
    INFO("value " << e.value << " +- " << e.abs_error << " (" << e.method << "), want " << want);
    CHECK(std::abs(e.value - want) <= e.abs_error + 1e-12 * std::max(1.0, std::abs(want)));
    CHECK(e.abs_error <= 1e-8 * std::max(1.0, std::abs(want)));
  };
  // Common additive terms: n^1/2 ((x + n^-1/2 tanh v) - x) = tanh v.
  auto c = limits(pre + "y = n^0.5 * ((x + n^-0.5 * tanh(v)) - x)\nreport r = avg(y * tanh(v))\n");
  near(c.at("r"), 0.39429449039784117442);
  // XY - ZW = (X - Z) Y + Z (Y - W): n^1/2 (a tanh a - x tanh x) -> v (tanh x + x tanh' x), a = x + n^-1/2 v;
  // E[v^2 x (tanh x + x tanh' x)] = E x tanh x + E x^2 tanh' x.
  auto p = limits(pre + "y = n^0.5 * ((x + n^-0.5 * v) * tanh(x + n^-0.5 * v) - x * tanh(x))\n" +
                  "report r = avg(y * v * x)\n");
  near(p.at("r"), 0.96004850867210275294 + 0.25223743213045724555);
  // F(A) - F(B) to first order: n^1/2 (tanh(x + n^-1/2 v) - tanh x) -> tanh'(x) v; a power likewise, 3 x^2 v.
  auto f = limits(pre + "y = n^0.5 * (tanh(x + n^-0.5 * v) - tanh(x))\nreport r = avg(y * v)\n" +
                  "z = n^0.5 * ((x + n^-0.5 * v)^3 - x^3)\nreport q = avg(z * v)\n");
  near(f.at("r"), 0.48002425433605137647);
  near(f.at("q"), 6.0);  // 3 E x^2 E v^2
  // Two vanishing orders: n (tanh(x + n^-1 v) - tanh(x)) -> tanh'(x) v as well.
  auto g = limits(pre + "y = n * (tanh(x + n^-1 * v) - tanh(x))\nreport r = avg(y * v)\n");
  near(g.at("r"), 0.48002425433605137647);
  // Through a kink the first-order term is relu'(x) v = step(x) v, E step(x) v^2 = 1/2:
  // either that value within its error, or a refusal that names the report.
  std::string src = pre + "y = n^0.5 * (relu(x + n^-0.5 * v) - relu(x))\nreport r = avg(y * v)\n";
  std::string err = error_of(src);
  if (err.empty())
    near(limits(src).at("r"), 0.5);
  else
    CHECK(err.find("'y'") != std::string::npos);
}

TEST_CASE("order analysis: the same differences through named intermediates") {
  // As above, with a = x + n^-1/2 (...) given a name: the coordinates of y are
  // tanh(v), resp. O(1), at every width, so "unstable" would be a false verdict.
  // Either the hand-derived value within its error, or a refusal that does not
  // call the program unstable.
  const std::string pre = "vector x : gaussian(var=2)\nvector v : gaussian(var=1)\n";
  const std::pair<std::string, double> cases[] = {
      {"a = x + n^-0.5 * tanh(v)\ny = n^0.5 * (a - x)\nreport r = avg(y * tanh(v))\n", 0.39429449039784117442},
      {"a = x + n^-0.5 * v\ny = n^0.5 * (a * tanh(a) - x * tanh(x))\nreport r = avg(y * v * x)\n",
       0.96004850867210275294 + 0.25223743213045724555},
      {"a = x + n^-0.5 * v\ny = n^0.5 * (tanh(a) - tanh(x))\nreport r = avg(y * v)\n", 0.48002425433605137647}};
  for (const auto& [body, want] : cases) {
    INFO(body);
    std::string err = error_of(pre + body);
    CHECK(err.find("unstable") == std::string::npos);
    if (err.empty()) {
      auto e = limits(pre + body).at("r");
      CHECK(std::abs(e.value - want) <= e.abs_error + 1e-12);
    }
  }
}

TEST_CASE("the executor uses the real width for n") {
  auto p = compile_string("vector x : gaussian(var=1)\nreport w = n + 0 * avg(x)\nreport r = n * avg(x * x) / n\n",
                          std::string(NETSOR_SOURCE_DIR) + "/tests/unit/snippet.tp");
  exec::Options o;
  o.width = 300;
  o.seeds = 2;
  auto r = exec::run(p, o);
  CHECK(r.quantities[0].mean == 300.0);
}

TEST_CASE("SP with a constant learning rate is reported unstable, naming the variable and exponent") {
  try {
    limit::compute(compile_file(std::string(NETSOR_SOURCE_DIR) + "/programs/sp_unstable.tp"));
    FAIL("expected an instability");
  } catch (const ProgramError& e) {
    CHECK(e.diagnostic().message.find("unstable") != std::string::npos);
    CHECK(e.diagnostic().message.find("grow like n^0.5") != std::string::npos);
    CHECK(e.diagnostic().message.find("w[2]") != std::string::npos);
  }
  FrontendOptions fo;
  fo.defines["c"] = 1;  // SP with c = 1 is stable: the features do not move in the limit
  auto r = limit::compute(compile_file(std::string(NETSOR_SOURCE_DIR) + "/programs/sp_unstable.tp", fo));
  CHECK(std::abs(r.quantities[0].estimate.value) <= 1e-12);
}
