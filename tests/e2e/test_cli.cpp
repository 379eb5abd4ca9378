// End-to-end: the netsor binary on every program and module we ship, on the
// malformed-program catalogue in tests/bad, and on generated hostile input.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include <chrono>
#include <random>

#include "harness.hpp"

using namespace e2e;

TEST_CASE("every shipped program and stdlib module passes netsor check") {
  auto files = tp_files(kSrc / "programs");
  auto lib = tp_files(kSrc / "stdlib");
  files.insert(files.end(), lib.begin(), lib.end());
  CHECK(files.size() >= 9);
  for (const auto& f : files) {
    INFO(f.string());
    auto r = run("check '" + f.string() + "'");
    CHECK(r.rc == 0);
    CHECK(r.err.empty());
  }
}

TEST_CASE("the malformed-program catalogue: each file's expected error, exit 1") {
  // Each tests/bad/*.tp starts with  # expect: [FILE:]LINE:COL: MESSAGE
  auto files = tp_files(kSrc / "tests/bad");
  CHECK(files.size() >= 30);
  for (const auto& f : files) {
    INFO(f.filename().string());
    std::string first = slurp(f).substr(0, slurp(f).find('\n'));
    REQUIRE(first.rfind("# expect: ", 0) == 0);
    std::string spec = first.substr(10);
    std::size_t sep = spec.find(": ");
    std::string loc = spec.substr(0, sep), msg = spec.substr(sep + 2);
    if (loc.find(".tp:") == std::string::npos) loc = f.filename().string() + ":" + loc;
    auto r = run("check '" + f.filename().string() + "'", kSrc / "tests/bad");
    expect_clean_error(r, loc + ": error: " + msg);
    CHECK(r.err.find("\n  ") != std::string::npos);  // the source line and caret
  }
}

TEST_CASE("hostile input: binary garbage, NUL bytes, 10000-deep nesting, a 50 MB file") {
  fs::path d = scratch();
  {
    std::mt19937 rng(7);
    std::ofstream f(d / "garbage.tp", std::ios::binary);
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>(rng() & 0xFF));
  }
  expect_clean_error(run("check '" + (d / "garbage.tp").string() + "'"), "not a text file");
  {
    std::ofstream f(d / "nul.tp", std::ios::binary);
    f << "vector x : gaussian(var=1)\ny = x";
    f.put('\0');
    f << "\n";
  }
  expect_clean_error(run("check '" + (d / "nul.tp").string() + "'"), "nul.tp:2:6: error: this is not a text file");
  {
    std::ofstream f(d / "deep.tp");
    f << "vector x : gaussian(var=1)\ny = " << std::string(10000, '(') << "x" << std::string(10000, ')') << "\n";
  }
  expect_clean_error(run("check '" + (d / "deep.tp").string() + "'"), "deep.tp:2:261: error: brackets nested too deeply");
  {
    std::ofstream f(d / "deep_calls.tp");
    f << "vector x : gaussian(var=1)\ny = ";
    for (int i = 0; i < 10000; ++i) f << "tanh(";
    f << "x" << std::string(10000, ')') << "\n";
  }
  expect_clean_error(run("check '" + (d / "deep_calls.tp").string() + "'"), "brackets nested too deeply");
  {
    std::ofstream f(d / "huge.tp");
    std::string line = "# padding padding padding padding padding padding padding padding padding\n";
    for (std::size_t w = 0; w < (50u << 20); w += line.size()) f << line;
  }
  expect_clean_error(run("check '" + (d / "huge.tp").string() + "'"), "file is too large");
  {
    std::ofstream f(d / "truncated.tp");
    f << "matrix W : gaussian(var=2)\nvector x : gaussian(var=1)\nh = W @ (x + rel";
  }
  expect_clean_error(run("check '" + (d / "truncated.tp").string() + "'"), "unexpected end of file");
  expect_clean_error(run("check '" + (d / "no_such_file.tp").string() + "'"), "no such file");
  expect_clean_error(run("check '" + d.string() + "'"), "is a folder");
  fs::remove_all(d);
}

