// Running the netsor binary from the end-to-end tests.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace e2e {

namespace fs = std::filesystem;

inline const std::string kBin = NETSOR_BIN;
inline const fs::path kSrc = NETSOR_SOURCE_DIR;
// A hang is a failure, not a stuck test run (exit status 124 from timeout).
inline constexpr int kTimeoutSeconds = 120;

struct Result {
  int rc = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline fs::path scratch() {
  fs::path d = fs::temp_directory_path() / ("netsor_e2e_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// A program written to the scratch directory, for a test of its own.
inline fs::path write_program(const std::string& name, const std::string& text) {
  fs::path p = scratch() / name;
  std::ofstream(p) << text;
  return p;
}

// Runs netsor with args (already shell-quoted), in `cwd`. Its standard input
// is empty, or the output of the shell command `feed`.
inline Result run(const std::string& args, const fs::path& cwd = kSrc, const std::string& feed = "") {
  fs::path d = scratch();
  fs::path o = d / "out.txt", e = d / "err.txt";
  std::string cmd = "cd '" + cwd.string() + "' && " + (feed.empty() ? "" : feed + " | ") + "timeout " +
                    std::to_string(kTimeoutSeconds) + " '" + kBin + "' " + args + " >'" + o.string() + "' 2>'" +
                    e.string() + "'" + (feed.empty() ? " </dev/null" : "");
  int status = std::system(cmd.c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

// No crash, hang, internal error or sanitizer report.
inline void expect_no_crash(const Result& r) {
  CHECK(r.rc < 124);
  CHECK(r.err.find("internal error") == std::string::npos);
  CHECK(r.err.find("Sanitizer") == std::string::npos);
  CHECK(r.err.find("runtime error") == std::string::npos);
}

// A clean failure: exit 1, one located error on stderr, nothing on stdout.
inline void expect_clean_error(const Result& r, const std::string& needle) {
  expect_no_crash(r);
  CHECK(r.rc == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("error: ") != std::string::npos);
  CHECK(r.err.find(needle) != std::string::npos);
}

// A usage error: exit 2, the reason on stderr, nothing on stdout.
inline void expect_usage_error(const Result& r, const std::string& needle) {
  expect_no_crash(r);
  CHECK(r.rc == 2);
  CHECK(r.out.empty());
  CHECK(r.err.find(needle) != std::string::npos);
}

inline std::vector<fs::path> tp_files(const fs::path& dir) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".tp") v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace e2e
