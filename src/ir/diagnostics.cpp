#include "netsor/diagnostics.hpp"

#include <algorithm>
#include <map>
#include <mutex>
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
    // Show at most ~100 characters of a long line, centred on the caret.
    std::string text = d.source_line;
    // A column past the line's end (one counted in code points on a line with
    // invalid bytes, or the end of input) puts the caret just after the text.
    int col = std::clamp(d.loc.col, 1, (int)text.size() + 1), len = d.loc.len;
    constexpr int kWidth = 100;
    if ((int)text.size() > kWidth + 20) {
      int start = std::clamp(col - 1 - kWidth / 2, 0, (int)text.size() - kWidth);
      std::string window = text.substr(start, kWidth);
      text = (start > 0 ? "..." : "") + window + (start + kWidth < (int)d.source_line.size() ? "..." : "");
      col = col - start + (start > 0 ? 3 : 0);
      len = std::min(len, kWidth - (col - 1));
    }
    std::string num = std::to_string(d.loc.line);
    o << "  " << num << " | " << text << "\n";
    o << "  " << std::string(num.size(), ' ') << " | ";
    // Reproduce tabs so the caret lines up under the token.
    for (int i = 1; i < col && i - 1 < (int)text.size(); ++i) o << (text[i - 1] == '\t' ? '\t' : ' ');
    o << '^' << std::string(len > 1 ? len - 1 : 0, '~') << "\n";
  }
  if (!d.hint.empty()) o << "hint: " << d.hint << "\n";
  return o.str();
}

namespace {
std::mutex sources_mutex;
std::map<std::string, std::vector<std::string>>& sources() {
  static std::map<std::string, std::vector<std::string>> s;
  return s;
}
}  // namespace

void remember_source_lines(const std::string& file, const std::vector<std::string>& lines) {
  std::lock_guard<std::mutex> lock(sources_mutex);
  sources()[file] = lines;
}

ProgramError::ProgramError(Diagnostic d) : std::runtime_error(d.message), diag_(std::move(d)) {
  if (diag_.loc.line < 1 || !diag_.source_line.empty()) return;
  std::lock_guard<std::mutex> lock(sources_mutex);
  auto it = sources().find(diag_.loc.file);
  if (it != sources().end() && diag_.loc.line <= (int)it->second.size())
    diag_.source_line = it->second[diag_.loc.line - 1];
}

}  // namespace netsor
