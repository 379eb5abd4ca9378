// The front end: parsing, lowering and checking (src/parse).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "netsor/frontend.hpp"

using namespace netsor;
using ir::VarKind;

namespace {
const std::string kDir = NETSOR_SOURCE_DIR;

ir::Program compile(const std::string& text, FrontendOptions o = {}) {
  return compile_string(text, kDir + "/tests/unit/snippet.tp", o);
}

const ir::Var& find(const ir::Program& p, const std::string& name) {
  for (const auto& v : p.vars)
    if (v.name == name) return v;
  FAIL("no variable " << name);
  throw 0;
}

Diagnostic error_of(const std::string& text) {
  try {
    compile(text);
  } catch (const ProgramError& e) {
    return e.diagnostic();
  }
  FAIL("expected a ProgramError");
  return {};
}
}  // namespace

TEST_CASE("the language tour of the issue compiles as a whole program") {
  auto p = compile(R"(
# comment to end of line
width n
width m = 2 n
matrix W : gaussian(var=2.0)
matrix A[m, n] : gaussian(var=1.0)
vector v : gaussian(mean=0, var=1)
vectors (u1, u2) : gaussian(cov=[[1.0, 0.3], [0.3, 2.0]])
input xi = [1.0, 0.0, 0.5]
matrix U[n, 3] : gaussian(var=1.0)
const eta = 0.5
def phi(z) = tanh(z) + 0.1 * z^3
x = U @ xi
y = A @ v
h = W @ x
g = A.T @ y
x2 = relu(h)
y2 = 0.5 * x2 + tanh(h) * g
s = avg(x2 * y2)
z = s * h + eta * phi(x2)
x[0] = z
for t in 1..3 {
  x[t] = W @ x[t-1]
}
report m2 = avg(x[0] * x[2])
import "../../stdlib/mlp.tp"
)");
  CHECK(p.widths.size() == 2);
  CHECK(p.widths[1].ratio == 2.0);
  CHECK(find(p, "y").kind == VarKind::G);
  CHECK(p.dim_name(find(p, "y").rows) == "m");
  CHECK(find(p, "g").kind == VarKind::G);
  CHECK(p.dim_name(find(p, "g").rows) == "n");
  CHECK(find(p, "x2").kind == VarKind::H);
  CHECK(find(p, "s").kind == VarKind::Scalar);
  CHECK(find(p, "x[3]").kind == VarKind::G);
  REQUIRE(p.reports.size() == 1);
  CHECK(p.reports[0].name == "m2");
  CHECK(p.instrs[find(p, "m2").def].op == ir::Op::Moment);
}

TEST_CASE("a 3-layer MLP lowers to A, G, H and scalar variables with shapes") {
  auto p = compile(R"(
input xi = [1, 2]
matrix U[n, 2] : gaussian(var=2)
matrix W[2] : gaussian(var=2)
matrix W[3] : gaussian(var=2)
h[1] = U @ xi
h[2] = W[2] @ relu(h[1])
h[3] = W[3] @ relu(h[2])
report k = avg(h[3] * h[3])
)");
  CHECK(find(p, "U").kind == VarKind::A);
  CHECK(find(p, "U").cols.finite == 2);
  CHECK(find(p, "h[1]").kind == VarKind::G);
  CHECK(p.instrs[find(p, "h[1]").def].op == ir::Op::Init);
  CHECK(find(p, "h[2]").kind == VarKind::G);
  const auto& mm = p.instrs[find(p, "h[2]").def];
  CHECK(mm.op == ir::Op::MatMul);
  CHECK(p.vars[mm.matrix].name == "W[2]");
  CHECK(p.vars[mm.arg].kind == VarKind::H);  // relu(h[1]) named implicitly
  auto j = ir::to_json(p);
  bool found = false;
  for (const auto& v : j["vars"])
    if (v["name"] == "h[3]") {
      found = true;
      CHECK(v["kind"] == "G");
      CHECK(v["shape"] == nlohmann::json::array({"n"}));
      CHECK(v["def"]["op"] == "matmul");
    }
  CHECK(found);
}

TEST_CASE("input projections form one Gaussian family with cov sigma^2 xi.xi'/d") {
  auto p = compile(R"(
input a = [1, 0, 2]
input b = [0, 1, 1]
matrix U[n, 3] : gaussian(var=1.5)
x = U @ a
y = U @ b
)");
  REQUIRE(p.families.size() == 1);
  const auto& f = p.families[0];
  CHECK(f.members.size() == 2);
  CHECK(f.cov(0, 0) == doctest::Approx(1.5 * 5 / 3));
  CHECK(f.cov(0, 1) == doctest::Approx(1.5 * 2 / 3));
  CHECK(f.cov(1, 1) == doctest::Approx(1.5 * 2 / 3));
}

TEST_CASE("defs inline, derivatives of defs are symbolic") {
  auto p = compile(R"(
vector x : gaussian(var=1)
def phi(z) = z^3 + sin(z)
y = phi'(x)
)");
  const auto& in = p.instrs[find(p, "y").def];
  REQUIRE(in.op == ir::Op::Nonlin);
  double z = 0.7;
  double got = evaluate(in.expr, [&](int) { return z; });
  CHECK(got == doctest::Approx(3 * z * z + std::cos(z)));
}

