// The coordinatewise expression IR: folding, symbolic derivatives (checked
// against central finite differences), substitution, affine detection.
#include <doctest/doctest.h>

#include <cmath>

#include "netsor/expr.hpp"

using namespace netsor;

namespace {
double at(const Expr& e, double z) {
  return evaluate(e, [&](int) { return z; });
}
// Central difference with step h; error O(h^2 f''').
double fd(const Expr& e, double z, double h = 1e-5) { return (at(e, z + h) - at(e, z - h)) / (2 * h); }
}  // namespace

TEST_CASE("constructors fold constants and drop identities") {
  Expr x = var(0);
  CHECK(add(constant(0), x) == x);
  CHECK(mul(constant(1), x) == x);
  double v = -1;
  CHECK(is_const(mul(constant(0), x), &v));
  CHECK(v == 0);
  CHECK(is_const(add(constant(2), constant(3)), &v));
  CHECK(v == 5);
  CHECK(is_const(call(Fn::Tanh, constant(0.5)), &v));
  CHECK(v == doctest::Approx(std::tanh(0.5)).epsilon(1e-15));
}

TEST_CASE("derivative of every smooth built-in matches finite differences") {
  const Fn smooth[] = {Fn::Tanh, Fn::Erf, Fn::Sigmoid, Fn::Gelu, Fn::Softplus, Fn::Sin, Fn::Cos, Fn::Exp};
  for (Fn f : smooth) {
    Expr e = call(f, var(0));
    Expr d = derivative(e, 0);
    for (double z : {-2.3, -0.7, 0.1, 0.9, 1.7}) {
      INFO(fn_name(f), " at ", z);
      CHECK(at(d, z) == doctest::Approx(fd(e, z)).epsilon(1e-8));
    }
  }
  // log and sqrt on their domain
  for (Fn f : {Fn::Log, Fn::Sqrt}) {
    Expr e = call(f, var(0));
    for (double z : {0.3, 1.0, 2.5}) CHECK(at(derivative(e, 0), z) == doctest::Approx(fd(e, z)).epsilon(1e-8));
  }
}

TEST_CASE("kinked built-ins differentiate almost everywhere") {
  Expr x = var(0);
  CHECK(at(derivative(call(Fn::Relu, x), 0), 1.3) == 1.0);
  CHECK(at(derivative(call(Fn::Relu, x), 0), -1.3) == 0.0);
  CHECK(at(derivative(call(Fn::Abs, x), 0), -2.0) == -1.0);
  double v;
  CHECK(is_const(derivative(call(Fn::Step, x), 0), &v));
  CHECK(v == 0.0);
}

TEST_CASE("chain, product, quotient and power rules") {
  Expr x = var(0), y = var(1);
  // f = tanh(x * y) / (1 + x^2) + x^y
  Expr f = add(div(call(Fn::Tanh, mul(x, y)), add(constant(1), pow(x, constant(2)))), pow(x, y));
  auto eval2 = [&](const Expr& e, double a, double b) {
    return evaluate(e, [&](int id) { return id == 0 ? a : b; });
  };
  double a = 0.8, b = 1.3, h = 1e-6;
  double dx = (eval2(f, a + h, b) - eval2(f, a - h, b)) / (2 * h);
  double dy = (eval2(f, a, b + h) - eval2(f, a, b - h)) / (2 * h);
  CHECK(eval2(derivative(f, 0), a, b) == doctest::Approx(dx).epsilon(1e-7));
  CHECK(eval2(derivative(f, 1), a, b) == doctest::Approx(dy).epsilon(1e-7));
}

TEST_CASE("guarded log and sqrt never give NaN") {
  CHECK(std::isfinite(apply_fn(Fn::Log, -1.0)));
  CHECK(std::isfinite(apply_fn(Fn::Log, 0.0)));
  CHECK(apply_fn(Fn::Sqrt, -4.0) == 0.0);
  CHECK(std::isfinite(apply_fn(Fn::Sigmoid, -800.0)));
  CHECK(std::isfinite(apply_fn(Fn::Softplus, 800.0)));
}

TEST_CASE("substitute and free_vars") {
  Expr e = add(mul(var(3), var(5)), call(Fn::Relu, var(3)));
  CHECK(free_vars(e) == std::vector<int>{3, 5});
  Expr s = substitute(e, [](int id) { return id == 3 ? constant(2.0) : var(7); });
  CHECK(free_vars(s) == std::vector<int>{7});
  CHECK(evaluate(s, [](int) { return 1.5; }) == doctest::Approx(2 * 1.5 + 2));
}

TEST_CASE("as_affine recognises linear combinations only") {
  std::vector<double> c;
  double off;
  Expr lin = sub(mul(constant(2), var(0)), div(add(var(1), constant(4)), constant(2)));
  REQUIRE(as_affine(lin, c, off));
  CHECK(c[0] == 2.0);
  CHECK(c[1] == -0.5);
  CHECK(off == -2.0);
  CHECK_FALSE(as_affine(mul(var(0), var(1)), c, off));
  CHECK_FALSE(as_affine(call(Fn::Tanh, var(0)), c, off));
}

TEST_CASE("to_string parenthesises by precedence") {
  auto nm = [](int id) { return "x" + std::to_string(id); };
  Expr e = mul(add(var(0), var(1)), pow(var(2), constant(2)));
  CHECK(to_string(e, nm) == "(x0 + x1) * x2^2");
  CHECK(to_string(sub(var(0), sub(var(1), var(2))), nm) == "x0 - (x1 - x2)");
}
