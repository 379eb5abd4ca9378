// The parse stage: source text to an ANTLR parse tree of grammar/Netsor.g4,
// with syntax errors as located ProgramErrors (what was expected, and a hint)
// and token-level guards that bound the recursion depth of every later stage.
// Lowering (lower.cpp) walks the tree this returns.
#pragma once

#include <memory>

#include "NetsorLexer.h"
#include "NetsorParser.h"
#include "source.hpp"

namespace netsor::parse {

class SyntaxErrors;  // the error listener: collects the first syntax error

// One parsed file: the ANTLR objects own the tree, so they live together.
struct ParsedFile {
  SourceFile src;
  std::unique_ptr<antlr4::ANTLRInputStream> input;
  std::unique_ptr<netsor_grammar::NetsorLexer> lexer;
  std::unique_ptr<antlr4::CommonTokenStream> tokens;
  std::unique_ptr<netsor_grammar::NetsorParser> parser;
  std::unique_ptr<SyntaxErrors> errors;
  netsor_grammar::NetsorParser::ProgramContext* tree = nullptr;
  ParsedFile();
  ~ParsedFile();
};

// Lexes, guards and parses one file; throws ProgramError at the first syntax error.
std::unique_ptr<ParsedFile> parse_source(SourceFile src);

}  // namespace netsor::parse
