// The sampled evaluator of the Z calculus (sampled.cpp, docs/accuracy.md
// "Sampled limits"): the whole program on one randomized point set.
#pragma once

#include <cstdint>

#include "netsor/limit.hpp"

namespace netsor::limit {

// The largest number of Gaussian leaves that one integral of the
// deterministic path depends on (a moment, a covariance or a Zdot coefficient
// of a vector that is not an affine Gaussian). Exact algebra needs none (0).
int integral_dimension(const ir::Program& p);

// Method::Auto takes the sampled evaluator for programs whose integrals have
// more dimensions than this (docs/accuracy.md gives the measurements): the
// count is of leaves, an upper bound of an integral's dimension, and the
// deterministic path stays with what it does exactly or to ~1e-6 (the
// calibration suite's 1-8 Gaussians, programs/ntk_mlp_train.tp at 11, exact
// to 1e-15); muP training (programs/mup_mlp_train.tp, 14) is faster and
// more accurate sampled.
constexpr int kAutoDimension = 12;

// The limit from o.points points per randomization, or, with o.points == 0,
// from 4096 points doubled until o.target or o.budget (Result::sampling says
// which).
Result compute_sampled(const ir::Program& p, const Options& o);

// Coordinate d of the Sobol sequence (Joe-Kuo direction numbers, as Boost's),
// points [begin, end), nested-uniform (Owen) scrambled by key; uniforms in
// (0, 1) into u. key 0 leaves the points unscrambled (midpoints of their cells).
void scrambled_sobol(int d, std::uint64_t key, std::uint32_t begin, std::uint32_t end, double* u);

}  // namespace netsor::limit
