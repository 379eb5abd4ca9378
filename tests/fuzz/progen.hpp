// A grammar-based generator of random valid .tp programs, for the differential
// test (limit vs finite width) and as a fuzzing seed source. Every program it
// writes is well-typed by construction: shapes agree, every name is defined
// before use, every report is a scalar. Values stay O(1) at every width (the
// nonlinearities are bounded or grow at most linearly, variances are O(1)), so
// a finite run at n = 2048 is within a few standard errors of the limit.
#pragma once

#include <cstdint>
#include <string>

namespace progen {

struct Options {
  int max_matmuls = 4;       // MatMul instructions (each adds a Gaussian leaf to the limit)
  int max_nonlins = 4;
  int max_reports = 3;
  bool ratios = true;        // a second width m = r n and rectangular matrices
  bool orthogonal = true;    // occasionally a Haar-orthogonal matrix (the limit pass refuses it)
  bool loops_and_defs = true;
  bool operators = true;     // `operator`, `spectrum`, `S @ v`, occasionally `tr(...)`
};

// The program for this seed: the same seed gives the same text on every machine.
std::string generate(std::uint64_t seed, const Options& o = {});

}  // namespace progen
