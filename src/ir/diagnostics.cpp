#include "netsor/diagnostics.hpp"

#include <sstream>

namespace netsor {

std::string format(const Diagnostic& d) {
  std::ostringstream o;
  if (!d.loc.file.empty()) {
    o << d.loc.file;
    if (d.loc.line > 0) o << ":" << d.loc.line << ":" << d.loc.col;
    o << ": ";
  }
  o << "error: " << d.message << "\n";
  if (d.loc.line > 0 && !d.source_line.empty()) {
    std::string num = std::to_string(d.loc.line);
    o << "  " << num << " | " << d.source_line << "\n";
    o << "  " << std::string(num.size(), ' ') << " | ";
    // Reproduce tabs so the caret lines up under the token.
    for (int i = 1; i < d.loc.col && i - 1 < (int)d.source_line.size(); ++i)
      o << (d.source_line[i - 1] == '\t' ? '\t' : ' ');
    o << '^' << std::string(d.loc.len > 1 ? d.loc.len - 1 : 0, '~') << "\n";
  }
  if (!d.hint.empty()) o << "hint: " << d.hint << "\n";
  return o.str();
}

ProgramError::ProgramError(Diagnostic d) : std::runtime_error(d.message), diag_(std::move(d)) {}

}  // namespace netsor
