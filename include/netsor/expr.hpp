// The coordinatewise expression IR: the phi of a Nonlin+ or Moment instruction.
//
// Expressions are immutable DAGs of shared nodes. A Var leaf is an index whose
// meaning belongs to the user of the expression: in the program IR it is an
// ir::VarId (a vector or a scalar); in the limit pass it is the index of a
// Gaussian (an initial vector or a Zhat). Keeping phi symbolic, not as an opaque
// callback, is what lets the limit pass form E[dZ^x / dZhat] (the Zdot term,
// primer section 2) by differentiating through it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace netsor {

enum class Fn {
  Relu, Step, Abs, Sign, Tanh, Erf, Sigmoid, Gelu, Softplus,
  Sin, Cos, Exp, Log, Sqrt
};

enum class ExprOp { Const, Var, Add, Sub, Mul, Div, Neg, Pow, Call };

struct ExprNode;
using Expr = std::shared_ptr<const ExprNode>;

struct ExprNode {
  ExprOp op = ExprOp::Const;
  double value = 0.0;  // Const
  int var = -1;        // Var
  Fn fn = Fn::Relu;    // Call
  Expr a, b;           // operands (Call and Neg use a only)
};

// Built-in nonlinearities by name ("relu", "tanh", ...). nullopt-like: false if unknown.
bool lookup_fn(const std::string& name, Fn& out);
const char* fn_name(Fn f);
// Scalar evaluation of a built-in. log and sqrt are guarded: log(max(z, 1e-300)),
// sqrt(max(z, 0)), so that no program can produce a silent NaN through them.
double apply_fn(Fn f, double z);
// True for the functions that are not smooth at 0 (relu, step, abs, sign):
// quadrature must treat their argument's zero set as a kink.
bool is_kinked(Fn f);

// Constructors that fold constants and drop identities (0 + x, 1 * x, 0 * x...),
// so that derivatives stay small.
Expr constant(double v);
Expr var(int id);
Expr add(Expr a, Expr b);
Expr sub(Expr a, Expr b);
Expr mul(Expr a, Expr b);
Expr div(Expr a, Expr b);
Expr neg(Expr a);
Expr pow(Expr a, Expr b);
Expr call(Fn f, Expr a);

bool is_const(const Expr& e, double* value = nullptr);

// d e / d var(id), symbolically. Kinked functions differentiate almost
// everywhere: relu' = step, abs' = sign, step' = sign' = 0 (primer section 2).
Expr derivative(const Expr& e, int id);
// d f(z) / dz for a built-in, as an expression in z.
Expr fn_derivative(Fn f, const Expr& z);

// Replace every Var leaf by subst(id) (memoized over the DAG).
Expr substitute(const Expr& e, const std::function<Expr(int)>& subst);

// The distinct Var ids in e, ascending.
std::vector<int> free_vars(const Expr& e);

// Evaluate with leaf values value(id).
double evaluate(const Expr& e, const std::function<double(int)>& value);

// True if e is affine in its Var leaves: then coef receives d e/d var for each
// leaf (indexed by var id, resized as needed) and offset the constant part.
bool as_affine(const Expr& e, std::vector<double>& coef, double& offset);

// Readable infix text; name(id) prints a leaf.
std::string to_string(const Expr& e, const std::function<std::string(int)>& name);

// Structural equality (same tree up to shared nodes).
bool same(const Expr& a, const Expr& b);

// The additive terms of e with their constant coefficients:
// e = sum coef_i * term_i, splitting +, -, negation and scaling by constants,
// and distributing products over sums while the expansion stays within
// `limit` terms (beyond, a product stays one term).
std::vector<std::pair<double, Expr>> additive_terms(const Expr& e, std::size_t limit = 64);

// Number of distinct nodes (for limits on program size).
std::size_t node_count(const Expr& e);
// e written out as a tree (shared nodes counted at every use): its number of
// nodes, or `cap` if that is larger, and its depth. The size is what a pass
// that does not memoize over the DAG (printing, comparing, expanding) walks,
// the depth how deep any pass recurses. Costs node_count(e).
struct TreeExtent {
  std::size_t size = 0, depth = 0;
};
TreeExtent tree_extent(const Expr& e, std::size_t cap);

}  // namespace netsor
