// The evaluation tape against a direct evaluation written here with the
// standard library (not netsor's apply_fn): random expression DAGs with shared
// subexpressions, every operation and built-in, scalar and array forms.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "netsor/expr.hpp"
#include "netsor/tape.hpp"

using namespace netsor;

namespace {

using Direct = std::function<double(const double*)>;

// The built-ins by their definitions (docs/language.md: log and sqrt guarded).
double direct_fn(Fn f, double z) {
  switch (f) {
    case Fn::Relu: return z > 0 ? z : 0;
    case Fn::Step: return z > 0 ? 1 : 0;
    case Fn::Abs: return std::fabs(z);
    case Fn::Sign: return (z > 0) - (z < 0);
    case Fn::Tanh: return std::tanh(z);
    case Fn::Erf: return std::erf(z);
    case Fn::Sigmoid: return 1 / (1 + std::exp(-z));
    case Fn::Gelu: return 0.5 * z * (1 + std::erf(z / std::sqrt(2.0)));
    case Fn::Softplus: return std::log(1 + std::exp(z));  // |z| stays small here
    case Fn::Sin: return std::sin(z);
    case Fn::Cos: return std::cos(z);
    case Fn::Exp: return std::exp(z);
    case Fn::Log: return std::log(std::max(z, 1e-300));
    case Fn::Sqrt: return std::sqrt(std::max(z, 0.0));
  }
  return NAN;
}

struct Node {
  Expr e;
  Direct f;
};

// A random DAG over `vars` leaves: each new node combines earlier ones (so
// subexpressions are shared), and values stay moderate: exp and log only see
// bounded or positive arguments, division only positive denominators.
Node random_dag(std::mt19937& rng, int vars, int nodes) {
  std::vector<Node> pool;
  for (int i = 0; i < vars; ++i) pool.push_back({var(10 + i), [i](const double* x) { return x[i]; }});
  std::uniform_real_distribution<double> U(-1.5, 1.5);
  auto any = [&]() -> const Node& { return pool[std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(rng)]; };
  const Fn fns[] = {Fn::Relu, Fn::Step, Fn::Abs, Fn::Sign, Fn::Tanh, Fn::Erf, Fn::Sigmoid,
                    Fn::Gelu, Fn::Softplus, Fn::Sin, Fn::Cos, Fn::Exp, Fn::Log, Fn::Sqrt};
  for (int k = 0; k < nodes; ++k) {
    Node a = any(), b = any();
    int op = std::uniform_int_distribution<int>(0, 8)(rng);
    Node n;
    switch (op) {
      case 0: n = {add(a.e, b.e), [a, b](const double* x) { return a.f(x) + b.f(x); }}; break;
      case 1: n = {sub(a.e, b.e), [a, b](const double* x) { return a.f(x) - b.f(x); }}; break;
      case 2: {  // products damped so that depth does not overflow
        Expr ta = call(Fn::Tanh, a.e);
        n = {mul(ta, b.e), [a, b](const double* x) { return std::tanh(a.f(x)) * b.f(x); }};
        break;
      }
      case 3: {
        Expr den = add(constant(1.0), pow(b.e, constant(2.0)));
        n = {div(a.e, den), [a, b](const double* x) { double v = b.f(x); return a.f(x) / (1 + v * v); }};
        break;
      }
      case 4: n = {neg(a.e), [a](const double* x) { return -a.f(x); }}; break;
      case 5: {
        double c = std::round(U(rng) * 100) / 100;
        n = {mul(constant(c), a.e), [a, c](const double* x) { return c * a.f(x); }};
        break;
      }
      case 6: {  // powers: integer of a bounded base, fractional of a positive one
        double p = std::uniform_int_distribution<int>(0, 1)(rng) ? 3.0 : 0.5;
        if (p == 3.0)
          n = {pow(call(Fn::Tanh, a.e), constant(3.0)), [a](const double* x) { return std::pow(std::tanh(a.f(x)), 3); }};
        else
          n = {pow(add(constant(0.5), call(Fn::Abs, a.e)), constant(0.5)),
               [a](const double* x) { return std::sqrt(0.5 + std::fabs(a.f(x))); }};
        break;
      }
      default: {
        Fn f = fns[std::uniform_int_distribution<int>(0, 13)(rng)];
        // Arguments kept where the definitions are tame: exp and softplus of a
        // bounded value, log of a positive one.
        Expr arg = a.e;
        Direct fa = a.f;
        if (f == Fn::Exp || f == Fn::Softplus) {
          arg = call(Fn::Tanh, a.e);
          fa = [a](const double* x) { return std::tanh(a.f(x)); };
        } else if (f == Fn::Log) {
          arg = add(constant(1.0), pow(a.e, constant(2.0)));
          fa = [a](const double* x) { double v = a.f(x); return 1 + v * v; };
        }
        n = {call(f, arg), [fa, f](const double* x) { return direct_fn(f, fa(x)); }};
      }
    }
    pool.push_back(n);
  }
  // The root sums the last few nodes, so that most of the DAG is reachable.
  Node root = pool.back();
  for (std::size_t i = pool.size() - 6; i + 1 < pool.size(); ++i) {
    Node p = pool[i], r = root;
    root = {add(r.e, p.e), [p, r](const double* x) { return r.f(x) + p.f(x); }};
  }
  return root;
}

}  // namespace

