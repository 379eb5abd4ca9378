// The finite-width executor: the same IR run at a concrete width n with real
// random matrices (Eigen), to check that the limit is what wide networks do.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "netsor/ir.hpp"

namespace netsor::exec {

class OperatorEngine;  // src/exec/operator_engine.hpp

struct Options {
  std::int64_t width = 1024;   // n; other widths are ratio * n (rounded)
  int seeds = 1;               // independent samples of every random object
  std::uint64_t seed = 0;      // base seed: fixes every number, whatever the thread count
  int threads = 0;             // 0: all cores; seeds run in parallel
  bool float32 = false;        // matrices and products in single precision
  std::size_t memory_limit = 0;  // bytes; 0: 80% of physical memory
  std::function<void(int done, int total)> progress;  // called at the start (0) and after each seed
  // Called (from the seed's thread) after each seed of a program with `spectrum`
  // statements ran, with that seed's operators: netsor spectrum.
  std::function<void(int seed, OperatorEngine& ops)> on_operators;
  // With on_operators: the bytes netsor spectrum needs for a spectrum operator
  // of dimension d beyond its matrices, and whether it forms it densely.
  std::function<std::pair<double, bool>(std::int64_t d)> spectrum_work;
};

struct QuantityStats {
  std::string name;
  double mean = 0;
  double sem = 0;                 // standard error of the mean over seeds (0 for one seed)
  double sd = 0;                  // standard deviation over seeds: the spread of a quantity that
                                  // converges in law (a readout n^{1/2} avg(v x): its sd^2 -> the NNGP)
  std::vector<double> per_seed;   // in seed order
  // The standard error of the mean from the estimators inside each seed (a
  // Hutch++ trace beyond n = 4096), 0 when every seed's value is exact; the
  // sem over seeds already includes it, and one seed reports it as its sem.
  double estimator_sem = 0;
};

struct RunResult {
  std::int64_t width = 0;
  int seeds = 0;
  std::vector<QuantityStats> quantities;  // the program's reports, in order
  std::size_t peak_bytes = 0;             // per concurrently running seed
  int concurrent = 1;
  int streamed_matrices = 0;              // Gaussian matrices generated again at every use to fit in memory
};

// Peak memory of one seed at this width (matrices live from first to last use,
// vectors likewise), computed from the schedule without allocating anything,
// after streaming what run() streams to fit within `limit` (0: the default).
std::size_t peak_bytes(const ir::Program& p, std::int64_t width, bool float32, std::size_t limit = 0);
std::size_t default_memory_limit();

// Runs the program; throws ProgramError if one seed does not fit in the
// memory limit (before allocating), naming the bytes it would need.
RunResult run(const ir::Program& p, const Options& o);

}  // namespace netsor::exec
