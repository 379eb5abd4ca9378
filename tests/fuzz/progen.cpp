#include "progen.hpp"

#include <array>
#include <sstream>
#include <vector>

namespace progen {
namespace {

// SplitMix64: our own generator, so a seed names the same program on every
// standard library (std:: distributions are implementation-defined).
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int k) { return static_cast<int>(next() % static_cast<std::uint64_t>(k)); }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
  template <class T, std::size_t N>
  const T& pick(const std::array<T, N>& a) { return a[below(N)]; }
};

// Bounded or at most linearly growing, so every moment below is O(1).
constexpr std::array<const char*, 12> kNonlin = {"tanh", "relu", "erf",  "sin",   "sigmoid", "gelu",
                                                 "softplus", "abs", "step", "tanh'", "cos",  "phi"};
constexpr std::array<const char*, 5> kVariance = {"0.5", "1", "1.5", "2", "0.8"};
constexpr std::array<const char*, 5> kCoef = {"0.5", "2", "-1", "0.3", "1.5"};
constexpr std::array<const char*, 3> kRidge = {"0.5", "1", "2"};

struct Vec {
  std::string name;
  int width;  // 0: n, 1: m
};

struct Mat {
  std::string name;
  int rows, cols;
};

struct Operator {
  std::string name;
  int dim;  // square, of this width
};

class Generator {
 public:
  Generator(std::uint64_t seed, const Options& o) : r_{seed * 0x2545F4914F6CDD1Dull + 1}, o_(o) {}

  std::string run() {
    declare();
    if (o_.operators && r_.chance(0.35)) operators();
    int steps = 2 + r_.below(o_.max_matmuls + o_.max_nonlins - 1);
    int matmuls = 0;
    for (int i = 0; i < steps; ++i) {
      if (matmuls < o_.max_matmuls && r_.chance(0.55)) {
        matmul();
        ++matmuls;
      } else if (r_.chance(0.25)) {
        scalar();
      } else {
        nonlin();
      }
    }
    if (o_.loops_and_defs && matmuls < o_.max_matmuls && r_.chance(0.2)) loop();
    int reports = 1 + r_.below(o_.max_reports);
    for (int i = 0; i < reports; ++i) report();
    return out_.str();
  }

 private:
  Rng r_;
  Options o_;
  std::ostringstream out_;
  std::vector<Vec> vecs_;
  std::vector<Mat> mats_;
  std::vector<Operator> ops_;
  std::vector<std::string> scalars_;
  int count_ = 0;
  bool has_m_ = false;

  std::string fresh(const char* prefix) { return prefix + std::to_string(++count_); }

  void declare() {
    out_ << "width n\n";
    if (o_.ratios && r_.chance(0.3)) {
      has_m_ = true;
      out_ << "width m = " << (r_.chance(0.5) ? "0.5" : "2") << " n\n";
    }
    // `phi` is the one def; the nonlinearity list names it.
    out_ << "def phi(z) = tanh(z) + 0.1 * z\n";
    int n_mats = 1 + r_.below(3);
    for (int i = 0; i < n_mats; ++i) {
      Mat m{fresh("W"), 0, 0};
      if (has_m_ && r_.chance(0.5)) {
        m.rows = r_.below(2);
        m.cols = 1 - m.rows;
        out_ << "matrix " << m.name << "[" << (m.rows ? "m" : "n") << ", " << (m.cols ? "m" : "n")
             << "] : gaussian(var=" << r_.pick(kVariance) << ")\n";
      } else if (o_.orthogonal && r_.chance(0.08)) {
        out_ << "matrix " << m.name << " : orthogonal(var=1)\n";
      } else {
        out_ << "matrix " << m.name << " : gaussian(var=" << r_.pick(kVariance) << ")\n";
      }
      mats_.push_back(m);
    }
    for (int w = 0; w < (has_m_ ? 2 : 1); ++w) {
      Vec v{fresh("v"), w};
      out_ << "vector " << v.name << (w ? "[m]" : "") << " : gaussian(";
      if (r_.chance(0.3)) out_ << "mean=0.3, ";
      out_ << "var=" << r_.pick(kVariance) << ")\n";
      vecs_.push_back(v);
    }
    if (r_.chance(0.3)) {
      std::string a = fresh("a"), b = fresh("b");
      out_ << "vectors (" << a << ", " << b << ") : gaussian(cov=[[1, 0.4], [0.4, 0.7]])\n";
      vecs_.push_back({a, 0});
      vecs_.push_back({b, 0});
    }
  }

  const Vec& vec_of(int width) {
    std::vector<int> ok;
    for (int i = 0; i < static_cast<int>(vecs_.size()); ++i)
      if (vecs_[i].width == width) ok.push_back(i);
    return vecs_[ok[r_.below(static_cast<int>(ok.size()))]];
  }

  // A coordinatewise expression of vectors of one width, O(1) in size.
  std::string coord(int width, int depth) {
    const std::string x = vec_of(width).name;
    switch (depth <= 0 ? 0 : r_.below(5)) {
      case 0: return x;
      case 1: return std::string(r_.pick(kNonlin)) + "(" + coord(width, depth - 1) + ")";
      case 2: return coord(width, depth - 1) + " + " + r_.pick(kCoef) + " * " + coord(width, depth - 1);
      case 3: return std::string(r_.pick(kNonlin)) + "(" + x + ") * " + coord(width, 0);
      default:
        if (scalars_.empty()) return coord(width, depth - 1);
        return scalars_[r_.below(static_cast<int>(scalars_.size()))] + " * " + coord(width, depth - 1);
    }
  }

