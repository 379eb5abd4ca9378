// Regressions from fuzzing and hostile input (issue 15): the corpus in
// tests/regress replayed, and the cases a file cannot hold (devices, pipes,
// flags, output files) generated here.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>

#include <optional>
#include <regex>

#include "harness.hpp"

using namespace e2e;

namespace {

// The header of a tests/regress file: its leading comment lines
//   # run: ARGS        netsor ARGS FILE (repeatable; default: check)
//   # exit: N          the exit status of every run
//   # stderr: TEXT     in stderr of every run (LINE:COL: ... gets FILE: in front)
//   # stdout: TEXT     in stdout of every run
// Line ends may be LF, CRLF or CR, and a byte order mark may come first.
struct Case {
  std::vector<std::string> runs, err, out;
  int exit = -1;
};

Case read_case(const fs::path& f) {
  std::string text = slurp(f);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  Case c;
  std::stringstream in(std::regex_replace(text, std::regex("\r\n?"), "\n"));
  const std::regex located("^[0-9]+:[0-9]+: .*");
  for (std::string line; std::getline(in, line) && line.rfind("# ", 0) == 0;) {
    auto value = [&](const char* key) {
      std::string k = std::string("# ") + key + ": ";
      return line.rfind(k, 0) == 0 ? std::optional<std::string>(line.substr(k.size())) : std::nullopt;
    };
    if (auto v = value("run")) c.runs.push_back(*v);
    if (auto v = value("exit")) c.exit = std::stoi(*v);
    if (auto v = value("stdout")) c.out.push_back(*v);
    if (auto v = value("stderr"))
      c.err.push_back(std::regex_match(*v, located) ? f.filename().string() + ":" + *v : *v);
  }
  if (c.runs.empty()) c.runs.push_back("check");
  return c;
}

}  // namespace

TEST_CASE("the regression corpus: each tests/regress file's runs, exit status and output") {
  auto files = tp_files(kSrc / "tests/regress");
  CHECK(files.size() >= 25);
  for (const auto& f : files) {
    Case c = read_case(f);
    CHECK_MESSAGE(c.exit >= 0, f.filename().string() << " needs a '# exit: N' line");
    for (const auto& args : c.runs) {
      INFO(f.filename().string() << ": netsor " << args);
      auto r = run(args + " '" + f.filename().string() + "'", kSrc / "tests/regress");
      INFO("stderr: " << r.err);
      expect_no_crash(r);
      CHECK(r.rc == c.exit);
      for (const auto& e : c.err) CHECK(r.err.find(e) != std::string::npos);
      for (const auto& o : c.out) CHECK(r.out.find(o) != std::string::npos);
      if (c.exit != 0) CHECK(r.out.empty());
    }
  }
}

