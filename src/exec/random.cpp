// Counter-based normals (random.hpp). Every step below is elementwise over a
// batch of pairs, in plain loops the compiler vectorises (AVX2/AVX-512 with
// NETSOR_NATIVE, SSE2 otherwise); CMakeLists.txt allows it to vectorise sqrt
// (no errno) and to fuse multiply-adds. A partial batch is computed whole, so
// every number comes from the same instructions.
#include "random.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace netsor::exec {
namespace {

constexpr std::uint64_t kGamma = 0x9E3779B97F4A7C15ull;
constexpr std::uint64_t kOne = 0x3FF0000000000000ull;  // bits of 1.0
constexpr std::int64_t kHalf = kNormalChunk / 2;
constexpr int kPairs = 128;  // pairs per batch (256 normals)

constexpr std::uint64_t mix(std::uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 52 random bits as a double in [1, 2).
inline double one_to_two(std::uint64_t h) { return std::bit_cast<double>((h >> 12) | kOne); }

// log(u) for u in (0, 1]: u = 2^e m with m in [sqrt(1/2), sqrt(2)), and
// log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172: ten terms of the
// atanh series leave a relative error below 1e-16.
inline double log_unit(double u) {
  std::uint64_t b = std::bit_cast<std::uint64_t>(u);
  std::int64_t e = std::int64_t(b >> 52) - 1023;
  double m = std::bit_cast<double>((b & 0x000FFFFFFFFFFFFFull) | kOne);
  bool big = m > 1.4142135623730951;
  m = big ? 0.5 * m : m;
  e += big;
  // e in [-52, 0] as a double without an int64 conversion (none in AVX2).
  double ed = std::bit_cast<double>(0x4330000000000000ull | std::uint64_t(e + 1024)) - (4503599627370496.0 + 1024.0);
  double s = (m - 1.0) / (m + 1.0), y = s * s, y2 = y * y, y4 = y2 * y2;
  // sum_k<10 y^k / (2k + 1) by Estrin's scheme: a short dependency chain.
  double p = (1.0 + y * (1.0 / 3)) + y2 * (1.0 / 5 + y * (1.0 / 7)) +
             y4 * ((1.0 / 9 + y * (1.0 / 11)) + y2 * (1.0 / 13 + y * (1.0 / 15))) +
             y4 * y4 * (1.0 / 17 + y * (1.0 / 19));
  return ed * 0.6931471805599453 + 2.0 * s * p;
}

// Box-Muller, one pair per (col, pair index c): radius and angle from outputs
// 2c and 2c + 1 of the column's SplitMix64 stream, mix(ck + i gamma) with ck
// the column's own key. (Counters col 2^32 + c in one stream per object, whose
// increments have 33 trailing zero bits, a poor SplitMix gamma, put Wishart
// moments 4 standard errors off their limits.) The angle is a quadrant (2 bits) plus x uniform in
// [-pi/4, pi/4), where Taylor series to x^15 and x^16 are exact to rounding.
// Pair 8 k + l fills entries l and 8 + l of chunk k.
void pairs(std::uint64_t key, std::uint64_t col, std::int64_t p0, double* __restrict zc, double* __restrict zs) {
  const std::uint64_t ck = mix(key ^ mix(col + 0x632BE59BD9B4E019ull));
  for (int i = 0; i < kPairs; ++i) {
    std::uint64_t c = std::uint64_t(p0 + i);
    std::uint64_t h1 = mix(ck + 2 * c * kGamma), h2 = mix(ck + (2 * c + 1) * kGamma);
    double r = std::sqrt(-2.0 * log_unit(2.0 - one_to_two(h1)));
    double x = (one_to_two(h2) - 1.5) * 1.5707963267948966, x2 = x * x;
    // Taylor series of sin and cos by Estrin's scheme.
    double x4 = x2 * x2, x8 = x4 * x4;
    double sn = x * ((1.0 - x2 * (1.0 / 6)) + x4 * (1.0 / 120 - x2 * (1.0 / 5040)) +
                     x8 * ((1.0 / 362880 - x2 * (1.0 / 39916800)) + x4 * (1.0 / 6227020800 - x2 * (1.0 / 1307674368000))));
    double cs = (1.0 - x2 * 0.5) + x4 * (1.0 / 24 - x2 * (1.0 / 720)) +
                x8 * ((1.0 / 40320 - x2 * (1.0 / 3628800)) + x4 * (1.0 / 479001600 - x2 * (1.0 / 87178291200))) +
                x8 * x8 * (1.0 / 20922789888000);
    // Rotate by the quadrant q: (cos, sin) of x + q pi/2.
    std::uint64_t q = h2 & 3;
    double a = (q & 1) ? sn : cs, b = (q & 1) ? cs : sn;
    a = std::bit_cast<double>(std::bit_cast<std::uint64_t>(a) ^ (((q + 1) & 2) << 62));
    b = std::bit_cast<double>(std::bit_cast<std::uint64_t>(b) ^ ((q & 2) << 62));
    zc[i] = r * a;
    zs[i] = r * b;
  }
}

template <class T>
void normals_impl(std::uint64_t key, std::uint64_t col, std::int64_t row0, std::int64_t count, T* out) {
  alignas(64) double zc[kPairs], zs[kPairs];
  for (std::int64_t done = 0; done < count; done += 2 * kPairs) {
    pairs(key, col, (row0 + done) / 2, zc, zs);
    std::int64_t rows = std::min<std::int64_t>(2 * kPairs, count - done);
    if (rows == 2 * kPairs) {
      for (int ch = 0; ch < 2 * kPairs / kNormalChunk; ++ch)
        for (int l = 0; l < kHalf; ++l) {
          out[done + ch * kNormalChunk + l] = T(zc[ch * kHalf + l]);
          out[done + ch * kNormalChunk + kHalf + l] = T(zs[ch * kHalf + l]);
        }
    } else {
      for (std::int64_t r = 0; r < rows; ++r) {
        std::int64_t i = r / kNormalChunk * kHalf + r % kHalf;
        out[done + r] = T(r % kNormalChunk < kHalf ? zc[i] : zs[i]);
      }
    }
  }
}

}  // namespace

std::uint64_t stream_key(std::uint64_t base, std::uint64_t seed_index, std::uint64_t object) {
  std::uint64_t x = base;
  for (std::uint64_t k : {seed_index, object}) x = mix(x ^ mix(k + 0x632BE59BD9B4E019ull));
  return x;
}

void normals(std::uint64_t key, std::uint64_t col, std::int64_t row0, std::int64_t count, double* out) {
  normals_impl(key, col, row0, count, out);
}
void normals(std::uint64_t key, std::uint64_t col, std::int64_t row0, std::int64_t count, float* out) {
  normals_impl(key, col, row0, count, out);
}

void rademacher(std::uint64_t key, std::uint64_t col, std::int64_t count, double* out) {
  normals(key, col, 0, count, out);
  for (std::int64_t i = 0; i < count; ++i) out[i] = out[i] < 0 ? -1.0 : 1.0;
}

}  // namespace netsor::exec
