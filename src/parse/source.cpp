#include "source.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
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

// Offset of the first byte that makes `text` not UTF-8 text, or npos. Strict
// UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
std::size_t first_bad_byte(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    if (c < 0x80) {
      if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') return i;
      ++i;
      continue;
    }
    // Sequence length and the range of the second byte, which is where the
    // overlong, surrogate and beyond-U+10FFFF forms differ from valid ones.
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c >= 0xE0 && c <= 0xEF) n = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return i;
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return i;
      unsigned char b = s[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return i;
    }
    i += n + 1;
  }
  return std::string::npos;
}

// The "file is too large" error; `exact` when `size` is the whole file's size,
// not just how far a stream was read.
[[noreturn]] void too_large(const SourceFile& f, std::size_t size, bool exact) {
  std::ostringstream m;
  m << "file is too large: " << (exact ? "" : "more than ") << size << " bytes (netsor reads at most "
    << kMaxSourceBytes << " bytes per source file)";
  fail(f, 0, 0, 1, m.str(), "a tensor program is small; generate repetition with `for` loops and `def`");
}

}  // namespace

SourceFile make_source(std::string text, std::string name) {
  SourceFile f;
  f.path = std::move(name);
  f.text = std::move(text);
  // Old Mac line ends (a lone CR) are line breaks too; replacing each by LF
  // keeps every byte offset, so the lexer's positions stay right.
  for (std::size_t i = 0; i < f.text.size(); ++i)
    if (f.text[i] == '\r' && (i + 1 == f.text.size() || f.text[i + 1] != '\n')) f.text[i] = '\n';
  std::size_t start = 0;
  while (start <= f.text.size()) {
    std::size_t nl = f.text.find('\n', start);
    std::string line = f.text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    f.lines.push_back(std::move(line));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  if (f.text.size() > kMaxSourceBytes) too_large(f, f.text.size(), true);
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
  remember_source_lines(f.path, f.lines);
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
  SourceFile named;
  named.path = path;
  auto size = fs::file_size(path, ec);
  if (!ec && size > kMaxSourceBytes) too_large(named, size, true);
  // Pipes, /dev/stdin, devices and FIFOs have no size: read them without
  // blocking, at most one byte past the limit, and give up on one that stays
  // silent (a FIFO nobody writes to).
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw where("cannot read '" + path + "'", "check its permissions");
  std::string text;
  std::vector<char> buf(1 << 16);
  while (text.size() <= kMaxSourceBytes) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, kMaxReadWaitSeconds * 1000);
    if (ready == 0) {
      ::close(fd);
      throw where("nothing to read from '" + path + "' after " + std::to_string(kMaxReadWaitSeconds) + " seconds",
                  "is anything writing to it?");
    }
    ssize_t got = ready < 0 ? -1 : ::read(fd, buf.data(), std::min(buf.size(), kMaxSourceBytes + 1 - text.size()));
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      ::close(fd);
      throw where("cannot read '" + path + "': " + std::strerror(errno), "");
    }
    text.append(buf.data(), std::size_t(got));
  }
  ::close(fd);
  if (text.size() > kMaxSourceBytes) too_large(named, kMaxSourceBytes, false);
  return make_source(std::move(text), path);
}

}  // namespace netsor::parse
