// Random streams for the executor.
//
// xoshiro256++ (Blackman and Vigna, "Scrambled linear pseudorandom number
// generators", ACM TOMS 2021): a small, fast generator that passes BigCrush.
// Boost 1.74, the version Debian 12 ships, has no xoshiro or counter-based
// engine, and mt19937_64 was a third of the executor's time. Each stream is
// keyed by (base seed, seed index, object, block) through splitmix64, so a
// seed fixes every number however the work is split across threads.
#pragma once

#include <cstdint>
#include <limits>

namespace netsor::exec {

class Xoshiro256pp {
 public:
  using result_type = std::uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }

  Xoshiro256pp(std::uint64_t base, std::uint64_t seed_index, std::uint64_t object, std::uint64_t block) {
    // Hash the key into the state with splitmix64 (never all zero).
    std::uint64_t x = base;
    for (std::uint64_t k : {seed_index, object, block}) x = mix(x ^ mix(k + 0x632BE59BD9B4E019ull));
    for (auto& w : s_) w = mix(x += 0x9E3779B97F4A7C15ull);
  }

  result_type operator()() {
    const std::uint64_t r = rotl(s_[0] + s_[3], 23) + s_[0];
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }

 private:
  std::uint64_t s_[4];
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t mix(std::uint64_t z) {  // splitmix64 finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

}  // namespace netsor::exec
