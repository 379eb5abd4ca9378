// Eigenvalue laws of a program's `spectrum` operators at finite width
// (netsor spectrum): dense symmetric eigensolver where the operator fits,
// stochastic Lanczos quadrature beyond.
#pragma once

#include <string>
#include <vector>

#include "netsor/exec.hpp"

namespace netsor::exec {

struct SpectrumOptions {
  Options run;                     // width, seeds, seed, threads, memory
  int bins = 60;                   // histogram bins
  std::int64_t dense_max = 4096;   // larger operators use Lanczos
  int lanczos_steps = 80;          // per probe
  int lanczos_probes = 8;          // Rademacher start vectors per seed
  bool keep_eigenvalues = false;   // return every eigenvalue (dense) or Ritz node (Lanczos)
};

struct SpectrumMoment {
  int k = 0;
  double mean = 0, sem = 0;  // of (1/dim) Tr(S^k) over seeds
};

struct SpectrumStats {
  std::string name;
  std::int64_t dim = 0;
  std::string method;                  // "dense" or "lanczos (80 steps, 8 probes per seed)"
  std::vector<SpectrumMoment> moments;  // k = 1..4
  std::vector<double> edges, density;  // histogram of all seeds pooled, density scale
  double min = 0, max = 0;             // extreme eigenvalues over seeds (Ritz values for Lanczos)
  double near_zero = 0;                // fraction with |lambda| <= 1e-8 max|lambda|
  // Per seed: eigenvalues (dense) or Ritz nodes (Lanczos), with their weights
  // (1/dim each for dense).
  std::vector<std::vector<double>> values, weights;
};

struct SpectrumResult {
  std::int64_t width = 0;
  int seeds = 0;
  int streamed_matrices = 0;           // generated at every application to fit in memory (RunResult)
  std::vector<SpectrumStats> spectra;  // in program order
};

SpectrumResult spectra(const ir::Program& p, const SpectrumOptions& o);

}  // namespace netsor::exec
