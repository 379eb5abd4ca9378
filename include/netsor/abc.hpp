// abc-parametrizations of an L-hidden-layer MLP (primer section 4, after Yang and
// Hu 2021): stability, nontriviality, and feature learning versus kernel regime.
#pragma once

#include <string>
#include <vector>

namespace netsor::abc {

struct Parametrization {
  int L = 2;              // hidden layers
  std::vector<double> a;  // a_1 .. a_{L+1}: W^l = n^{-a_l} w^l
  std::vector<double> b;  // b_1 .. b_{L+1}: w^l entries N(0, n^{-2 b_l})
  double c = 0;           // learning rate eta n^{-c}
};

// sp (c = 0 unless given), ntk, mup, mf (L = 1 only). Throws std::invalid_argument
// for an unknown name or an L it is not defined for.
Parametrization preset(const std::string& name, int L, const double* c_override = nullptr);

struct Condition {
  std::string text;   // e.g. "a_{L+1} + b_{L+1} >= 1/2"
  double lhs = 0;     // its left side, evaluated
  double rhs = 0;
  bool holds = false;
  double by = 0;      // how far it fails (0 when it holds)
};

struct Verdict {
  bool stable = false;
  bool nontrivial = false;
  std::string regime;          // "feature_learning", "kernel", "unstable", "trivial"
  double r = 0;
  std::vector<double> r_l;     // r_1 .. r_L: the one-step change of h^l scales as n^{-r_l}
  std::vector<Condition> stability;
  std::vector<Condition> nontriviality;  // either suffices
};

// Equalities hold to within 1e-9.
Verdict classify(const Parametrization& p);

// (a_l + theta, b_l - theta, c - 2 theta): the same SGD dynamics.
Parametrization shift(const Parametrization& p, double theta);

// The program text of one full-batch SGD step of this MLP (tanh, one input in
// R^3, squared loss) built on stdlib/sgd_mlp.tp, reporting for each layer l
// delta[l] = sqrt(avg((h^l after the step - h^l before)^2)).
std::string one_step_program(const Parametrization& p);

// The exponent of delta[l] predicted for the first step: the primer's r_l with
// the output scale a_{L+1} + b_{L+1} (at the first step the loss derivative is
// O(1); min(., 2 a_{L+1} + c) in r_l describes later steps), and a layer moves
// at least as fast as the layers below it feed it: -min_{k <= l} r'_k.
std::vector<double> first_step_exponents(const Parametrization& p);

}  // namespace netsor::abc
