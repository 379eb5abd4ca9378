// The expression walker (include/netsor/expr_walk.hpp): each distinct node is
// folded once, operands left to right, without recursion on the call stack;
// the passes built on it (same, as_affine, derivative, substitute, evaluate)
// stay linear in the DAG where its tree is astronomically large.
#include <doctest/doctest.h>

#include <pthread.h>

#include <cmath>
#include <string>

#include "netsor/expr.hpp"
#include "netsor/expr_walk.hpp"

using namespace netsor;

namespace {

// x_{k+1} = x_k + x_k, k levels: k + 1 distinct nodes, 2^(k+1) - 1 as a tree.
Expr doubling(int levels, Expr x) {
  for (int i = 0; i < levels; ++i) x = add(x, x);
  return x;
}

// Records the order in which nodes are folded; counts every rule call.
struct Trace {
  std::string order;
  int calls = 0;
  int constant(const Expr& e) { return ++calls, order += std::to_string((int)e->value), 0; }
  int variable(const Expr& e) { return ++calls, order += "v" + std::to_string(e->var), 0; }
  int add(const Expr&, int, int) { return ++calls, order += "+", 0; }
  int sub(const Expr&, int, int) { return ++calls, order += "-", 0; }
  int mul(const Expr&, int, int) { return ++calls, order += "*", 0; }
  int div(const Expr&, int, int) { return ++calls, order += "/", 0; }
  int neg(const Expr&, int) { return ++calls, order += "~", 0; }
  int pow(const Expr&, int, int) { return ++calls, order += "^", 0; }
  int call(const Expr&, int) { return ++calls, order += "f", 0; }
};

}  // namespace

TEST_CASE("the walker folds each distinct node once, operands left to right") {
  Expr x = var(0), y = var(1);
  Expr shared = mul(x, y);
  Expr e = sub(add(shared, call(Fn::Tanh, shared)), pow(y, constant(2)));
  Trace t;
  fold<int>(e, t);
  // postorder: x y * (once) tanh + ; then y (already folded) 2 ^ -
  CHECK(t.order == "v0v1*f+2^-");
  CHECK(t.calls == (int)node_count(e));
}

TEST_CASE("a persistent Fold answers later questions from its memo") {
  Expr x = var(0);
  Expr inner = add(x, constant(1));
  Expr outer = mul(inner, inner);
  Trace t;
  Fold<int, Trace> f(t);
  f(outer);
  int after_outer = t.calls;
  f(inner);  // already folded as part of outer
  CHECK(t.calls == after_outer);
  CHECK(after_outer == 4);  // x, 1, +, *
}

TEST_CASE("same, as_affine, derivative and evaluate are linear in the DAG, not the tree") {
  const int levels = 400;  // the tree has 2^401 nodes
  Expr a = doubling(levels, var(3)), b = doubling(levels, var(3)), c = doubling(levels, var(4));
  CHECK(same(a, b));
  CHECK_FALSE(same(a, c));
  CHECK(node_count(a) == levels + 1);

  std::vector<double> coef;
  double off = -1;
  REQUIRE(as_affine(a, coef, off));
  REQUIRE(coef.size() == 4);
  CHECK(coef[3] == std::ldexp(1.0, levels));  // exact: a power of two
  CHECK(off == 0);

  CHECK(evaluate(a, [](int) { return 0.75; }) == std::ldexp(0.75, levels));
  CHECK(evaluate(derivative(a, 3), [](int) { return 0.0; }) == std::ldexp(1.0, levels));
  Expr moved = substitute(a, [](int) { return var(7); });
  CHECK(free_vars(moved) == std::vector<int>{7});
  CHECK(node_count(moved) == levels + 1);  // sharing survives the rebuild
  TreeExtent t = tree_extent(a, 1000);
  CHECK(t.size == 1000);
  CHECK(t.depth == levels + 1);
}

// Runs f on a thread with a 256 KiB stack: a walk that recursed once per
// level of a 30000-deep expression would overflow it.
template <class F>
void on_small_stack(F f) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t t;
  auto body = [](void* p) -> void* {
    (*static_cast<F*>(p))();
    return nullptr;
  };
  REQUIRE(pthread_create(&t, &attr, body, &f) == 0);
  pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
}

TEST_CASE("the walker does not recurse: a chain 30000 deep on a 256 KiB stack") {
  // (Built and destroyed on this thread: releasing a chain of shared nodes
  // recurses in the destructors.)
  const int depth = 30000;
  Expr e = var(0);
  for (int i = 0; i < depth; ++i) e = add(e, constant(1));
  double value = 0, off = -1;
  std::size_t terms = 0, tree_depth = 0;
  bool affine = false, constant_slope = false, same_self = false;
  Expr d, copy;
  on_small_stack([&] {
    value = evaluate(e, [](int) { return 2.0; });
    terms = additive_terms(e, 64).size();
    std::vector<double> coef;
    affine = as_affine(e, coef, off);
    d = derivative(e, 0);
    constant_slope = is_const(d);
    tree_depth = tree_extent(e, 10).depth;
    copy = substitute(e, [](int id) { return var(id); });  // a new chain, released outside
    same_self = copy != e && same(e, copy);
  });
  CHECK(value == depth + 2.0);
  CHECK(terms == depth + 1);
  CHECK(affine);
  CHECK(off == depth);
  CHECK(constant_slope);
  CHECK(tree_depth == depth + 1);
  CHECK(same_self);
}