  // Symmetric operators built from the matrices: X @ X.T, X.T @ diag(f(v)) @ X,
  // a symmetrized square matrix plus a multiple of I, and resolvents of the
  // first and the last (their limits applied to vectors need rotation
  // invariance: the limit refuses them where the matrix also multiplies a
  // vector). One may go to `spectrum`.
  void operators() {
    int count = 1 + r_.below(2);
    for (int i = 0; i < count; ++i) {
      const Mat& m = mats_[r_.below(static_cast<int>(mats_.size()))];
      // Resolvents are rarer: each costs a dense factor per seed at n = 2048,
      // and at 2 in 5 they made the normal differential run 160 s (the bar is 2 min).
      int form = r_.chance(0.15) ? 3 + r_.below(2) : r_.below(3);
      if ((form == 2 || form == 4) && m.rows != m.cols) form = form == 2 ? 0 : 3;
      // A resolvent mostly gets a matrix of its own, which no product uses:
      // its limit applied to a vector is then derived, not refused.
      std::string x = m.name;
      int rows = m.rows, cols = m.cols;
      if (form >= 3 && r_.chance(0.7)) {
        x = fresh("Q");
        if (form == 3 && has_m_ && r_.chance(0.5)) cols = 1 - rows;  // rectangular: ratio 0.5 or 2
        else cols = rows;
        out_ << "matrix " << x;
        if (rows || cols) out_ << "[" << (rows ? "m" : "n") << ", " << (cols ? "m" : "n") << "]";
        out_ << " : gaussian(var=" << r_.pick(kVariance) << ")\n";
      }
      Operator op{fresh("S"), rows};
      out_ << "operator " << op.name << " = ";
      if (form == 0) {
        out_ << x << " @ " << x << ".T";
      } else if (form == 1) {
        op.dim = cols;
        out_ << x << ".T @ diag(" << r_.pick(kNonlin) << "(" << vec_of(rows).name << ")) @ " << x;
      } else if (form == 2) {
        out_ << "0.5 * (" << x << " + " << x << ".T) + " << r_.pick(kCoef) << " * I";
      } else if (form == 3) {  // a ridge resolvent: positive definite for lam > 0
        out_ << "inv(" << x << " @ " << x << ".T + " << r_.pick(kRidge) << " * I)";
      } else {  // the semicircle of (W + W.T) / 2 lies within [-2, 2] for var <= 2
        out_ << "inv(0.5 * (" << x << " + " << x << ".T) + 3 * I)";
      }
      out_ << "\n";
      if (r_.chance(0.3)) out_ << "spectrum " << op.name << "\n";
      ops_.push_back(op);
    }
  }

  void matmul() {
    if (!ops_.empty() && r_.chance(0.3)) {
      const Operator& op = ops_[r_.below(static_cast<int>(ops_.size()))];
      Vec v{fresh("h"), op.dim};
      out_ << v.name << " = " << op.name << " @ " << vec_of(op.dim).name << "\n";
      vecs_.push_back(v);
      return;
    }
    const Mat& m = mats_[r_.below(static_cast<int>(mats_.size()))];
    bool transposed = r_.chance(0.4);
    int in = transposed ? m.rows : m.cols, out = transposed ? m.cols : m.rows;
    std::string arg = coord(in, 1);
    if (arg.find_first_of(" (") != std::string::npos) arg = "(" + arg + ")";
    Vec v{fresh("h"), out};
    out_ << v.name << " = " << m.name << (transposed ? ".T" : "") << " @ " << arg << "\n";
    vecs_.push_back(v);
  }

  void nonlin() {
    int width = has_m_ ? r_.below(2) : 0;
    Vec v{fresh("x"), width};
    out_ << v.name << " = " << coord(width, 2) << "\n";
    vecs_.push_back(v);
  }

  std::string moment() {
    int width = has_m_ ? r_.below(2) : 0;
    return "avg(" + coord(width, 1) + (r_.chance(0.7) ? " * " + coord(width, 1) : "") + ")";
  }

  void scalar() {
    std::string s = fresh("s");
    out_ << s << " = " << moment();
    if (!scalars_.empty() && r_.chance(0.3))
      out_ << " * " << scalars_[r_.below(static_cast<int>(scalars_.size()))];
    out_ << "\n";
    scalars_.push_back(s);
  }

  // A short recursion through one square matrix: y[t] = W @ phi(y[t-1]).
  void loop() {
    for (const Mat& m : mats_) {
      if (m.rows != m.cols) continue;
      std::string y = fresh("y"), f = r_.pick(kNonlin);
      int steps = 2 + r_.below(2);
      out_ << y << "[0] = " << vec_of(m.cols).name << "\n"
           << "for t in 1.." << steps << " {\n  " << y << "[t] = " << m.name << " @ " << f << "(" << y
           << "[t-1])\n}\n";
      vecs_.push_back({y + "[" + std::to_string(steps) + "]", m.rows});
      return;
    }
  }

  void report() {
    std::string name = fresh("r");
    out_ << "report " << name << " = ";
    if (!ops_.empty() && r_.chance(0.05))  // the limit pass refuses tr(...) for now
      out_ << "tr(" << ops_[r_.below(static_cast<int>(ops_.size()))].name << ")";
    else if (!scalars_.empty() && r_.chance(0.25))
      out_ << scalars_[r_.below(static_cast<int>(scalars_.size()))] << " + " << moment();
    else
      out_ << moment();
    out_ << "\n";
  }
};

}  // namespace

std::string generate(std::uint64_t seed, const Options& o) { return Generator(seed, o).run(); }

}  // namespace progen
