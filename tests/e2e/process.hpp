// Running the netsor binary from a test: a shell command with stdout and stderr
// captured through files in a scratch folder, and its exit status.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace netsor_test {

struct Result {
  int rc = -1;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `cmd` (already shell-quoted) with no stdin; the exit code, or 128 + the signal.
inline Result run_shell(const std::string& cmd, const std::filesystem::path& scratch) {
  auto o = scratch / "out.txt", e = scratch / "err.txt";
  int status = std::system((cmd + " >'" + o.string() + "' 2>'" + e.string() + "' </dev/null").c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

}  // namespace netsor_test
