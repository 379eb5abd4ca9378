// The free-probability back end of the limit pass (primer section 5): limits of
// normalized traces tr(T) of operators rational in the program's Gaussian
// matrices and diagonals, and the limit eigenvalue laws of `spectrum`
// operators, from a linear pencil built automatically from the operator and the
// operator-valued fixed point
//   G = E_Z[(Lambda - A0 - sum_j B_j d_j(Z) - eta(G))^{-1}],
// the expectation over the joint law of the diagonals' entries that the Z
// calculus gives. docs/free-probability.md describes the method.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "netsor/ir.hpp"
#include "netsor/limit.hpp"

namespace netsor::limit {

// What the Z calculus knows when an operator is met: each program variable
// read by a diagonal or a scale factor as an expression over Gaussian leaves (a
// vector's Z, or a scalar's limit as a constant), and the leaves' joint law.
// subst throws ProgramError (or returns nullptr) for what has no such form.
struct ZView {
  std::function<Expr(ir::VarId)> subst;
  GaussianLaw law;
};

// Thrown for an operator the back end does not cover; the caller locates it.
struct FreeRefusal {
  std::string message, hint;
};

// lim tr(T) for the operator node. Throws FreeRefusal.
Estimate free_trace(const ir::Program& p, int node, const ZView& z);

struct SpectrumLimitOptions {
  int points = 400;  // density grid
  int moments = 4;
  // Called after each point of the support scan and of the density grid:
  // (stage, done, total). The limit of a spectrum with diagonals can take minutes.
  std::function<void(const std::string&, int, int)> progress;
};

struct SpectrumLimit {
  std::string name;
  std::vector<double> x, density, density_error;
  std::vector<std::pair<double, double>> support;
  double edge_error = 0;
  struct Atom {
    double at = 0, mass = 0, abs_error = 0;
    std::string method;
  };
  std::vector<Atom> atoms;
  std::vector<Estimate> moments;  // k = 1, 2, ...
  std::string method;
};

// The limit law of a `spectrum` operator. Throws FreeRefusal.
SpectrumLimit free_spectrum(const ir::Program& p, const ir::OperatorRef& s, const ZView& z,
                            const SpectrumLimitOptions& o = {});

// The pencil and the fixed-point equations, as text (netsor derive).
std::string free_derivation(const ir::Program& p, int node, const ZView& z, bool latex = false);

}  // namespace netsor::limit
