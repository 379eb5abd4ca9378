// netsor coordcheck: measured exponents against the ones derived by hand from
// the parametrization (primer section 4), on the unstable SP program and on muP.
#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace e2e;
using nlohmann::json;

namespace {

json coordcheck(const std::string& args) {
  auto r = run("coordcheck " + args + " --json");
  INFO(r.err);
  REQUIRE(r.rc == 0);
  return json::parse(r.out);
}

const json& vec(const json& j, const std::string& name) {
  for (const auto& v : j["vectors"])
    if (v["name"] == name) return v;
  FAIL("no vector " << name);
  throw;
}

// The fitted exponent agrees with `expected` within 0.1 plus 3 standard errors
// from the seeds, and those errors are small enough for that to mean something.
void expect_exponent(const json& v, double expected) {
  INFO(v.dump());
  REQUIRE(!v["fitted"].is_null());
  double fitted = v["fitted"], se = v["fitted_se"];
  CHECK(se < 0.1);
  CHECK(std::abs(fitted - expected) <= 0.1 + 3 * se);
}

}  // namespace

TEST_CASE("coordcheck on SP with a constant learning rate: the growing vectors at n^1/2") {
  // SP (a = 0, b = (0, 1/2, 1/2), c = 0), one step: the readout gradient is
  // dx[2] = n^{-1/2} v, so the backward vectors are n^{-1/2}; the second
  // layer's update eta n^{1-c} chi avg(x1 x1) dh[2] is n * n^{-1/2} = n^{1/2}.
  auto j = coordcheck("programs/sp_unstable.tp --widths 256,512,1024,2048 --seeds 16 --step-index 2");
  for (const char* name : {"h[1][0][1]", "x[1][0][1]", "h[2][0][1]", "x[2][0][1]", "h[1][1][1]", "x[1][1][1]"}) {
    CHECK(vec(j, name)["predicted"] == 0.0);
    expect_exponent(vec(j, name), 0.0);
  }
  for (const char* name : {"dx[2][0][1][0]", "dh[2][0][1]", "dx[1][0][1][0]", "dh[1][0][1]"}) {
    CHECK(vec(j, name)["predicted"] == -0.5);
    expect_exponent(vec(j, name), -0.5);
  }
  for (const char* name : {"w[2][1][1][0][1]", "u[2][1][1][1]", "h[2][1][1]"}) {
    CHECK(vec(j, name)["predicted"] == 0.5);
    expect_exponent(vec(j, name), 0.5);
  }
  // tanh of a growing argument: the analysis cannot say, and says why.
  const auto& x = vec(j, "x[2][1][1]");
  CHECK(x["predicted"].is_null());
  CHECK(x["unpredicted"].get<std::string>().find("grow like n^0.5") != std::string::npos);
  for (const auto& v : j["vectors"]) {
    INFO(v.dump());
    CHECK(v["disagree"] == false);
    CHECK(v["panel"] == (v["name"] == "v" ? "no step" : "step " + v["name"].get<std::string>().substr(v["name"].get<std::string>().find("][") + 2, 1)));
  }
}

TEST_CASE("coordcheck on muP: every activation and preactivation is flat") {
  auto j = coordcheck("programs/mup_mlp_train.tp -D T=1 --only h x --widths 256,512,1024,2048 --seeds 8");
  CHECK(j["vectors"].size() == 16);  // h and x, 2 layers, 2 steps, 2 inputs
  for (const auto& v : j["vectors"]) {
    CHECK(v["predicted"] == 0.0);
    expect_exponent(v, 0.0);
    CHECK(v["disagree"] == false);
  }
}

TEST_CASE("coordcheck --plot: one panel per step and escaped text, and usage errors") {
  fs::path d = scratch();
  fs::copy_file(kSrc / "programs/sp_unstable.tp", d / "a&b<c>.tp", fs::copy_options::overwrite_existing);
  fs::create_directories(d / "stdlib");
  fs::copy_file(kSrc / "stdlib/sgd_mlp.tp", d / "stdlib/sgd_mlp.tp", fs::copy_options::overwrite_existing);
  auto r = run("coordcheck 'a&b<c>.tp' --widths 128,256 --seeds 2 --step-index 2 --plot sp.svg", d);
  INFO(r.err);
  REQUIRE(r.rc == 0);
  std::string svg = slurp(d / "sp.svg");
  CHECK(svg.find("a&amp;b&lt;c&gt;.tp") != std::string::npos);
  CHECK(svg.find("a&b<c") == std::string::npos);
  for (const char* panel : {">no step<", ">step 0<", ">step 1<"}) CHECK(svg.find(panel) != std::string::npos);
  CHECK(svg.find("stroke-dasharray") != std::string::npos);  // predicted slopes
  CHECK(svg.rfind("</svg>") != std::string::npos);

  CHECK(run("coordcheck programs/sp_unstable.tp --widths 256").rc == 2);
  CHECK(run("coordcheck programs/sp_unstable.tp --only nothing").rc == 2);
  CHECK(run("coordcheck programs/sp_unstable.tp --plot /nonexistent/dir/p.svg").rc == 1);
}
