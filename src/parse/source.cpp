#include "source.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "netsor/frontend.hpp"

namespace netsor::parse {

[[noreturn]] void fail(const SourceFile& f, int line, int col, int len, std::string message, std::string hint) {
  Diagnostic d;
  d.loc = {f.path, line, col, len < 1 ? 1 : len};
  d.message = std::move(message);
  d.hint = std::move(hint);
  if (line >= 1 && line <= (int)f.lines.size()) d.source_line = f.lines[line - 1];
  throw ProgramError(std::move(d));
}

namespace {

// Position (line, col) of byte offset `at`.
void position_of(const std::string& text, std::size_t at, int& line, int& col) {
  line = 1;
  col = 1;
  for (std::size_t i = 0; i < at && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
}

// Offset of the first byte that makes `text` not UTF-8 text, or npos.
std::size_t first_bad_byte(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    if (c == 0) return i;
    int n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (n < 0) return i;
    if (c < 0x80 && c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') return i;
    for (int k = 1; k <= n; ++k)
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return i;
    i += n + 1;
  }
  return std::string::npos;
}

}  // namespace

SourceFile make_source(std::string text, std::string name) {
  SourceFile f;
  f.path = std::move(name);
  f.text = std::move(text);
  std::size_t start = 0;
  while (start <= f.text.size()) {
    std::size_t nl = f.text.find('\n', start);
    std::string line = f.text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    f.lines.push_back(std::move(line));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  if (f.text.size() > kMaxSourceBytes) {
    std::ostringstream m;
    m << "file is too large: " << f.text.size() << " bytes (netsor reads at most " << kMaxSourceBytes
      << " bytes per source file)";
    fail(f, 0, 0, 1, m.str(), "a tensor program is small; generate repetition with `for` loops and `def`");
  }
  std::size_t bad = first_bad_byte(f.text);
  if (bad != std::string::npos) {
    int line, col;
    position_of(f.text, bad, line, col);
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(f.text[bad]));
    // Do not echo a binary line back to the terminal.
    SourceFile quiet = f;
    quiet.lines.clear();
    fail(quiet, line, col, 1, std::string("this is not a text file: byte ") + hex + " is not valid UTF-8 text",
         "netsor reads .tp source files (UTF-8 text)");
  }
  return f;
}

SourceFile read_source(const std::string& path, const SourceLoc* from) {
  namespace fs = std::filesystem;
  auto where = [&](std::string msg, std::string hint) -> ProgramError {
    Diagnostic d;
    if (from) d.loc = *from;
    else d.loc.file = path;
    d.message = std::move(msg);
    d.hint = std::move(hint);
    return ProgramError(std::move(d));
  };
  std::error_code ec;
  if (!fs::exists(path, ec)) throw where("cannot open '" + path + "': no such file", "check the path");
  if (fs::is_directory(path, ec)) throw where("'" + path + "' is a folder, not a .tp file", "");
  auto size = fs::file_size(path, ec);
  if (!ec && size > kMaxSourceBytes) {
    std::ostringstream m;
    m << "file is too large: " << size << " bytes (netsor reads at most " << kMaxSourceBytes
      << " bytes per source file)";
    Diagnostic d;
    d.loc.file = path;
    d.message = m.str();
    d.hint = "a tensor program is small; generate repetition with `for` loops and `def`";
    throw ProgramError(d);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw where("cannot read '" + path + "'", "check its permissions");
  std::ostringstream buf;
  buf << in.rdbuf();
  return make_source(buf.str(), path);
}

}  // namespace netsor::parse
