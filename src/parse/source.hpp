// Internal to src/parse: reading a source file with the guards that keep
// hostile input from crashing or hanging the front end.
#pragma once

#include <string>
#include <vector>

#include "netsor/diagnostics.hpp"

namespace netsor::parse {

struct SourceFile {
  std::string path;                // as shown in diagnostics
  std::string text;                // UTF-8, validated
  std::vector<std::string> lines;  // for the caret display
};

// Reads and validates a file: exists, at most kMaxSourceBytes, valid UTF-8
// text without NUL bytes. `from` locates the import statement, if any.
SourceFile read_source(const std::string& path, const SourceLoc* from);
SourceFile make_source(std::string text, std::string name);

[[noreturn]] void fail(const SourceFile& f, int line, int col, int len, std::string message,
                       std::string hint = {});

}  // namespace netsor::parse
