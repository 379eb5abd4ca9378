// The parse stage (parse_tree.hpp): syntax errors a person can act on, and
// the token guards that run before the recursive parser.
#include "parse_tree.hpp"

#include <sstream>
#include <string>

#include "netsor/frontend.hpp"

namespace netsor::parse {
namespace {

using netsor_grammar::NetsorLexer;
using netsor_grammar::NetsorParser;


std::string token_desc(antlr4::Token* t) {
  if (!t) return "input";
  switch (t->getType()) {
    case antlr4::Token::EOF: return "end of file";
    case NetsorLexer::NL: return "end of line";
    default: return "'" + t->getText() + "'";
  }
}

std::string expected_desc(const antlr4::misc::IntervalSet& set, const antlr4::dfa::Vocabulary& voc) {
  // Collapse the token sets a person thinks of as one thing: an expression
  // (where a NUMBER may start one) and a statement (where 'width' may).
  bool expr = set.contains(static_cast<ssize_t>(NetsorLexer::NUMBER));
  bool stmt = set.contains(static_cast<ssize_t>(NetsorLexer::T__3));  // 'width'
  std::vector<std::string> names;
  for (auto raw : set.toList()) {
    std::size_t t = static_cast<std::size_t>(raw);
    std::string lit = voc.getLiteralName(t);
    if (expr && (t == NetsorLexer::NUMBER || t == NetsorLexer::ID || t == NetsorLexer::LPAREN ||
                 t == NetsorLexer::LBRACK || lit == "'-'"))
      continue;
    if (stmt && (t == NetsorLexer::ID || (lit.size() > 2 && std::isalpha(static_cast<unsigned char>(lit[1]))))) continue;
    if (t == NetsorLexer::ID) names.push_back("a name");
    else if (t == NetsorLexer::NL) names.push_back("end of line");
    else if (t == antlr4::Token::EOF) names.push_back("end of file");
    else if (t == NetsorLexer::STRING) names.push_back("a \"quoted path\"");
    else if (t == NetsorLexer::NUMBER) names.push_back("a number");
    else names.push_back(lit.empty() ? voc.getDisplayName(t) : lit);
  }
  if (stmt) names.insert(names.begin(), "a statement");
  if (expr) names.insert(names.begin(), "an expression");
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

std::string hint_for(const std::string& tok) {
  if (tok == "*") return "powers are written x^2, not x**2";
  if (tok == "\u221a") return "write sqrt(...)";
  if (tok == "\u1d40" || tok == "'") return "a transpose is written W.T";
  if (tok == "{") return "a block belongs after `for t in a..b`";
  return {};
}

}  // namespace

class SyntaxErrors : public antlr4::BaseErrorListener {
 public:
  explicit SyntaxErrors(const parse::SourceFile& f) : file_(f) {}
  void syntaxError(antlr4::Recognizer* rec, antlr4::Token* tok, size_t line, size_t col, const std::string&,
                   std::exception_ptr) override {
    if (have_) return;  // the first error is the real one; the rest cascade
    have_ = true;
    line_ = (int)line;
    col_ = (int)col + 1;
    len_ = 1;
    std::string what = token_desc(tok);
    if (tok && tok->getType() == NetsorLexer::ERRCHAR) {
      message_ = "unexpected character " + what;
      hint_ = hint_for(tok->getText());
      if (hint_.empty() && tok->getText() == "\"") hint_ = "a string must end on the same line";
    } else {
      message_ = "syntax error: unexpected " + what;
      if (tok && tok->getType() != antlr4::Token::EOF)
        len_ = std::max<int>(1, (int)(tok->getStopIndex() - tok->getStartIndex() + 1));
      if (auto* p = dynamic_cast<antlr4::Parser*>(rec)) {
        std::string exp = expected_desc(p->getExpectedTokens(), p->getVocabulary());
        if (!exp.empty()) message_ += "; expected " + exp;
      }
      if (tok && (tok->getType() == NetsorLexer::NL || tok->getType() == antlr4::Token::EOF))
        hint_ = "the statement is incomplete";
      if (tok && tok->getType() == antlr4::Token::EOF) {
        // Point just past the last text in the file, where something is missing.
        int l = (int)file_.lines.size();
        while (l > 1 && file_.lines[l - 1].find_first_not_of(" \t\r") == std::string::npos) --l;
        if (l >= 1) {
          line_ = l;
          col_ = (int)file_.lines[l - 1].size() + 1;
        }
      }
      else if (tok) hint_ = hint_for(tok->getText());
    }
  }
  void raise_if_any() const {
    if (have_) parse::fail(file_, line_, col_, len_, message_, hint_);
  }

 private:
  const parse::SourceFile& file_;
  bool have_ = false;
  int line_ = 0, col_ = 0, len_ = 1;
  std::string message_, hint_;
};

namespace {


// Token-level guards before the (recursive) parser sees anything: bracket depth
// and statement length bound the recursion depth of every later stage.
void guard_tokens(const parse::SourceFile& f, antlr4::CommonTokenStream& ts) {
  int depth = 0;
  std::size_t in_stmt = 0;
  for (auto* t : ts.getTokens()) {
    auto type = t->getType();
    int line = (int)t->getLine(), col = (int)t->getCharPositionInLine() + 1;
    if (type == NetsorLexer::LPAREN || type == NetsorLexer::LBRACK || t->getText() == "{") {
      if (++depth > kMaxNesting)
        parse::fail(f, line, col, 1, "brackets nested too deeply (more than " + std::to_string(kMaxNesting) + " levels)",
                    "split the expression into named steps");
    } else if (type == NetsorLexer::RPAREN || type == NetsorLexer::RBRACK || t->getText() == "}") {
      if (depth > 0) --depth;
    }
    if (type == NetsorLexer::NL || t->getText() == ";" || t->getText() == "{" || t->getText() == "}") {
      in_stmt = 0;
    } else if (++in_stmt > kMaxStatementTokens) {
      parse::fail(f, line, col, 1,
                  "statement too long (more than " + std::to_string(kMaxStatementTokens) + " tokens)",
                  "split it into named steps, or use a `for` loop");
    }
  }
}

}  // namespace

ParsedFile::ParsedFile() = default;
ParsedFile::~ParsedFile() = default;

std::unique_ptr<ParsedFile> parse_source(SourceFile src) {
  auto pf = std::make_unique<ParsedFile>();
  pf->src = std::move(src);
  pf->input = std::make_unique<antlr4::ANTLRInputStream>(pf->src.text);
  pf->lexer = std::make_unique<NetsorLexer>(pf->input.get());
  pf->errors = std::make_unique<SyntaxErrors>(pf->src);
  pf->lexer->removeErrorListeners();
  pf->lexer->addErrorListener(pf->errors.get());
  pf->tokens = std::make_unique<antlr4::CommonTokenStream>(pf->lexer.get());
  pf->tokens->fill();
  guard_tokens(pf->src, *pf->tokens);
  pf->parser = std::make_unique<NetsorParser>(pf->tokens.get());
  pf->parser->removeErrorListeners();
  pf->parser->addErrorListener(pf->errors.get());
  pf->tree = pf->parser->program();
  pf->errors->raise_if_any();
  return pf;
}

}  // namespace netsor::parse
