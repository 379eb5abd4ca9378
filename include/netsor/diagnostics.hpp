// Diagnostics: every error a user sees is a file:line:col, the source line, a
// caret under the offending token, what was expected, and a hint.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace netsor {

struct SourceLoc {
  std::string file;  // path as the user gave it (or as resolved for imports)
  int line = 0;      // 1-based; 0 = no position (whole-file or command-line errors)
  int col = 0;       // 1-based, in characters
  int len = 1;       // length of the token the caret underlines
};

struct Diagnostic {
  SourceLoc loc;
  std::string message;      // what is wrong, and what was expected
  std::string hint;         // how to fix it (may be empty)
  std::string source_line;  // the text of loc.line, for the caret display
};

// "file:3:9: error: message\n    3 | text\n      |   ^~~\nhint: ..."
std::string format(const Diagnostic& d);

// The front end remembers the lines of every source file it has read, so that
// an error found later, by a pass that sees only the IR (the limit pass, the
// executor), still shows the line and the caret: ProgramError fills
// Diagnostic::source_line from here when the pass left it empty.
void remember_source_lines(const std::string& file, const std::vector<std::string>& lines);

// Thrown by every pass for an error in the user's program (exit status 1).
class ProgramError : public std::runtime_error {
 public:
  explicit ProgramError(Diagnostic d);
  const Diagnostic& diagnostic() const { return diag_; }

 private:
  Diagnostic diag_;
};

// A broken invariant inside netsor (e.g. ir::verify after lowering): a bug, not
// the user's error (exit status 3).
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// An error in how netsor was invoked that shows only once the program is read,
// such as a -D naming no constant of it (exit status 2, like other usage errors).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace netsor