TEST_CASE("usage errors exit 2 and --help exits 0") {
  CHECK(run("").rc == 2);
  CHECK(run("frobnicate x.tp").rc == 2);
  CHECK(run("check").rc == 2);
  CHECK(run("check programs/wigner_moments.tp -D T").rc == 2);
  CHECK(run("check programs/wigner_moments.tp -D K=abc").rc == 2);
  auto h = run("--help");
  CHECK(h.rc == 0);
  CHECK(h.out.find("check") != std::string::npos);
  CHECK(run("check --help").rc == 0);
}

TEST_CASE("netsor print --json of a 3-layer MLP lists kind, shape and defining instruction") {
  fs::path d = scratch();
  {
    std::ofstream f(d / "mlp3.tp");
    f << "input xi = [1.0, -0.5]\n"
         "matrix U[n, 2] : gaussian(var=2)\nmatrix W2 : gaussian(var=2)\nmatrix W3 : gaussian(var=2)\n"
         "h1 = U @ xi\nx1 = relu(h1)\nh2 = W2 @ x1\nx2 = relu(h2)\nh3 = W3 @ x2\n"
         "report k = avg(h3 * h3)\n";
  }
  auto r = run("print --json '" + (d / "mlp3.tp").string() + "'");
  REQUIRE(r.rc == 0);
  auto j = nlohmann::json::parse(r.out);
  std::map<std::string, nlohmann::json> vars;
  for (const auto& v : j["vars"]) vars[v["name"]] = v;
  CHECK(vars["W2"]["kind"] == "A");
  CHECK(vars["W2"]["shape"] == nlohmann::json::array({"n", "n"}));
  CHECK(vars["U"]["shape"] == nlohmann::json::array({"n", "2"}));
  CHECK(vars["h1"]["kind"] == "G");
  CHECK(vars["h1"]["def"]["op"] == "init");
  CHECK(vars["x1"]["kind"] == "H");
  CHECK(vars["x1"]["def"]["op"] == "nonlin");
  CHECK(vars["x1"]["def"]["text"] == "relu(h1)");
  CHECK(vars["h2"]["kind"] == "G");
  CHECK(vars["h2"]["def"]["text"] == "W2 @ x1");
  CHECK(vars["h3"]["shape"] == nlohmann::json::array({"n"}));
  CHECK(vars["k"]["kind"] == "scalar");
  CHECK(vars["k"]["def"]["op"] == "moment");
  fs::remove_all(d);
}

TEST_CASE("netsor abc: JSON verdicts, --verify exponents, usage errors") {
  auto j = nlohmann::json::parse(run("abc --preset mup --layers 3 --json").out);
  CHECK(j["stable"] == true);
  CHECK(j["nontrivial"] == true);
  CHECK(j["regime"] == "feature_learning");
  CHECK(j["r"] == 0.0);
  CHECK(j["r_l"].size() == 3);
  auto sp = nlohmann::json::parse(run("abc --preset sp --json").out);
  CHECK(sp["regime"] == "unstable");
  CHECK(sp["failed"].size() == 3);
  auto custom = nlohmann::json::parse(run("abc --layers 1 --a 0,1 --b 0,0 --c -1 --json").out);
  CHECK(custom["regime"] == "feature_learning");  // mean field
  // The measured exponents against primer section 4, not against netsor's own
  // prediction: the one-step change of layer l scales as n^-r_l, and
  // r_l = min(a_{L+1} + b_{L+1}, 2 a_{L+1} + c) + c - 1 + 2 a_l + [l = 1]
  // is 0 for every layer under muP and 1/2 for every layer under NTK.
  for (auto [preset, minus_r] : {std::pair{"mup", 0.0}, std::pair{"ntk", -0.5}}) {
    INFO(preset);
    auto r = run(std::string("abc --preset ") + preset + " --verify --json");
    REQUIRE(r.rc == 0);
    auto v = nlohmann::json::parse(r.out)["verify"];
    CHECK(v["measured"].size() >= 2);
    for (std::size_t l = 0; l < v["measured"].size(); ++l) {
      CHECK(v["predicted"][l].get<double>() == minus_r);
      CHECK(std::abs(v["measured"][l].get<double>() - minus_r) <= 0.15);
    }
  }
  CHECK(run("abc --preset mf --layers 2").rc == 2);
  CHECK(run("abc --layers 2 --a 0,0 --b 0,0,0 --c 0").rc == 2);
  CHECK(run("abc --preset nope").rc == 2);
}