TEST_CASE("sources without a size are read with a bound: devices, pipes, a FIFO nobody writes to") {
  expect_clean_error(run("check /dev/zero"), "/dev/zero: error: file is too large: more than 4194304 bytes");
  expect_clean_error(run("check /dev/urandom"), "/dev/urandom: error: file is too large");
  expect_clean_error(run("check /dev/stdin", kSrc, "yes"), "/dev/stdin: error: file is too large");
  auto piped = run("check /dev/stdin", kSrc, "printf 'vector x : gaussian(var=1)\\nreport r = avg(x * x)\\n'");
  CHECK(piped.rc == 0);
  CHECK(piped.out == "/dev/stdin: ok (2 variables, 2 instructions, 1 reports)\n");
  fs::path d = scratch();
  fs::path fifo = d / "fifo.tp";
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect_clean_error(run("check '" + fifo.string() + "'"), "error: nothing to read from '" + fifo.string() +
                                                               "' after 5 seconds");
  auto fed = run("check '" + fifo.string() + "'", kSrc,
                 "(sleep 1; printf 'vector x : gaussian(var=1)\\n' >'" + fifo.string() + "') & true");
  CHECK(fed.rc == 0);
  CHECK(fed.out.find("ok (1 variables") != std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("command-line values that are not what they claim are usage errors (exit 2)") {
  const std::string prog = "'tests/regress/index_distinct.tp' ";
  struct Bad {
    std::string args, message;
  };
  for (const Bad& b : std::vector<Bad>{
           {"run --memory abc", "--memory: 'abc': expected bytes like 20G, 512M or 1000000"},
           {"run --memory nan", "--memory: 'nan': expected bytes"},
           {"run --memory inf", "--memory: 'inf': expected bytes"},
           {"run --memory 1e30G", "--memory: '1e30G' is more than any machine has"},
           {"converge --memory -5G", "--memory: '-5G': expected bytes"},
           {"limit --tol nan", "--tol: 'nan' is not a finite number"},
           {"run --seed -1", "--seed: '-1' is not a whole number from 0 to 18446744073709551615"},
           {"run --seed 2^64", "--seed: '2^64' is not a whole number"},
           {"run --seed 1e23", "--seed: '1e23' is not a whole number"},
           {"run --seed 18446744073709551616", "--seed: '18446744073709551616' is not a whole number"},
           {"converge --csv ''", "--csv: an empty path"},
           {"converge --plot ''", "--plot: an empty path"},
       }) {
    INFO(b.args);
    expect_usage_error(run(b.args.substr(0, b.args.find(' ')) + " " + prog + b.args.substr(b.args.find(' ') + 1)),
                       b.message);
  }
  for (const Bad& b : std::vector<Bad>{
           {"abc --layers 1 --a 0,1 --b 0,0 --c inf", "--c: 'inf' is not a finite number"},
           {"abc --layers 1 --a 0,nan --b 0,0 --c 1", "--a: 'nan' is not a finite number"},
           {"abc --layers 1 --a 0,1 --b -inf,0 --c 1", "--b: '-inf' is not a finite number"},
       }) {
    INFO(b.args);
    expect_usage_error(run(b.args), b.message);
  }
  auto max_seed = run("run " + prog + "--width 16 --seeds 1 --seed 18446744073709551615 --memory 1G");
  CHECK(max_seed.rc == 0);
  CHECK(max_seed.err.empty());
}

TEST_CASE("converge output files: checked before computing, replaced whole or not at all") {
  fs::path d = scratch() / "outputs";
  fs::create_directories(d);
  const std::string prog = "'" + (kSrc / "tests/regress/index_distinct.tp").string() + "' --widths 32,64 --seeds 2";
  {
    std::ofstream(d / "plain") << "a file, not a folder\n";
  }
  // Unwritable (even for root: a path through a regular file): refused at once, exit 2.
  auto r = run("converge " + prog + " --csv '" + (d / "plain/table.csv").string() + "'");
  expect_usage_error(r, "--csv: '" + (d / "plain/table.csv").string() + "': cannot write this file: Not a directory");
  r = run("converge " + prog + " --plot '" + d.string() + "'");
  expect_usage_error(r, "cannot write this file: Is a directory");
  // A write that fails midway (files limited to 1 KiB; the plot is larger):
  // the table is on stdout, the old plot untouched, no temporary left behind.
  {
    std::ofstream(d / "plot.svg") << "OLD\n";
  }
  r = run("converge " + prog + " --plot '" + (d / "plot.svg").string() + "'", d, "trap '' XFSZ; ulimit -f 1; true");
  expect_no_crash(r);
  CHECK(r.rc == 1);
  CHECK(r.out.find("slope of log(rms error)") != std::string::npos);
  CHECK(r.err.find("plot.svg: error: cannot write this file: File too large") != std::string::npos);
  CHECK(slurp(d / "plot.svg") == "OLD\n");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(d)) ++files;
  CHECK(files == 2);  // plain and plot.svg
  // And when it works, both files are complete.
  r = run("converge " + prog + " --plot plot.svg --csv table.csv", d);
  CHECK(r.rc == 0);
  CHECK(slurp(d / "plot.svg").find("</svg>") != std::string::npos);
  CHECK(slurp(d / "table.csv").rfind("quantity,width,seeds,mean", 0) == 0);
  fs::remove_all(d);
}

// A signal mid-computation (issue 14): the command ends within a second with
// 128 + the signal's number and leaves no output file, whole or partial.
TEST_CASE("SIGINT and SIGTERM during a long converge: exit 130 / 143 at once, no output file") {
  fs::path d = scratch() / "signals";
  fs::create_directories(d);
  for (int sig : {SIGINT, SIGTERM}) {
    fs::path csv = d / ("out" + std::to_string(sig) + ".csv");
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::string prog = (kSrc / "programs/mup_mlp_train.tp").string(), out = csv.string();
      ::execl(kBin.c_str(), kBin.c_str(), "converge", prog.c_str(), "--csv", out.c_str(), "--seeds", "8",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::usleep(1500 * 1000);  // well inside the limit pass (tens of seconds)
    auto sent = std::chrono::steady_clock::now();
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
    INFO("signal " << sig);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + sig);
    CHECK(waited < 1.0);
    for (const auto& e : fs::directory_iterator(d)) CHECK_MESSAGE(false, "left behind: " << e.path());
  }
}

// A seed fixes every number whatever the thread count (issue 14): the whole
// JSON output of each command with randomness, byte for byte.
TEST_CASE("the same seed gives byte-identical output with 1, 2 and 4 threads on run and converge") {
  const std::vector<std::string> commands = {
      "run programs/mlp_ntk.tp --width 200 --seeds 5 --seed 7 --json",
      "run programs/wigner_moments.tp --width 300 --seeds 3 --float32 --json",
      "converge programs/rnn_gp.tp --widths 64,128 --seeds 5 --json",
  };
  for (const auto& c : commands) {
    auto one = run(c + " --threads 1");
    INFO(c << "\n" << one.err);
    REQUIRE(one.rc == 0);
    CHECK(one.out.size() > 50);
    for (int t : {2, 4}) CHECK(run(c + " --threads " + std::to_string(t)).out == one.out);
  }
}
