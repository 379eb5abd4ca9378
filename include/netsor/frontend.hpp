// The front end: read a .tp file, parse it (ANTLR, grammar/Netsor.g4), check it,
// and lower it to the IR (include/netsor/ir.hpp). Every error is a ProgramError
// carrying a located Diagnostic.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "netsor/ir.hpp"

namespace netsor {

inline constexpr std::size_t kMaxWork = 10000000;  // statements and expressions lowered

struct FrontendOptions {
  // -D NAME=value on the command line: constants visible to the program and to
  // every module it imports (a `const` of the same name in the file is an error).
  std::map<std::string, double> defines;
  // Where `import` looks after the importing file's folder. Empty: the stdlib
  // folder found next to the executable or in the source tree.
  std::string stdlib_dir;
  // Statements and expressions lowered; the fuzz targets lower it so that one
  // input stays inside their time budget.
  std::size_t max_work = kMaxWork;
};

// Limits that keep hostile input from hanging or exhausting the machine.
inline constexpr std::size_t kMaxSourceBytes = 4u << 20;   // 4 MiB per file
inline constexpr int kMaxNesting = 256;                    // ( [ { depth
inline constexpr std::size_t kMaxStatementTokens = 20000;  // tokens per statement
inline constexpr std::size_t kMaxInstructions = 2000000;   // after unrolling
inline constexpr int kMaxCallDepth = 64;                   // nested def calls
inline constexpr std::size_t kMaxExpressionSize = 200000;  // nodes of one expression, written out
inline constexpr std::size_t kMaxExpressionDepth = 20000;  // levels of one expression, and of its lowering
inline constexpr int kMaxReadWaitSeconds = 5;              // a pipe or FIFO that sends nothing

// Runs fn on a thread with a stack large enough for every pass's recursion
// over a program the front end accepted; rethrows what fn throws.
void run_on_big_stack(const std::function<void()>& fn);

ir::Program compile_file(const std::string& path, const FrontendOptions& opts = {});
ir::Program compile_string(const std::string& text, const std::string& name,
                           const FrontendOptions& opts = {});

}  // namespace netsor
