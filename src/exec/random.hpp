// Random numbers for the executor: counter-based, so any entry of any random
// object can be generated on its own, in any order, by any thread.
//
// Entry (row, col) of an object's N(0, 1) array is a pure function of the
// object's key (base seed, seed index, object) and of (col, row): a seed fixes
// every number whatever the number of threads or the panels a matrix is
// generated in. Uniform bits: one SplitMix64 stream (Steele, Lea and Flood,
// "Fast splittable pseudorandom number generators", OOPSLA 2014; it passes
// BigCrush) per column, keyed by hashing the column into the object's key,
// its i-th output computed directly as the splitmix64 finaliser of
// key + i * golden gamma. Normals: Box-Muller on pairs of 52-bit uniforms, with log, sin and
// cos as fixed polynomials (random.cpp) so that the compiler vectorises them.
// A build with fused multiply-adds (NETSOR_NATIVE on most CPUs) and one
// without give numbers that differ in the last bits.
#pragma once

#include <cstdint>

namespace netsor::exec {

std::uint64_t stream_key(std::uint64_t base, std::uint64_t seed_index, std::uint64_t object);

// Rows are generated in chunks of this many (a Box-Muller pair fills entries
// r and r + 8 of a chunk): a call's first row must be a multiple of it.
constexpr std::int64_t kNormalChunk = 16;

// out[i] = entry (row0 + i, col) of the key's N(0, 1) array, for i < count;
// row0 % kNormalChunk == 0. The float version rounds the same numbers.
void normals(std::uint64_t key, std::uint64_t col, std::int64_t row0, std::int64_t count, double* out);
void normals(std::uint64_t key, std::uint64_t col, std::int64_t row0, std::int64_t count, float* out);

// out[i] = +-1 with equal probability (Rademacher), i < count: the signs of the
// key's normals in column col (trace and Lanczos probes).
void rademacher(std::uint64_t key, std::uint64_t col, std::int64_t count, double* out);

}  // namespace netsor::exec