TEST_CASE("run: the memory estimate is the measured peak") {
  // Widths too large to allocate or to represent are in tests/regress (width_*.tp).
  // The estimate against the peak resident memory of the run (getrusage of this
  // test's children, a maximum over them: one test case per process under
  // CTest, the runs in increasing size), allowing 48 MiB for the process itself.
  // mlp_nngp.tp's n x n matrices are streamed (no storage); nngp.tp is the same
  // network without them, at a width where its vectors and the tape's registers
  // (the estimate once put mlp_nngp 1.5-2x below its peak) are what counts.
#ifdef NETSOR_SANITIZED
  // ASan's shadow memory, redzones and quarantine make the resident peak 2-3x
  // what the same run needs in a Release build: the model is checked there.
  MESSAGE("skipped under the sanitizers: the resident peak is not the program's");
  return;
#endif
  fs::path d = scratch();
  std::ofstream(d / "nngp.tp") << "input xi[1] = [1.0, 0.0, 0.5]\ninput xi[2] = [0.2, -1.0, 0.3]\n"
                                  "input xi[3] = [0.2, -1.0, 0.3]\ninput xi[4] = [-0.7, 0.4, 1.1]\n"
                                  "matrix U[n, 3] : gaussian(var=2.0)\n"
                                  "for l in 1..5 {\n  vector b[l] : gaussian(var=0.1)\n}\n"
                                  "for a in 1..4 {\n  h[1][a] = U @ xi[a] + b[1]\n"
                                  "  for l in 2..5 {\n    h[l][a] = 1.4 * relu(h[l-1][a]) + b[l]\n  }\n}\n"
                                  "for a in 1..4 {\n  for c in a..4 {\n    report K[a][c] = avg(h[5][a] * h[5][c])\n  }\n}\n";
  const std::string runs[] = {"programs/mlp_nngp.tp --width 16384", "programs/mlp_ntk.tp --width 4096 --float32", "'" + (d / "nngp.tp").string() + "' --width 1048576",
                              "programs/wishart_moments.tp --width 4096"};
  for (const auto& args : runs) {
    INFO(args);
    auto est = run("run " + args + " --seeds 1 --threads 1 --memory 1");
    REQUIRE(est.err.find("needs ") != std::string::npos);
    double bytes = std::strtod(est.err.c_str() + est.err.find("needs ") + 6, nullptr);
    REQUIRE(run("run " + args + " --seeds 1 --threads 1").rc == 0);
    rusage ru{};
    getrusage(RUSAGE_CHILDREN, &ru);
    double peak = double(ru.ru_maxrss) * 1024;
    CHECK(peak >= 0.9 * bytes);
    CHECK(peak <= 1.1 * bytes + 48.0 * (1 << 20));
  }
  fs::remove_all(d);
}

