// ir::verify (src/ir/verify.cpp): every shipped program passes it, and each
// kind of broken invariant is caught, named, and thrown as an internal error.
#include <doctest/doctest.h>

#include <filesystem>

#include "netsor/frontend.hpp"

using namespace netsor;

namespace {
const std::string kDir = NETSOR_SOURCE_DIR;

ir::Program sample() {
  return compile_string(
      "width n\n"
      "width m = 2 n\n"
      "matrix W : gaussian(var=2.0)\n"
      "matrix A[m, n] : gaussian(var=1.0)\n"
      "vector x : gaussian(var=1.0)\n"
      "h = W @ x\n"
      "y = A @ tanh(h)\n"
      "report k = avg(y * y)\n",
      kDir + "/tests/unit/snippet.tp");
}

int def_of(const ir::Program& p, const std::string& name) {
  for (const auto& v : p.vars)
    if (v.name == name) return v.def;
  FAIL("no variable " << name);
  return -1;
}

std::string broken(const ir::Program& p) {
  try {
    ir::verify(p);
  } catch (const InternalError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("every example program passes the IR verifier") {
  int n = 0;
  for (const char* dir : {"/programs", "/programs/spectra", "/bench"})
    for (const auto& f : std::filesystem::directory_iterator(kDir + dir))
      if (f.path().extension() == ".tp") {
        INFO(f.path().string());
        ir::Program p = compile_file(f.path().string());  // verifies on return
        CHECK(broken(p).empty());
        ++n;
      }
  CHECK(n >= 10);
}

TEST_CASE("the IR verifier names each broken invariant") {
  ir::Program good = sample();
  REQUIRE(broken(good).empty());

  SUBCASE("a use before its definition") {
    ir::Program p = good;
    int h = def_of(p, "h"), y = def_of(p, "y");
    std::swap(p.instrs[h], p.instrs[y]);
    std::swap(p.vars[p.instrs[h].out].def, p.vars[p.instrs[y].out].def);
    CHECK(broken(p).find("before the instruction that defines it") != std::string::npos);
  }
  SUBCASE("a product of the wrong shape") {
    ir::Program p = good;
    p.instrs[def_of(p, "y")].transposed = true;  // A.T takes m-vectors; tanh(h) is an n-vector
    CHECK(broken(p).find("multiplies a vector of the wrong size") != std::string::npos);
  }
  SUBCASE("a report of a vector") {
    ir::Program p = good;
    for (const auto& v : p.vars)
      if (v.name == "h") p.reports[0].var = int(&v - &p.vars[0]);
    CHECK(broken(p).find("report 'k' reports a variable that is not a scalar") != std::string::npos);
  }
  SUBCASE("a family whose covariance does not fit its members") {
    ir::Program p = good;
    p.families[0].cov = Eigen::MatrixXd::Identity(2, 2);
    CHECK(broken(p).find("family 0 has a mean or covariance of the wrong size") != std::string::npos);
  }
  SUBCASE("a definition recorded at the wrong instruction") {
    ir::Program p = good;
    p.vars[p.instrs[def_of(p, "h")].out].def = 0;
    CHECK(broken(p).find("is not the variable's recorded definition") != std::string::npos);
  }
}