TEST_CASE("the tape agrees with direct evaluation on random expression DAGs, scalar and array forms") {
  std::mt19937 rng(2024);
  std::uniform_real_distribution<double> U(-2, 2);
  const int vars = 4, points = 257;
  int kinked_seen = 0;
  for (int t = 0; t < 200; ++t) {
    Node root = random_dag(rng, vars, 40);
    Tape tape(root.e, [](int id) { return id - 10; });
    CHECK(tape.size() <= node_count(root.e));  // shared nodes are computed once
    std::vector<Eigen::ArrayXd> cols(vars, Eigen::ArrayXd(points));
    for (auto& c : cols)
      for (Eigen::Index i = 0; i < points; ++i) c(i) = U(rng);
    cols[0](0) = 0.0;  // an exact kink point of relu/step/sign/abs of a leaf
    std::vector<const Eigen::ArrayXd*> in;
    for (const auto& c : cols) in.push_back(&c);
    Eigen::ArrayXd arr = tape.eval(in);
    std::vector<double> work, x(vars);
    for (Eigen::Index i = 0; i < points; ++i) {
      for (int d = 0; d < vars; ++d) x[d] = cols[d](i);
      double want = root.f(x.data());
      double got = tape.eval(x.data(), work);
      double tol = 1e-12 * std::max(1.0, std::abs(want));
      INFO("expression " << t << ": " << to_string(root.e, [](int id) { return "x" + std::to_string(id - 10); }));
      INFO("point " << i);
      REQUIRE(std::isfinite(want));
      CHECK(std::abs(got - want) <= tol);
      CHECK(std::abs(arr(i) - want) <= tol);
      // And the IR's own evaluator (the tape must not merely agree with itself).
      CHECK(std::abs(evaluate(root.e, [&](int id) { return x[id - 10]; }) - want) <= tol);
    }
    kinked_seen += to_string(root.e, [](int) { return "x"; }).find("step(") != std::string::npos;
  }
  CHECK(kinked_seen >= 10);  // the sample exercises the kinked built-ins
}

TEST_CASE("a 5000-deep expression compiles and evaluates") {
  // e_k = 0.5 e_{k-1} + y, e_0 = x: e_K = 0.5^K x + 2 y (1 - 0.5^K).
  Expr e = var(0);
  for (int k = 0; k < 5000; ++k) e = add(mul(constant(0.5), e), var(1));
  Tape tape(e, [](int id) { return id; });
  std::vector<double> work;
  const double x[2] = {3.0, -0.25};
  CHECK(std::abs(tape.eval(x, work) - (-0.5)) <= 1e-15);
  Eigen::ArrayXd a(2), b(2);
  a << 3.0, 1.0;
  b << -0.25, 0.75;
  Eigen::ArrayXd r = tape.eval(std::vector<const Eigen::ArrayXd*>{&a, &b});
  CHECK(std::abs(r(0) + 0.5) <= 1e-15);
  CHECK(std::abs(r(1) - 1.5) <= 1e-15);
}