TEST_CASE("limit --method: sampled names its points, quadrature stays, bad settings exit 2") {
  auto s = run("limit programs/transpose_correction.tp --json --method sampled --points 1024 --sample-seed 3");
  REQUIRE(s.rc == 0);
  auto js = nlohmann::json::parse(s.out);
  CHECK(js["sampling"].get<std::string>().find("1024 x 16") != std::string::npos);
  for (const auto& [name, q] : js["quantities"].items())
    CHECK(q["method"].get<std::string>().find("M = 1024 points x R = 16 randomizations") != std::string::npos);
  auto q = run("limit programs/transpose_correction.tp --json --method quadrature");
  REQUIRE(q.rc == 0);
  CHECK(!nlohmann::json::parse(q.out).contains("sampling"));
  // The same seed, the same numbers (the run is deterministic).
  CHECK(run("limit programs/transpose_correction.tp --json --method sampled --points 1024 --sample-seed 3").out == s.out);
  CHECK(run("limit programs/transpose_correction.tp --method sampled --points 1000").rc == 2);
  CHECK(run("limit programs/transpose_correction.tp --method montecarlo").rc == 2);
  CHECK(run("limit programs/transpose_correction.tp --method sampled --randomizations 1").rc == 2);
  // --tol drives the points: a loose target is reached at the first M and says so.
  auto t = run("limit programs/transpose_correction.tp --method sampled --tol 1e-2");
  CHECK(t.rc == 0);
  CHECK(t.out.find("reached") != std::string::npos);
}

TEST_CASE("converge --plot: an error panel and one panel per quantity, escaped text, and --only") {
  fs::path d = scratch() / "plot";
  fs::create_directories(d);
  fs::copy_file(kSrc / "programs/transpose_correction.tp", d / "a&b<c>.tp", fs::copy_options::overwrite_existing);
  auto r = run("converge 'a&b<c>.tp' --widths 128,256 --seeds 2 --plot p.svg", d);
  REQUIRE(r.rc == 0);
  std::string svg = slurp(d / "p.svg");
  CHECK(svg.find("a&amp;b&lt;c&gt;.tp") != std::string::npos);
  CHECK(svg.find("a&b<c") == std::string::npos);
  CHECK(svg.find("rms error over seeds") != std::string::npos);
  CHECK(svg.find("n^-1/2 guide") != std::string::npos);
  // One small panel (a frame and a limit line) per reported quantity.
  auto lines = [&](const std::string& s) {
    std::size_t n = 0;
    for (auto at = s.find("<title>limit "); at != std::string::npos; at = s.find("<title>limit ", at + 1)) ++n;
    return n;
  };
  CHECK(lines(svg) == 2);  // reports c and d
  r = run("converge 'a&b<c>.tp' --widths 128,256 --seeds 2 --only d --plot q.svg", d);
  REQUIRE(r.rc == 0);
  CHECK(lines(slurp(d / "q.svg")) == 1);
  CHECK(r.out.find("\nd   limit") != std::string::npos);
  CHECK(r.out.find("\nc   limit") == std::string::npos);
  expect_usage_error(run("converge 'a&b<c>.tp' --only nope", d), "--only nope: the program reports no 'nope' (its reports: c, d)");
}

TEST_CASE("--max-seconds refuses, before starting, runs predicted to take longer, and lets shorter ones run") {
  // 64 seeds at n = 65536 of a 4-layer MLP: hours; the prediction takes three pilot seeds.
  auto t0 = std::chrono::steady_clock::now();
  expect_clean_error(run("run programs/mlp_nngp.tp --width 65536 --seeds 64 --max-seconds 5"),
                     "the runs are predicted to take about");
  expect_clean_error(run("converge programs/mlp_nngp.tp --widths 1024,65536 --seeds 64 --max-seconds 5"),
                     "the finite-width runs are predicted to take about");
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 60);
  auto r = run("run programs/mlp_nngp.tp --width 256 --seeds 2 --max-seconds 600");
  CHECK(r.rc == 0);
  CHECK(r.out.find("relu_K[1][1]") != std::string::npos);
  expect_usage_error(run("run programs/mlp_nngp.tp --max-seconds -1"), "--max-seconds");
}
