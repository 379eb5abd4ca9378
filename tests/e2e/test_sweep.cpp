// Sweeps (-D NAME=a,b,c and -D NAME=FROM:TO:COUNT[:log]) on limit, run and
// converge: one row per point of the grid, in text, CSV and JSON.
#include <nlohmann/json.hpp>

#include <cmath>

#include "harness.hpp"

using namespace e2e;

namespace {

// A x with A of shape (rho n) x n, entries N(0, 1/n): E[(A.T A x) x] = rho,
// the aspect ratio itself (the Marchenko-Pastur mean), a closed form.
const char* kRatio = R"(const rho = 0.5
const s = 1
width m = rho n
matrix A[m, n] : gaussian(var=1.0)
vector x : gaussian(var=1.0)
z = A.T @ (A @ x)
report r = s * avg(z * x)
)";

}  // namespace

TEST_CASE("a limit sweep over a width ratio gives the closed form at every point, in text, JSON and CSV") {
  fs::path f = write_program("ratio.tp", kRatio);
  auto r = run("limit --json -D rho=0.5:2:4 -D s=1,-1 '" + f.string() + "'");
  expect_no_crash(r);
  REQUIRE(r.rc == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["axes"][0]["values"] == nlohmann::json({0.5, 1.0, 1.5, 2.0}));
  REQUIRE(j["points"].size() == 8);
  for (const auto& p : j["points"]) {
    double rho = p["defines"]["rho"], s = p["defines"]["s"];
    const auto& q = p["result"]["quantities"]["r"];
    CHECK(std::abs(double(q["value"]) - s * rho) <= double(q["abs_error"]) + 1e-14);
  }
  // The first -D varies slowest.
  CHECK(j["points"][1]["defines"]["s"] == -1.0);
  CHECK(j["points"][1]["defines"]["rho"] == 0.5);

  fs::path csv = scratch() / "sweep.csv";
  r = run("limit -D rho=1,2 '" + f.string() + "' --csv '" + csv.string() + "'");
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("limit at 2 points (2 rho)") != std::string::npos);
  CHECK(r.out.find("rho | r") != std::string::npos);
  std::string text = slurp(csv);
  CHECK(text.rfind("\"rho\",\"r\",\"r_error\"\n1,1,", 0) == 0);
  CHECK(text.find("\n2,2,") != std::string::npos);
}

TEST_CASE("a log range, and a run sweep agrees with the limit at each point within its standard errors") {
  fs::path f = write_program("ratio.tp", kRatio);
  auto r = run("run --json --width 512 --seeds 8 -D rho=0.25:4:3:log '" + f.string() + "'");
  REQUIRE(r.rc == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["axes"][0]["values"] == nlohmann::json({0.25, 1.0, 4.0}));
  for (const auto& p : j["points"]) {
    double rho = p["defines"]["rho"];
    const auto& q = p["result"]["quantities"]["r"];
    CHECK(std::abs(double(q["mean"]) - rho) <= 5 * double(q["sem"]));
  }
}

TEST_CASE("the 3 x 3 sweep of a learning rate and a width ratio on a muP training program is one table") {
  auto r = run("limit programs/mup_two_widths.tp -D eta=0.5,1,2 -D rho=0.5,1,2");
  expect_no_crash(r);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("limit at 9 points (3 eta x 3 rho)") != std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 11);  // title, header, 9 rows
  // The features' displacement -eta chi |xi|^2 (W.T dh2) tanh'(h1) has variance
  // proportional to eta^2 rho (W.T sums over m = rho n rows), and chi -> -y does
  // not depend on either: dK1 depends on eta^2 rho alone, so (0.5, 2) and (1, 0.5) agree.
  auto j = nlohmann::json::parse(run("limit --json programs/mup_two_widths.tp -D eta=0.5,1 -D rho=0.5,2").out);
  auto dk = [&](int i) { return double(j["points"][i]["result"]["quantities"]["dK1"]["value"]); };
  auto e = [&](int i) { return double(j["points"][i]["result"]["quantities"]["dK1"]["abs_error"]); };
  CHECK(std::abs(dk(1) - dk(2)) <= e(1) + e(2) + 1e-12);
  CHECK(dk(0) < dk(1));
  CHECK(dk(1) < dk(3));
}

TEST_CASE("a point the program refuses is a row saying why, and the others still run") {
  fs::path f = write_program("ratio.tp", kRatio);
  auto r = run("limit -D rho=-1,1 '" + f.string() + "'");
  expect_no_crash(r);
  CHECK(r.rc == 1);
  CHECK(r.out.find("refused: 3:11: a width ratio must be a positive number") != std::string::npos);
  CHECK(r.out.find("1   | 1 ± ") != std::string::npos);
  CHECK(r.err.find("1 of 2 points refused; the first:") != std::string::npos);
  CHECK(r.err.find("ratio.tp:3:11: error: a width ratio must be a positive number") != std::string::npos);
  // Refused at every point: the program's error alone, as without a sweep.
  expect_clean_error(run("limit -D rho=-1,-2 '" + f.string() + "'"), "a width ratio must be a positive number");
}

TEST_CASE("malformed sweeps and sweeps on commands that take none are usage errors") {
  fs::path f = write_program("ratio.tp", kRatio);
  std::string p = " '" + f.string() + "'";
  expect_usage_error(run("limit -D rho=1,abc" + p), "-D: the value of 'rho' is not a finite number: 'abc'");
  expect_usage_error(run("limit -D rho=1,nan" + p), "is not a finite number");
  expect_usage_error(run("limit -D rho=0:1:1" + p), "COUNT is a whole number from 2 to 10000");
  expect_usage_error(run("limit -D rho=0:1:2.5" + p), "COUNT is a whole number");
  expect_usage_error(run("limit -D rho=0:1" + p), "is not a range: write FROM:TO:COUNT");
  expect_usage_error(run("limit -D rho=-1:1:3:log" + p), "a log range, which needs FROM and TO above 0");
  expect_usage_error(run("limit -D rho=1,2 -D rho=3" + p), "'rho' is given twice");
  expect_usage_error(run("limit -D rho=0:1:200 -D s=0:1:200" + p), "more than 10000 points");
  expect_usage_error(run("check -D rho=1,2" + p), "sweeps (NAME=a,b,c or NAME=FROM:TO:COUNT) work with limit, run and converge");
  expect_usage_error(run("converge -D rho=1,2 --plot x.svg" + p), "--plot draws one program");
  expect_usage_error(run("limit -D x=1" + p), "-D x: 'x' is not a constant of the program");
}