TEST_CASE("-D overrides a const default, and is visible in loop bounds") {
  const char* src = R"(
const T = 2
vector x[0] : gaussian(var=1)
for t in 1..T {
  x[t] = tanh(x[t-1])
}
)";
  auto p = compile(src);
  CHECK(p.instrs.size() == 3);
  FrontendOptions o;
  o.defines["T"] = 5;
  auto q = compile(src, o);
  CHECK(q.instrs.size() == 6);
}

TEST_CASE("% on numbers known when the program is read, with the divisor's sign") {
  auto p = compile(R"(
const T = 4
vector x : gaussian(var=1)
a[-7 % 3] = tanh(x)
b[7 % -3] = tanh(x)
for t in 5..5 {
  c[(t + 1) % T] = tanh(x)
}
)");
  CHECK(find(p, "a[2]").kind == VarKind::H);   // -7 = 3 * (-3) + 2
  CHECK(find(p, "b[-2]").kind == VarKind::H);  // 7 = -3 * (-3) - 2
  CHECK(find(p, "c[2]").kind == VarKind::H);   // 6 % 4
  CHECK(error_of("vector x : gaussian(var=1)\nreport r = avg(x % 2)\n").message.find("'%' takes numbers") == 0);
  CHECK(error_of("const a = 3 % 0\n").message == "modulo by zero");
}

TEST_CASE("a width ratio may be a constant, and -D sets it") {
  const char* src = "const rho = 0.5\nwidth n\nwidth m = rho n\nmatrix A[m, n] : gaussian(var=1)\n";
  CHECK(compile(src).widths[1].ratio == 0.5);
  FrontendOptions o;
  o.defines["rho"] = 3;
  CHECK(compile(src, o).widths[1].ratio == 3);
  CHECK(error_of("width n\nwidth m = q n\n").message == "'q' is not a constant defined above");
  CHECK(error_of("const q = -1\nwidth n\nwidth m = q n\n").message == "a width ratio must be a positive number");
}

TEST_CASE("nested @ names its intermediate results") {
  auto p = compile(R"(
matrix W : gaussian(var=1)
matrix V : gaussian(var=1)
vector x : gaussian(var=1)
y = W @ (V @ x)
)");
  CHECK(p.instrs.size() == 3);
  CHECK(find(p, "V@x").kind == VarKind::G);
  CHECK(p.instrs[find(p, "y").def].op == ir::Op::MatMul);
}

TEST_CASE("errors carry file, line, column, the source line and a hint") {
  auto d = error_of("vector x : gaussian(var=1)\ny = relu(q)\n");
  CHECK(d.loc.line == 2);
  CHECK(d.loc.col == 10);
  CHECK(d.message == "undefined name 'q'");
  CHECK(d.source_line == "y = relu(q)");
  CHECK_FALSE(d.hint.empty());
  std::string text = format(d);
  CHECK(text.find("snippet.tp:2:10: error: undefined name 'q'") != std::string::npos);
  CHECK(text.find("         ^") != std::string::npos);
}

TEST_CASE("guards: nesting depth, statement length, instruction count") {
  CHECK(error_of("y = " + std::string(10000, '(') + "1" + std::string(10000, ')')).message.find("nested too deeply") !=
        std::string::npos);
  std::string longexpr = "vector x : gaussian(var=1)\ny = x";
  for (int i = 0; i < 15000; ++i) longexpr += " + x";
  CHECK(error_of(longexpr).message.find("statement too long") != std::string::npos);
  CHECK(error_of("vector x[0] : gaussian(var=1)\nfor t in 1..3000000 {\nx[t] = x[t-1]\n}\n")
            .message.find("loop range too long") != std::string::npos);
}

TEST_CASE("a long but legal expression lowers (deep left recursion on the big stack)") {
  std::string src = "vector x : gaussian(var=1)\ny = x";
  for (int i = 0; i < 9000; ++i) src += " + x";
  src += "\nz = " + std::string(4000, '-') + "x\n";
  auto p = compile(src);
  CHECK(find(p, "y").kind == VarKind::H);
}

TEST_CASE("a diagnostic whose column is past its line's end still formats (fuzz_frontend finding)") {
  // Found by fuzz_frontend and fuzz_limit: an invalid-UTF-8 error at 2:235 on a
  // 178-byte line made format() throw std::out_of_range from substr.
  Diagnostic d;
  d.loc.file = "f.tp";
  d.loc.line = 2;
  d.loc.len = 1;
  d.message = "this is not a text file";
  for (int size : {10, 178}) {
    d.source_line = std::string(size, '(');
    for (int col : {size + 1, size + 57, 100000}) {
      CAPTURE(size);
      CAPTURE(col);
      d.loc.col = col;
      std::string text;
      REQUIRE_NOTHROW(text = format(d));
      CHECK(text.find("f.tp:2:" + std::to_string(col) + ": error:") == 0);
      // The caret sits just after the (shown part of the) line.
      auto caret_line = text.substr(text.find(" | ", text.find(" | ") + 3));
      CHECK(caret_line.find('^') != std::string::npos);
    }
  }
  // The finding's shape, through the front end: a long line ending in bytes
  // that are not UTF-8.
  std::string src = "# a comment\n# " + std::string(170, '(') + ".T" + std::string(104, '\xff') + "\n";
  try {
    compile_string(src, "finding.tp");
    FAIL("expected a ProgramError");
  } catch (const ProgramError& e) {
    std::string text;
    REQUIRE_NOTHROW(text = format(e.diagnostic()));
    CHECK(text.find("finding.tp:2:") == 0);
    CHECK(text.find("not valid UTF-8") != std::string::npos);
  }
}
