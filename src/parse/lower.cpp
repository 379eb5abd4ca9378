// Lowering: the ANTLR parse tree of grammar/Netsor.g4 to the typed IR.
//
// Expressions are evaluated to typed values while walking the tree: numbers
// fold at once, MatMul and avg(...) emit instructions and become leaves of the
// surrounding coordinatewise expression. Loops are unrolled, defs inlined and
// imports read here, so the IR is straight-line NETSOR-T+ (primer section 1).
#include <pthread.h>

#include <cmath>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "NetsorLexer.h"
#include "NetsorParser.h"
#include "netsor/frontend.hpp"
#include "netsor/operators.hpp"
#include "parse_tree.hpp"
#include "source.hpp"

namespace netsor {
namespace {

using netsor_grammar::NetsorLexer;
using netsor_grammar::NetsorParser;
using ir::Dim;
using ir::VarId;
using ir::VarKind;
namespace fs = std::filesystem;

using parse::ParsedFile;
using parse::parse_source;

constexpr int kPlaceholder = -2;  // the argument of a derivative phi'(z) while differentiating

// ---------------------------------------------------------------- values

// The type of an expression while lowering.
struct Value {
  enum Kind { Scalar, Vector, Matrix, Input, List, Operator } kind = Scalar;
  Expr expr;            // Scalar, Vector (leaves: VarIds); a constant Scalar is a number
  Dim dim;              // Vector: its size
  VarId var = -1;       // Matrix, Input
  bool transposed = false;
  std::vector<Value> items;  // List
  int node = -1;             // Operator: index into Program::op_nodes
  antlr4::ParserRuleContext* ctx = nullptr;

  bool is_number(double* v = nullptr) const { return kind == Scalar && is_const(expr, v); }
};

struct Def {
  NetsorParser::DefDeclContext* ctx;
  std::vector<std::string> params;
  const parse::SourceFile* file;
};

// ---------------------------------------------------------------- lowering

class Lowerer {
 public:
  Lowerer(const FrontendOptions& opts) : opts_(opts) {
    for (const auto& [k, v] : opts.defines) consts_[k] = v;
  }

  ir::Program run(std::unique_ptr<ParsedFile> main) {
    std::error_code ec;
    std::string canon = fs::weakly_canonical(main->src.path, ec).string();
    import_stack_.push_back(canon);
    imported_.insert(canon);
    lower_file(*main);
    import_stack_.pop_back();
    files_.push_back(std::move(main));
    if (prog_.widths.empty()) prog_.widths.push_back({"n", 1.0});
    check_defines();
    return std::move(prog_);
  }

 private:
  const FrontendOptions& opts_;
  ir::Program prog_;
  std::map<std::string, VarId> names_;     // program variables
  std::map<std::string, double> consts_;   // const, -D, loop variables (global part)
  std::map<std::string, Def> defs_;
  std::map<std::string, int> widths_;
  std::map<std::string, SourceLoc> defined_at_;
  std::vector<std::map<std::string, Value>> scopes_;  // loop variables, def parameters
  std::set<VarId> temps_;                             // unnamed results of @ and avg
  std::vector<std::unique_ptr<ParsedFile>> files_;    // imported files stay alive
  std::vector<std::string> import_stack_;
  std::set<std::string> imported_;
  const parse::SourceFile* file_ = nullptr;
  int call_depth_ = 0;
  std::size_t work_ = 0;
  std::size_t eval_depth_ = 0;
  std::set<std::string> used_defines_;  // -D names the program declares or reads
  bool implicit_base_ = false;
  int temp_counter_ = 0;

  // ---- diagnostics

  SourceLoc loc_of(antlr4::ParserRuleContext* c) const {
    auto* s = c->getStart();
    auto* e = c->getStop();
    int len = 1;
    if (e && s && e->getLine() == s->getLine() && e->getStopIndex() >= s->getStartIndex())
      len = (int)(e->getStopIndex() - s->getStartIndex() + 1);
    else if (s)
      len = (int)s->getText().size();
    return {file_->path, (int)s->getLine(), (int)s->getCharPositionInLine() + 1, len};
  }
  SourceLoc loc_of(antlr4::Token* t) const {
    return {file_->path, (int)t->getLine(), (int)t->getCharPositionInLine() + 1,
            std::max<int>(1, (int)(t->getStopIndex() - t->getStartIndex() + 1))};
  }
  [[noreturn]] void fail_at(const SourceLoc& l, std::string msg, std::string hint = {}) const {
    parse::fail(*file_, l.line, l.col, l.len, std::move(msg), std::move(hint));
  }
  [[noreturn]] void fail_at(antlr4::ParserRuleContext* c, std::string msg, std::string hint = {}) const {
    fail_at(loc_of(c), std::move(msg), std::move(hint));
  }
  [[noreturn]] void fail_at(antlr4::Token* t, std::string msg, std::string hint = {}) const {
    fail_at(loc_of(t), std::move(msg), std::move(hint));
  }
  static std::string where(const SourceLoc& l) {
    return l.file + ":" + std::to_string(l.line) + ":" + std::to_string(l.col);
  }
  void tick(antlr4::ParserRuleContext* c) {
    if (++work_ > opts_.max_work)
      fail_at(c, "program too large after unrolling loops and expanding defs",
              "reduce loop ranges, or avoid defs that call others more than once per use");
  }

  // ---- names

  void check_fresh(const std::string& name, const SourceLoc& at) {
    // -D sets constants only; a -D naming a vector or matrix would otherwise
    // shadow it with a number wherever the name is read.
    if (opts_.defines.count(name) && !widths_.count(name) && !(prog_.widths.empty() && name == "n"))
      throw UsageError("-D " + name + ": '" + name + "' is not a constant of the program (it is declared at " +
                       where(at) + ")");
    auto prev = defined_at_.find(name);
    if (prev != defined_at_.end())
      fail_at(at, "redefinition of '" + name + "' (first defined at " + where(prev->second) + ")",
              "every name is assigned once; use an indexed name like " + name + "[t] for a sequence");
    if (names_.count(name) || defs_.count(name) || widths_.count(name) || operators_.count(name))
      fail_at(at, "redefinition of '" + name + "'", "choose another name");
    for (const auto& s : scopes_)
      if (s.count(name)) fail_at(at, "'" + name + "' is a loop variable or parameter here", "choose another name");
    Fn f;
    if (lookup_fn(name, f) || name == "avg" || name == "dot" || name == "len" || name == "diag" || name == "inv" ||
        name == "tr" || name == "I")
      fail_at(at, "'" + name + "' is a built-in function", "choose another name");
  }

  // Indices and loop bounds are integers small enough that every one is a
  // distinct double; written out in full (and -0 as 0), so y[1000001] and
  // y[1000000] are different names.
  static constexpr double kMaxInteger = 1e15;
  static bool is_integer(double x) { return x == std::floor(x) && std::abs(x) <= kMaxInteger; }
  static std::string index_text(double v) { return std::to_string(static_cast<long long>(v)); }

  std::string index_of(NetsorParser::ExprContext* e) {
    Value v = eval(e);
    double x;
    if (!v.is_number(&x) || !is_integer(x))
      fail_at(e, "an index must be an integer (at most 10^15 in size) known when the program is read",
              "indices are built from loop variables and constants, e.g. x[t-1]");
    return index_text(x);
  }

  std::string target_name(NetsorParser::TargetContext* t) {
    std::string name = t->ID()->getText();
    for (auto* e : t->expr()) name += "[" + index_of(e) + "]";
    return name;
  }

  int base_width() {
    if (prog_.widths.empty()) {
      prog_.widths.push_back({"n", 1.0});
      widths_["n"] = 0;
      implicit_base_ = true;
    }
    return 0;
  }

  VarId new_var(std::string name, VarKind kind, Dim rows, const SourceLoc& loc) {
    ir::Var v;
    v.name = std::move(name);
    v.kind = kind;
    v.rows = rows;
    v.loc = loc;
    prog_.vars.push_back(std::move(v));
    return (VarId)prog_.vars.size() - 1;
  }

  // Printing, comparing and expanding walk an expression as a tree, so its
  // written-out size and depth (not its shared DAG's) bound their time and
  // their stack.
  static bool too_large(const Expr& e) {
    TreeExtent t = tree_extent(e, kMaxExpressionSize);
    return t.size >= kMaxExpressionSize || t.depth > kMaxExpressionDepth;
  }

  VarId emit(ir::Instr in, std::string name, VarKind kind, Dim dim, const SourceLoc& loc, bool temp) {
    if (prog_.instrs.size() >= kMaxInstructions)
      fail_at(loc, "program too large: more than " + std::to_string(kMaxInstructions) + " instructions",
              "reduce loop ranges");
    if (in.expr && too_large(in.expr))
      fail_at(loc, "expression too large: more than " + std::to_string(kMaxExpressionSize) + " nodes or " +
                       std::to_string(kMaxExpressionDepth) +
                       " levels when written out (defs or derivatives applied to each other multiply)",
              "name intermediate results: y = f(x) then z = f(y)");
    VarId v = new_var(std::move(name), kind, dim, loc);
    in.out = v;
    in.loc = loc;
    prog_.vars[v].def = (int)prog_.instrs.size();
    prog_.instrs.push_back(std::move(in));
    if (temp) temps_.insert(v);
    return v;
  }

  // Give an unnamed result (of @ or avg) its user's name, or emit a new
  // instruction computing the value under that name.
  VarId bind(const std::string& name, const Value& v, const SourceLoc& at) {
    if (v.expr && v.expr->op == ExprOp::Var && temps_.count(v.expr->var)) {
      VarId id = v.expr->var;
      temps_.erase(id);
      prog_.vars[id].name = name;
      prog_.vars[id].loc = at;
      return id;
    }
    ir::Instr in;
    in.expr = v.expr;
    if (v.kind == Value::Vector) {
      in.op = ir::Op::Nonlin;
      return emit(in, name, VarKind::H, v.dim, at, false);
    }
    in.op = ir::Op::Scalar;
    return emit(in, name, VarKind::Scalar, {}, at, false);
  }

  // ---- statements

  void lower_file(ParsedFile& pf) {
    const parse::SourceFile* saved = file_;
    file_ = &pf.src;
    for (auto* s : pf.tree->stmt()) stmt(s);
    file_ = saved;
  }

  void stmt(NetsorParser::StmtContext* s) {
    tick(s);
    if (auto* c = s->widthDecl()) return width_decl(c);
    if (auto* c = s->matrixDecl()) return matrix_decl(c);
    if (auto* c = s->vectorDecl()) return vector_decl(c);
    if (auto* c = s->vectorsDecl()) return vectors_decl(c);
    if (auto* c = s->inputDecl()) return input_decl(c);
    if (auto* c = s->constDecl()) return const_decl(c);
    if (auto* c = s->defDecl()) return def_decl(c);
    if (auto* c = s->reportStmt()) return report(c);
    if (auto* c = s->importStmt()) return import(c);
    if (auto* c = s->forStmt()) return for_loop(c);
    if (auto* c = s->assignStmt()) return assign(c);
    if (auto* c = s->operatorDecl()) return operator_decl(c);
    if (auto* c = s->spectrumStmt()) return spectrum_stmt(c);
  }

  void width_decl(NetsorParser::WidthDeclContext* c) {
    std::string name = c->name->getText();
    SourceLoc at = loc_of(c->name);
    if (!c->base) {
      if (implicit_base_ && name == "n" && prog_.widths.size() == 1) {
        implicit_base_ = false;  // declaring the n that was already in use
        return;
      }
      if (!prog_.widths.empty())
        fail_at(at, "a second base width '" + name + "'; the program already has '" + prog_.widths[0].name + "'",
                "other infinite dimensions are fixed multiples of the base: width " + name + " = 2 " +
                    prog_.widths[0].name);
      check_fresh(name, at);
      prog_.widths.push_back({name, 1.0});
      widths_[name] = 0;
      defined_at_[name] = at;
      return;
    }
    check_fresh(name, at);
    std::string base = c->base->getText();
    if (prog_.widths.empty() && base == "n") base_width();
    auto it = widths_.find(base);
    if (it == widths_.end())
      fail_at(c->base, "unknown width '" + base + "'", "declare the base width first: width " + base);
    double r = 1.0;
    if (c->ratio) {
      // A number, or a constant (so that -D rho=... sweeps an aspect ratio).
      std::string text = c->ratio->getText();
      if (c->ratio->getType() == NetsorParser::ID) {
        if (!lookup_const(text, r))
          fail_at(c->ratio, "'" + text + "' is not a constant defined above",
                  "a width ratio is a number or a constant: const rho = 0.5, then width m = rho n");
      } else {
        r = std::strtod(text.c_str(), nullptr);
      }
      if (!(r > 0) || !std::isfinite(r))
        fail_at(c->ratio, "a width ratio must be a positive number", "e.g. width m = 2 n");
    }
    prog_.widths.push_back({name, r * prog_.widths[it->second].ratio});
    widths_[name] = (int)prog_.widths.size() - 1;
    defined_at_[name] = at;
  }

  Dim dim(NetsorParser::DimContext* d) {
    if (d->NUMBER()) {
      double x = std::strtod(d->NUMBER()->getText().c_str(), nullptr);
      if (x != std::floor(x) || x < 1 || x > 1e6)
        fail_at(d, "a finite dimension must be a whole number from 1 to 1000000",
                "the size of vectors is a width such as n, or m after `width m = 2 n`");
      return {-1, (int)x};
    }
    std::string w = d->ID()->getText();
    if (w == "n" && prog_.widths.empty()) base_width();
    auto it = widths_.find(w);
    if (it == widths_.end()) {
      double x;
      if (lookup_const(w, x) && x == std::floor(x) && x >= 1 && x <= 1e6) return {-1, (int)x};
      fail_at(d, "unknown width '" + w + "'", "declare it: width " + w + " = 2 n");
    }
    return {it->second, 0};
  }

  struct Kwargs {
    std::map<std::string, std::pair<Value, NetsorParser::KwargContext*>> args;
  };

  Kwargs dist_args(NetsorParser::DistContext* d, const std::string& expect_dist,
                   const std::vector<std::string>& allowed, std::string* dist_name = nullptr) {
    std::string name = d->ID()->getText();
    if (dist_name) *dist_name = name;
    bool ok = name == expect_dist || (dist_name && name == "orthogonal");
    if (!ok)
      fail_at(d->ID()->getSymbol(), "unknown distribution '" + name + "'",
              std::string("use ") + expect_dist + "(...)" + (dist_name ? " or orthogonal(...)" : ""));
    Kwargs k;
    for (auto* kw : d->kwarg()) {
      std::string key = kw->ID()->getText();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail_at(kw->ID()->getSymbol(), "unknown argument '" + key + "' to " + name, "allowed here: " + list);
      }
      if (k.args.count(key)) fail_at(kw, "argument '" + key + "' given twice");
      k.args[key] = {eval(kw->expr()), kw};
    }
    return k;
  }

  double number_arg(const Kwargs& k, const std::string& key, double dflt, bool nonneg) {
    auto it = k.args.find(key);
    if (it == k.args.end()) return dflt;
    double x;
    if (!it->second.first.is_number(&x) || !std::isfinite(x))
      fail_at(it->second.second, "'" + key + "' must be a number known when the program is read",
              "constants and arithmetic on them are fine: var=2*sigma^2");
    if (nonneg && x < 0) fail_at(it->second.second, "'" + key + "' must be nonnegative (it is a variance)");
    return x;
  }

  void matrix_decl(NetsorParser::MatrixDeclContext* c) {
    std::string name = target_name(c->target());
    SourceLoc at = loc_of(c->target());
    check_fresh(name, at);
    Dim rows{base_width(), 0}, cols{base_width(), 0};
    if (c->rows) {
      rows = dim(c->rows);
      cols = dim(c->cols);
    }
    if (rows.is_finite())
      fail_at(c->rows, "a matrix's rows must be an infinite width",
              "a readout v^T x is a vector v and a moment: avg(v * x); a finite input enters as U[n, d] @ xi");
    std::string dist;
    Kwargs k = dist_args(c->dist(), "gaussian", {"var"}, &dist);
    ir::Matrix m;
    m.variance = number_arg(k, "var", 1.0, true);
    m.dist = dist == "orthogonal" ? ir::MatrixDist::Orthogonal : ir::MatrixDist::Gaussian;
    if (m.dist == ir::MatrixDist::Orthogonal && !(rows == cols))
      fail_at(c->dist(), "an orthogonal matrix must be square", "declare it matrix " + name + "[n, n]");
    VarId v = new_var(name, VarKind::A, rows, at);
    prog_.vars[v].cols = cols;
    m.var = v;
    prog_.matrices.push_back(m);
    names_[name] = v;
    defined_at_[name] = at;
  }

  // A declared vector's name, and its size when the last [..] names a width.
  std::string decl_name(NetsorParser::TargetContext* t, Dim& size) {
    auto ix = t->expr();
    size = {base_width(), 0};
    if (!ix.empty()) {
      if (auto* last = dynamic_cast<NetsorParser::NameExprContext*>(ix.back());
          last && last->expr().empty() && widths_.count(last->getText())) {
        size = {widths_[last->getText()], 0};
        std::string name = t->ID()->getText();
        for (std::size_t i = 0; i + 1 < ix.size(); ++i) name += "[" + index_of(ix[i]) + "]";
        return name;
      }
    }
    return target_name(t);
  }

  void vector_decl(NetsorParser::VectorDeclContext* c) {
    Dim d;
    std::string name = decl_name(c->target(), d);
    SourceLoc at = loc_of(c->target());
    check_fresh(name, at);
    Kwargs k = dist_args(c->dist(), "gaussian", {"mean", "var"});
    ir::GaussianFamily f;
    f.mean = Eigen::VectorXd::Constant(1, number_arg(k, "mean", 0.0, false));
    f.cov = Eigen::MatrixXd::Constant(1, 1, number_arg(k, "var", 1.0, true));
    f.loc = at;
    add_family({name}, {at}, d, std::move(f));
  }

  void add_family(const std::vector<std::string>& names, const std::vector<SourceLoc>& locs, Dim d,
                  ir::GaussianFamily f) {
    int fam = (int)prog_.families.size();
    prog_.families.push_back(std::move(f));
    for (std::size_t i = 0; i < names.size(); ++i) {
      ir::Instr in;
      in.op = ir::Op::Init;
      in.family = fam;
      in.member = (int)i;
      VarId v = emit(in, names[i], VarKind::G, d, locs[i], false);
      prog_.families[fam].members.push_back(v);
      names_[names[i]] = v;
      defined_at_[names[i]] = locs[i];
    }
  }

  // A list literal of numbers -> vector; error at `what` otherwise.
  Eigen::VectorXd number_list(const Value& v, antlr4::ParserRuleContext* at, const std::string& what) {
    if (v.kind != Value::List) fail_at(at, what + " must be a list of numbers like [1.0, 0.5]");
    Eigen::VectorXd out(v.items.size());
    for (std::size_t i = 0; i < v.items.size(); ++i) {
      double x;
      if (!v.items[i].is_number(&x) || !std::isfinite(x))
        fail_at(v.items[i].ctx ? v.items[i].ctx : at, what + ": every entry must be a finite number");
      out(i) = x;
    }
    return out;
  }

  void vectors_decl(NetsorParser::VectorsDeclContext* c) {
    std::vector<std::string> names;
    std::vector<SourceLoc> locs;
    for (auto* id : c->target()) {
      std::string nm = target_name(id);
      SourceLoc at = loc_of(id);
      check_fresh(nm, at);
      for (const auto& prev : names)
        if (prev == nm) fail_at(at, "'" + nm + "' listed twice");
      names.push_back(nm);
      locs.push_back(at);
    }
    std::size_t k = names.size();
    Dim d{base_width(), 0};
    if (c->size) d = dim(c->size);
    if (d.is_finite()) fail_at(c->size, "a vector's size must be an infinite width");
    Kwargs kw = dist_args(c->dist(), "gaussian", {"mean", "var", "cov"});
    ir::GaussianFamily f;
    f.loc = locs[0];
    f.mean = Eigen::VectorXd::Zero(k);
    if (auto it = kw.args.find("mean"); it != kw.args.end()) {
      double x;
      if (it->second.first.is_number(&x)) f.mean.setConstant(x);
      else {
        f.mean = number_list(it->second.first, it->second.second, "mean");
        if ((std::size_t)f.mean.size() != k)
          fail_at(it->second.second, "mean has " + std::to_string(f.mean.size()) + " entries for " +
                                         std::to_string(k) + " vectors");
      }
    }
    auto cit = kw.args.find("cov");
    if (cit != kw.args.end() && kw.args.count("var"))
      fail_at(cit->second.second, "give either cov or var, not both");
    if (cit == kw.args.end()) {
      f.cov = Eigen::MatrixXd::Identity(k, k) * number_arg(kw, "var", 1.0, true);
    } else {
      auto* at = cit->second.second;
      const Value& v = cit->second.first;
      if (v.kind != Value::List || v.items.size() != k)
        fail_at(at, "cov must be a " + std::to_string(k) + "x" + std::to_string(k) + " matrix [[...], ...]",
                "one row per vector in the family");
      f.cov.resize(k, k);
      for (std::size_t r = 0; r < k; ++r) {
        Eigen::VectorXd row = number_list(v.items[r], at, "each row of cov");
        if ((std::size_t)row.size() != k)
          fail_at(at, "cov row " + std::to_string(r + 1) + " has " + std::to_string(row.size()) +
                          " entries; expected " + std::to_string(k));
        f.cov.row(r) = row.transpose();
      }
      check_covariance(f.cov, at);
    }
    add_family(names, locs, d, std::move(f));
  }

  void check_covariance(const Eigen::MatrixXd& cov, antlr4::ParserRuleContext* at) {
    double scale = std::max(1.0, cov.cwiseAbs().maxCoeff());
    for (int r = 0; r < cov.rows(); ++r)
      for (int c = 0; c < r; ++c)
        if (std::abs(cov(r, c) - cov(c, r)) > 1e-12 * scale)
          fail_at(at, "cov is not symmetric: entry (" + std::to_string(r + 1) + "," + std::to_string(c + 1) +
                          ") differs from (" + std::to_string(c + 1) + "," + std::to_string(r + 1) + ")");
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);
    double lo = es.eigenvalues().minCoeff();
    if (lo < -1e-12 * scale) {
      std::ostringstream m;
      m << "cov is not positive semidefinite (smallest eigenvalue " << lo << ")";
      fail_at(at, m.str(), "a covariance needs |cov_ij| <= sqrt(cov_ii cov_jj) and more; check the off-diagonal entries");
    }
  }

  // Inside an imported module, const, input and def declarations are module
  // parameters: defaults that the importing program's own definitions override.
  bool overridden_default(const std::string& name) const {
    if (import_stack_.size() <= 1) return false;
    if (consts_.count(name) || defs_.count(name)) return true;
    auto it = names_.find(name);
    return it != names_.end() && prog_.vars[it->second].kind == VarKind::Input;
  }

  void input_decl(NetsorParser::InputDeclContext* c) {
    std::string name = target_name(c->target());
    SourceLoc at = loc_of(c->target());
    if (overridden_default(name)) return;
    check_fresh(name, at);
    Value v = eval(c->expr());
    Eigen::VectorXd x = number_list(v, c->expr(), "an input");
    if (x.size() == 0) fail_at(c->expr(), "an input must have at least one entry");
    VarId id = new_var(name, VarKind::Input, {-1, (int)x.size()}, at);
    prog_.inputs.emplace_back(name, x);
    names_[name] = id;
    defined_at_[name] = at;
  }

  void const_decl(NetsorParser::ConstDeclContext* c) {
    std::string name = target_name(c->target());  // indexed constants: const a[1] = -0.5
    SourceLoc at = loc_of(c->target());
    if (opts_.defines.count(name)) used_defines_.insert(name);
    if (opts_.defines.count(name) && !defined_at_.count(name)) {
      defined_at_[name] = at;  // -D NAME=value overrides the file's default
      return;
    }
    if (overridden_default(name)) return;  // a module parameter the importer set
    check_fresh(name, at);
    if (consts_.count(name)) fail_at(at, "redefinition of constant '" + name + "'");
    Value v = eval(c->expr());
    double x;
    if (!v.is_number(&x))
      fail_at(c->expr(), "a const must be a number known when the program is read",
              "for a quantity computed by the program, assign it: s = avg(x * x)");
    consts_[name] = x;
    defined_at_[name] = at;
  }

  void def_decl(NetsorParser::DefDeclContext* c) {
    std::string name = c->name->getText();
    SourceLoc at = loc_of(c->name);
    if (overridden_default(name)) return;
    check_fresh(name, at);
    if (consts_.count(name)) fail_at(at, "'" + name + "' is already a constant");
    Def d{c, {}, file_};
    for (auto* id : c->ID()) {
      if (id->getSymbol() == c->name) continue;
      std::string p = id->getText();
      if (std::find(d.params.begin(), d.params.end(), p) != d.params.end())
        fail_at(id->getSymbol(), "parameter '" + p + "' repeated");
      d.params.push_back(p);
    }
    defs_.emplace(name, d);
    defined_at_[name] = at;
  }

  void report(NetsorParser::ReportStmtContext* c) {
    std::string name = target_name(c->target());
    SourceLoc at = loc_of(c->target());
    check_fresh(name, at);
    Value v = eval(c->expr());
    if (v.kind != Value::Scalar)
      fail_at(c->expr(), "a report must be a scalar, not " + std::string(v.kind == Value::Operator ? "an " : "a ") + kind_text(v),
              v.kind == Value::Vector     ? "report a moment of it: avg(...)"
              : v.kind == Value::Operator ? "report its normalized trace tr(...) or a moment avg(v * (S @ v))"
                                          : "");
    VarId id;
    if (v.expr->op == ExprOp::Var && !temps_.count(v.expr->var)) {
      id = v.expr->var;
      names_[name] = id;
    } else {
      id = bind(name, v, at);
      names_[name] = id;
    }
    prog_.reports.push_back({name, id, at});
    defined_at_[name] = at;
  }

  void import(NetsorParser::ImportStmtContext* c) {
    std::string rel = c->STRING()->getText();
    rel = rel.substr(1, rel.size() - 2);
    SourceLoc at = loc_of(c->STRING()->getSymbol());
    if (rel.empty()) fail_at(at, "empty import path");
    std::vector<fs::path> candidates;
    fs::path here = fs::path(file_->path).parent_path();
    candidates.push_back(here / rel);
    std::string lib = opts_.stdlib_dir;
    if (!lib.empty()) {
      candidates.push_back(fs::path(lib) / rel);
      candidates.push_back(fs::path(lib).parent_path() / rel);  // import "stdlib/mlp.tp"
    }
    fs::path found;
    std::error_code ec;
    for (const auto& p : candidates)
      if (fs::is_regular_file(p, ec)) {
        found = p;
        break;
      }
    if (found.empty()) {
      std::string tried;
      for (const auto& p : candidates) tried += (tried.empty() ? "" : ", ") + p.string();
      fail_at(at, "cannot find module \"" + rel + "\"", "looked in: " + tried);
    }
    std::string canon = fs::weakly_canonical(found, ec).string();
    for (std::size_t i = 0; i < import_stack_.size(); ++i)
      if (import_stack_[i] == canon) {
        std::string chain;
        for (std::size_t j = i; j < import_stack_.size(); ++j) chain += fs::path(import_stack_[j]).filename().string() + " -> ";
        chain += fs::path(canon).filename().string();
        fail_at(at, "import cycle: " + chain, "a module must not import, directly or not, the file importing it");
      }
    if (imported_.count(canon)) return;  // each module is read once
    if (import_stack_.size() > 64) fail_at(at, "imports nested too deeply");
    imported_.insert(canon);
    auto pf = parse_source(parse::read_source(found.string(), &at));
    import_stack_.push_back(canon);
    lower_file(*pf);
    import_stack_.pop_back();
    files_.push_back(std::move(pf));
  }

  void for_loop(NetsorParser::ForStmtContext* c) {
    std::string v = c->var->getText();
    SourceLoc at = loc_of(c->var);
    check_fresh(v, at);
    if (consts_.count(v)) fail_at(at, "loop variable '" + v + "' hides a constant", "choose another name");
    double lo, hi;
    Value a = eval(c->lo), b = eval(c->hi);
    if (!a.is_number(&lo) || !is_integer(lo))
      fail_at(c->lo, "a loop bound must be an integer (at most 10^15 in size) known when the program is read");
    if (!b.is_number(&hi) || !is_integer(hi))
      fail_at(c->hi, "a loop bound must be an integer (at most 10^15 in size) known when the program is read");
    // lo..lo-1 is the empty range (so that `for s in 0..t-1` works at t = 0);
    // anything lower is a mistake.
    if (hi < lo - 1)
      fail_at(c->hi, "empty loop range " + index_text(lo) + ".." + index_text(hi),
              "ranges are inclusive and increasing: for t in 1..3 runs t = 1, 2, 3 (and a..a-1 runs nothing)");
    if (hi - lo >= 1e6) fail_at(c->hi, "loop range too long (a million iterations or more)");
    auto* body = c->block();
    for (auto t = static_cast<std::int64_t>(lo); t <= static_cast<std::int64_t>(hi); ++t) {
      tick(c);  // an empty body is work too: nested loops multiply
      Value tv;
      tv.expr = constant(double(t));
      scopes_.push_back({{v, tv}});
      for (auto* s : body->stmt()) stmt(s);
      scopes_.pop_back();
    }
  }

  void assign(NetsorParser::AssignStmtContext* c) {
    std::string name = target_name(c->target());
    SourceLoc at = loc_of(c->target());
    check_fresh(name, at);
    if (consts_.count(name)) fail_at(at, "'" + name + "' is a constant");
    Value v = eval(c->expr());
    switch (v.kind) {
      case Value::Scalar:
      case Value::Vector: {
        double x;
        if (v.is_number(&x)) {
          consts_[name] = x;  // a plain number is a constant
        } else {
          names_[name] = bind(name, v, at);
        }
        break;
      }
      case Value::Matrix:
        fail_at(c->expr(), "a matrix cannot be assigned", "use it directly where it is applied: W.T @ x");
      case Value::Operator:
        fail_at(c->expr(), "an operator cannot be assigned with '='", "declare it: operator " + name + " = ...");
      case Value::Input:
      case Value::List:
        fail_at(c->expr(), "a list is not a program variable", "declare a finite input with: input xi = [...]");
    }
    defined_at_[name] = at;
  }

  // ---- expressions

  static std::string kind_text(const Value& v) {
    switch (v.kind) {
      case Value::Scalar: return "scalar";
      case Value::Vector: return "vector";
      case Value::Matrix: return "matrix";
      case Value::Input: return "input";
      case Value::List: return "list";
      case Value::Operator: return "operator";
    }
    return "?";
  }

  bool lookup_const(const std::string& name, double& x) {
    auto it = consts_.find(name);
    if (it == consts_.end()) return false;
    if (opts_.defines.count(name)) used_defines_.insert(name);
    x = it->second;
    return true;
  }

  // A -D the program never reads is a typo on the command line, and one
  // naming a width would stand in for n only where n is used as a number.
  void check_defines() const {
    for (const auto& [name, _] : opts_.defines) {
      for (const auto& w : prog_.widths)
        if (w.name == name)
          throw UsageError("-D " + name + ": '" + name + "' is a width of the program, not a constant; " +
                           "give the width with --width (run) or --widths (converge)");
      if (!used_defines_.count(name)) {
        std::string known;
        for (const auto& [k, at] : defined_at_)
          if (consts_.count(k)) known += (known.empty() ? "" : ", ") + k;
        throw UsageError("-D " + name + ": the program has no constant '" + name + "'" +
                         (known.empty() ? "" : " (its constants: " + known + ")"));
      }
    }
  }

  Value eval(NetsorParser::ExprContext* e) {
    tick(e);
    // Defs inlined into defs nest the walk beyond what one statement's tokens bound.
    struct Depth {
      std::size_t& d;
      ~Depth() { --d; }
    } depth{++eval_depth_};
    if (eval_depth_ > kMaxExpressionDepth)
      fail_at(e, "expression nested too deeply: more than " + std::to_string(kMaxExpressionDepth) +
                     " levels with its defs expanded",
              "name intermediate results: y = f(x) then z = f(y)");
    Value v = eval_inner(e);
    v.ctx = e;
    double x;
    if (v.is_number(&x) && !std::isfinite(x)) {
      std::string text = e->getText();
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      fail_at(e, "'" + text + "' is " + (std::isnan(x) ? "not a number" : x > 0 ? "+infinity" : "-infinity"),
              "every number in a program must be finite: check for division by zero, 0^-1 or overflow");
    }
    return v;
  }

  Value scalar(Expr x) {
    Value v;
    v.kind = Value::Scalar;
    v.expr = std::move(x);
    return v;
  }

  // A coordinatewise operand: a scalar or a vector expression.
  const Value& operand(const Value& v, NetsorParser::ExprContext* at) {
    switch (v.kind) {
      case Value::Scalar: case Value::Vector: return v;
      case Value::Matrix:
        fail_at(at, "matrix '" + prog_.vars[v.var].name + "' used inside a coordinatewise expression",
                "a matrix may only be applied to a vector: " + prog_.vars[v.var].name + " @ x");
      case Value::Input:
        fail_at(at, "input '" + prog_.vars[v.var].name + "' used inside a coordinatewise expression",
                "an input enters through a matrix with a finite side: U[n, d] @ " + prog_.vars[v.var].name);
      case Value::List: fail_at(at, "a list is only allowed in input declarations and distribution arguments");
      case Value::Operator:
        fail_at(at, "an operator used inside a coordinatewise expression",
                "apply it to a vector (S @ x) or take its normalized trace tr(S)");
    }
    return v;
  }

  Value combine(const Value& a, const Value& b, NetsorParser::ExprContext* ea, NetsorParser::ExprContext* eb,
                const std::function<Expr(Expr, Expr)>& f, antlr4::ParserRuleContext* whole) {
    operand(a, ea);
    operand(b, eb);
    Value r;
    r.expr = f(a.expr, b.expr);
    if (a.kind == Value::Vector || b.kind == Value::Vector) {
      r.kind = Value::Vector;
      r.dim = a.kind == Value::Vector ? a.dim : b.dim;
      if (a.kind == Value::Vector && b.kind == Value::Vector && !(a.dim == b.dim))
        fail_at(whole, "shape mismatch: a vector of size " + prog_.dim_name(a.dim) + " combined with one of size " +
                           prog_.dim_name(b.dim),
                "coordinatewise expressions combine vectors of the same width");
    }
    return r;
  }

  // a % b on numbers known when the program is read (constants, loop indices),
  // with the divisor's sign as in Python: (t - 1) % T cycles through 0..T-1.
  Value modulo(const Value& a, const Value& b, NetsorParser::MulExprContext* c) {
    double x, y;
    for (auto [v, at] : {std::pair{&a, c->expr(0)}, std::pair{&b, c->expr(1)}})
      if (!v->is_number())
        fail_at(at, "'%' takes numbers known when the program is read; this is a " + kind_text(*v),
                "use % on constants and loop indices, e.g. x[(t + 1) % T]");
    a.is_number(&x);
    b.is_number(&y);
    if (y == 0) fail_at(c->expr(1), "modulo by zero");
    return scalar(constant(x - y * std::floor(x / y)));
  }

  Value eval_inner(NetsorParser::ExprContext* e) {
    if (auto* c = dynamic_cast<NetsorParser::ParenExprContext*>(e)) return eval(c->expr());
    if (auto* c = dynamic_cast<NetsorParser::NumberExprContext*>(e)) {
      double x = std::strtod(c->getText().c_str(), nullptr);
      if (!std::isfinite(x)) fail_at(c, "number out of range");
      return scalar(constant(x));
    }
    if (auto* c = dynamic_cast<NetsorParser::ListExprContext*>(e)) {
      Value v;
      v.kind = Value::List;
      for (auto* x : c->expr()) v.items.push_back(eval(x));
      return v;
    }
    if (auto* c = dynamic_cast<NetsorParser::NameExprContext*>(e)) return name_expr(c);
    if (auto* c = dynamic_cast<NetsorParser::CallExprContext*>(e)) return call_expr(c);
    if (auto* c = dynamic_cast<NetsorParser::TransposeExprContext*>(e)) {
      Value v = eval(c->expr());
      if (v.kind == Value::Operator) return op_value(ir::op_transpose(prog_, v.node));
      if (v.kind != Value::Matrix)
        fail_at(c, "only a matrix can be transposed (or an operator); this is a " + kind_text(v));
      v.transposed = !v.transposed;
      return v;
    }
    if (auto* c = dynamic_cast<NetsorParser::NegExprContext*>(e)) {
      Value v = eval(c->expr());
      if (v.kind == Value::Operator || (v.kind == Value::Matrix && !prog_.vars[v.var].cols.is_finite()))
        return op_value(ir::op_scale(prog_, constant(-1), node_of(v, c->expr())));
      operand(v, c->expr());
      v.expr = neg(v.expr);
      return v;
    }
    if (auto* c = dynamic_cast<NetsorParser::PowExprContext*>(e)) {
      Value a = eval(c->expr(0)), b = eval(c->expr(1));
      return combine(a, b, c->expr(0), c->expr(1), [](Expr x, Expr y) { return pow(x, y); }, c);
    }
    if (auto* c = dynamic_cast<NetsorParser::MulExprContext*>(e)) {
      Value a = eval(c->expr(0)), b = eval(c->expr(1));
      if (c->op->getText() == "%") return modulo(a, b, c);
      if (operator_arith(a, b)) return op_arith(c->op->getText()[0], a, b, c);
      if (c->op->getText() == "*")
        return combine(a, b, c->expr(0), c->expr(1), [](Expr x, Expr y) { return mul(x, y); }, c);
      double d;
      if (b.is_number(&d) && d == 0) fail_at(c->expr(1), "division by zero");
      return combine(a, b, c->expr(0), c->expr(1), [](Expr x, Expr y) { return div(x, y); }, c);
    }
    if (auto* c = dynamic_cast<NetsorParser::AddExprContext*>(e)) {
      Value a = eval(c->expr(0)), b = eval(c->expr(1));
      if (operator_arith(a, b)) return op_arith(c->op->getText()[0], a, b, c);
      if (c->op->getText() == "+")
        return combine(a, b, c->expr(0), c->expr(1), [](Expr x, Expr y) { return add(x, y); }, c);
      return combine(a, b, c->expr(0), c->expr(1), [](Expr x, Expr y) { return sub(x, y); }, c);
    }
    if (auto* c = dynamic_cast<NetsorParser::MatmulExprContext*>(e)) return matmul(c);
    fail_at(e, "unsupported expression");
  }

  Value name_expr(NetsorParser::NameExprContext* c) {
    std::string name = c->ID()->getText();
    for (auto* ix : c->expr()) name += "[" + index_of(ix) + "]";
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      auto it = s->find(name);
      if (it != s->end()) return it->second;
    }
    double x;
    if (lookup_const(name, x)) return scalar(constant(x));
    auto it = names_.find(name);
    if (it != names_.end()) {
      const ir::Var& var = prog_.vars[it->second];
      Value v;
      switch (var.kind) {
        case VarKind::A: v.kind = Value::Matrix; v.var = it->second; break;
        case VarKind::Input: v.kind = Value::Input; v.var = it->second; break;
        case VarKind::Scalar: v = scalar(netsor::var(it->second)); break;
        case VarKind::G: case VarKind::H:
          v.kind = Value::Vector;
          v.expr = netsor::var(it->second);
          v.dim = var.rows;
          break;
      }
      return v;
    }
    if (widths_.count(name)) return scalar(netsor::var(width_var(widths_[name], c)));
    if (auto op = operators_.find(name); op != operators_.end()) return op_value(op->second);
    if (name == "I") return op_value(ir::op_identity(prog_));
    if (defs_.count(name)) fail_at(c, "'" + name + "' is a def; call it: " + name + "(...)");
    std::string hint = "define it before this line";
    if (!c->expr().empty()) {
      std::string base = c->ID()->getText();
      std::string near;
      for (const auto& [k, _] : names_)
        if (k.rfind(base + "[", 0) == 0) near += (near.empty() ? "" : ", ") + k;
      if (!near.empty()) hint = "defined so far: " + (near.size() > 120 ? near.substr(0, 120) + "..." : near);
    }
    fail_at(c, "undefined name '" + name + "'", hint);
  }

  Value call_expr(NetsorParser::CallExprContext* c) {
    std::string full = c->ID()->getText();
    std::size_t primes = 0;
    while (primes < full.size() && full[full.size() - 1 - primes] == '\'') ++primes;
    std::string name = full.substr(0, full.size() - primes);
    auto args = c->expr();
    auto arity = [&](std::size_t k) {
      if (args.size() != k)
        fail_at(c, "'" + full + "' takes " + std::to_string(k) + " argument" + (k == 1 ? "" : "s") + ", got " +
                       std::to_string(args.size()));
    };
    if (name == "dot" && primes == 0) {  // inner product of two inputs: a number
      arity(2);
      Value u = eval(args[0]), v = eval(args[1]);
      if (u.kind != Value::Input || v.kind != Value::Input)
        fail_at(c, "dot(...) takes two inputs", "for vectors, use avg(x * y)");
      const Eigen::VectorXd *a = nullptr, *b = nullptr;
      for (const auto& [nm, val] : prog_.inputs) {
        if (nm == prog_.vars[u.var].name) a = &val;
        if (nm == prog_.vars[v.var].name) b = &val;
      }
      if (a->size() != b->size()) fail_at(c, "dot(...) of inputs of different lengths");
      return scalar(constant(a->dot(*b)));
    }
    if (name == "len" && primes == 0) {  // the length of an input: a number
      arity(1);
      Value u = eval(args[0]);
      if (u.kind != Value::Input) fail_at(args[0], "len(...) takes an input");
      return scalar(constant(double(prog_.vars[u.var].rows.finite)));
    }
    if (name == "avg" && primes == 0) {
      arity(1);
      Value v = eval(args[0]);
      if (v.kind != Value::Vector)
        fail_at(args[0], "avg(...) needs a vector expression; this is a " + kind_text(v),
                "avg is the Moment (1/n) sum_alpha phi(x_alpha): its argument must involve a vector");
      ir::Instr in;
      in.op = ir::Op::Moment;
      in.expr = v.expr;
      VarId s = emit(in, "avg#" + std::to_string(++temp_counter_), VarKind::Scalar, {}, loc_of(c), true);
      return scalar(netsor::var(s));
    }
    if ((name == "diag" || name == "inv" || name == "tr") && primes == 0) {
      arity(1);
      return operator_call(name, eval(args[0]), c);
    }
    Fn f;
    if (lookup_fn(name, f)) {
      arity(1);
      Value v = eval(args[0]);
      operand(v, args[0]);
      Expr body = differentiate(call(f, netsor::var(kPlaceholder)), primes, c);
      Expr arg = v.expr;
      v.expr = substitute(body, [&](int id) { return id == kPlaceholder ? arg : netsor::var(id); });
      return v;
    }
    auto it = defs_.find(name);
    if (it == defs_.end()) {
      if (names_.count(name) || consts_.count(name))
        fail_at(c->ID()->getSymbol(), "'" + name + "' is not a function");
      fail_at(c->ID()->getSymbol(), "unknown function '" + full + "'",
              "built-ins: relu step abs sign tanh erf sigmoid gelu softplus sin cos exp log sqrt avg dot len diag inv tr; "
              "derivatives add a prime: tanh'(z); define others with def");
    }
    const Def& d = it->second;
    arity(d.params.size());
    if (primes > 0 && d.params.size() != 1)
      fail_at(c->ID()->getSymbol(), "a derivative " + full + " needs a def of one argument",
              "write the partial derivative as its own def");
    if (++call_depth_ > kMaxCallDepth)
      fail_at(c, "defs nested more than " + std::to_string(kMaxCallDepth) + " calls deep (recursive def?)",
              "a def may not call itself");
    std::map<std::string, Value> scope;
    std::vector<Value> vals;
    for (std::size_t i = 0; i < args.size(); ++i) vals.push_back(eval(args[i]));
    Value result;
    const parse::SourceFile* saved = file_;
    if (primes == 0) {
      for (std::size_t i = 0; i < args.size(); ++i) scope[d.params[i]] = vals[i];
      // A def body sees only globals and its parameters, not the caller's loop variables.
      auto saved_scopes = std::move(scopes_);
      scopes_ = {scope};
      file_ = d.file;
      result = eval(d.ctx->expr());
      file_ = saved;
      scopes_ = std::move(saved_scopes);
    } else {
      Value p = operand(vals[0], args[0]);
      Expr arg = p.expr;
      p.expr = netsor::var(kPlaceholder);
      std::size_t before = prog_.instrs.size();
      auto saved_scopes = std::move(scopes_);
      scopes_ = {{{d.params[0], p}}};
      file_ = d.file;
      result = eval(d.ctx->expr());
      file_ = saved;
      scopes_ = std::move(saved_scopes);
      if (prog_.instrs.size() != before || result.kind > Value::Vector)
        fail_at(c, "cannot differentiate '" + name + "': its body is not a coordinatewise expression",
                "only defs built from arithmetic and nonlinearities have derivatives");
      Expr body = differentiate(result.expr, primes, c);
      result.expr = substitute(body, [&](int id) { return id == kPlaceholder ? arg : netsor::var(id); });
      result.kind = p.kind == Value::Vector || result.kind == Value::Vector ? Value::Vector : Value::Scalar;
      if (p.kind == Value::Vector) result.dim = p.dim;
    }
    --call_depth_;
    return result;
  }

  // The primes-th derivative in the placeholder. Each derivative may multiply
  // the expression's size (tanh's derivatives grow exponentially), so the
  // size is checked after every step, before the next can exhaust memory.
  Expr differentiate(Expr body, std::size_t primes, NetsorParser::CallExprContext* c) {
    for (std::size_t k = 0; k < primes; ++k) {
      body = derivative(body, kPlaceholder);
      if (too_large(body))
        fail_at(c, "derivative " + std::to_string(k + 1) + " of " + std::to_string(primes) + " in '" +
                       c->ID()->getText() + "' is too large an expression (more than " +
                       std::to_string(kMaxExpressionSize) + " nodes or " + std::to_string(kMaxExpressionDepth) +
                       " levels written out)",
                "use fewer primes, or write the derivative out as a def");
    }
    return body;
  }

  // A width used as a number (n^0.5, n^-1): a scalar the executor sets to the
  // real width and the limit pass treats as a power of n (primer section 4).
  VarId width_var(int w, antlr4::ParserRuleContext* at) {
    auto it = width_vars_.find(w);
    if (it != width_vars_.end()) return it->second;
    ir::Instr in;
    in.op = ir::Op::Width;
    in.member = w;
    VarId v = emit(in, prog_.widths[w].name, VarKind::Scalar, {}, loc_of(at), false);
    width_vars_[w] = v;
    return v;
  }
  std::map<int, VarId> width_vars_;

  // The vector a MatMul multiplies must be a program variable: name it if needed.
  VarId as_var(const Value& v, antlr4::ParserRuleContext* at) {
    if (v.expr->op == ExprOp::Var && v.expr->var >= 0) return v.expr->var;
    ir::Instr in;
    in.op = ir::Op::Nonlin;
    in.expr = v.expr;
    return emit(in, "_" + std::to_string(++temp_counter_), VarKind::H, v.dim, loc_of(at), true);
  }

  Value matmul(NetsorParser::MatmulExprContext* c) {
    Value m = eval(c->expr(0));
    if (m.kind != Value::Matrix && m.kind != Value::Operator)
      fail_at(c->expr(0), "the left side of @ must be a matrix or an operator; this is a " + kind_text(m),
              m.kind == Value::Vector ? "scale a vector with *; @ applies a matrix: W @ x" : "");
    Value x = eval(c->expr(1));
    if (is_operator(x)) {  // a product of operators
      ir::OpError err;
      return op_value(checked(ir::op_product(prog_, node_of(m, c->expr(0)), node_of(x, c->expr(1)), &err), err, c));
    }
    if (m.kind == Value::Operator) return apply_operator(m.node, x, c);
    const ir::Var& W = prog_.vars[m.var];
    const std::string wname = W.name + (m.transposed ? ".T" : "");
    Dim in = m.transposed ? W.rows : W.cols;
    Dim out = m.transposed ? W.cols : W.rows;
    if (x.kind == Value::Input) {
      const ir::Var& xi = prog_.vars[x.var];
      if (!in.is_finite() || m.transposed)
        fail_at(c, wname + " @ " + xi.name + ": an input multiplies a matrix with a finite side",
                "declare one: matrix U[n, " + std::to_string(xi.rows.finite) + "] : gaussian(var=1)");
      if (in.finite != xi.rows.finite)
        fail_at(c, "shape mismatch: " + wname + " has " + std::to_string(in.finite) + " columns but " + xi.name +
                       " has " + std::to_string(xi.rows.finite) + " entries");
      return project_input(m.var, x.var, out, c);
    }
    operand(x, c->expr(1));
    if (x.kind != Value::Vector)
      fail_at(c->expr(1), "the right side of @ must be a vector; this is a " + kind_text(x));
    if (out.is_finite())
      fail_at(c, wname + " @ x would be a vector of finite size " + std::to_string(out.finite),
              "only infinite-width vectors are program variables");
    if (in.is_finite())
      fail_at(c, "shape mismatch: " + wname + " has " + std::to_string(in.finite) +
                     " columns; it multiplies an input, not a vector of size " + prog_.dim_name(x.dim));
    if (!(in == x.dim))
      fail_at(c, "shape mismatch: " + wname + " is " + prog_.dim_name(m.transposed ? W.cols : W.rows) + "x" +
                     prog_.dim_name(in) + " but the vector has size " + prog_.dim_name(x.dim),
              m.transposed ? "did you mean " + W.name + " @ ...?" : "did you mean " + W.name + ".T @ ...?");
    return emit_matmul(m.var, m.transposed, x, c, c->expr(1));
  }

  Value emit_matmul(VarId m, bool transposed, const Value& x, antlr4::ParserRuleContext* c,
                    antlr4::ParserRuleContext* arg_at) {
    // Copies, not references: naming the argument may add variables.
    const Dim out = transposed ? prog_.vars[m].cols : prog_.vars[m].rows;
    const std::string wname = prog_.vars[m].name + (transposed ? ".T" : "");
    VarId arg = as_var(x, arg_at);
    // X.T @ (R @ u) with R = inv(... X ...) applied to u: one operator,
    // X.T @ R, applied to u, so that the limit pass sees the whole of it
    // (a product by X of a vector built from X has no rule of its own).
    const int def = prog_.vars[arg].def;
    if (def >= 0 && prog_.instrs[def].op == ir::Op::Apply) {
      const ir::Instr applied = prog_.instrs[def];  // a copy: emitting adds instructions
      auto ms = ir::op_matrices(prog_, applied.op_node);
      if (std::find(ms.begin(), ms.end(), m) != ms.end()) {
        ir::OpError err;
        int node = ir::op_product(prog_, ir::op_matrix(prog_, m, transposed), applied.op_node, &err);
        if (node >= 0) {
          Value u;
          u.kind = Value::Vector;
          u.expr = netsor::var(applied.arg);
          u.dim = prog_.op_nodes[applied.op_node].cols;
          return apply_inverse(node, u, c);
        }
      }
    }
    ir::Instr instr;
    instr.op = ir::Op::MatMul;
    instr.matrix = m;
    instr.transposed = transposed;
    instr.arg = arg;
    VarId y = emit(instr, wname + "@" + prog_.vars[arg].name, VarKind::G, out, loc_of(c), true);
    Value r;
    r.kind = Value::Vector;
    r.expr = netsor::var(y);
    r.dim = out;
    return r;
  }

  // ---- operators (include/netsor/operators.hpp)

  std::map<std::string, int> operators_;  // named operators -> node

  Value op_value(int node) {
    Value v;
    v.kind = Value::Operator;
    v.node = node;
    return v;
  }
  bool is_operator(const Value& v) const { return v.kind == Value::Operator || v.kind == Value::Matrix; }
  // Operator arithmetic: +, -, * and / with an operator and no vector or list.
  bool operator_arith(const Value& a, const Value& b) const {
    return (is_operator(a) || is_operator(b)) && (is_operator(a) || a.kind == Value::Scalar) &&
           (is_operator(b) || b.kind == Value::Scalar);
  }
  int checked(int node, const ir::OpError& err, antlr4::ParserRuleContext* at) {
    if (node < 0) fail_at(at, err.message, err.hint);
    return node;
  }
  // A matrix used as an operator becomes a node.
  int node_of(const Value& v, antlr4::ParserRuleContext* at) {
    if (v.kind == Value::Operator) return v.node;
    if (v.kind != Value::Matrix)
      fail_at(at, "expected an operator (a matrix, diag(...), I, or an expression of them); this is a " + kind_text(v));
    const ir::Var& W = prog_.vars[v.var];
    if (W.cols.is_finite())
      fail_at(at, "'" + W.name + "' has a finite side (" + std::to_string(W.cols.finite) +
                      " columns): it multiplies inputs, not vectors, so it is not an operator");
    return ir::op_matrix(prog_, v.var, v.transposed);
  }
  int sized(int node, antlr4::ParserRuleContext* at) {
    if (ir::unsized(prog_, node))
      fail_at(at, "cannot tell the size of I here",
              "use I in a sum or product with a sized operator, e.g. A.T @ A + lam * I");
    return node;
  }

  Value op_arith(char op, const Value& a, const Value& b, antlr4::ParserRuleContext* c) {
    ir::OpError err;
    auto* ea = c->getRuleContext<NetsorParser::ExprContext>(0);
    auto* eb = c->getRuleContext<NetsorParser::ExprContext>(1);
    if (op == '+' || op == '-') {
      if (!is_operator(a) || !is_operator(b))
        fail_at(c, "an operator plus a scalar", "write a multiple of the identity: A + lam * I");
      int rhs = node_of(b, eb);
      if (op == '-') rhs = ir::op_scale(prog_, constant(-1), rhs);
      return op_value(checked(ir::op_sum(prog_, node_of(a, ea), rhs, &err), err, c));
    }
    if (is_operator(a) && is_operator(b))
      fail_at(c, "operators are multiplied with @, not " + std::string(1, op), "write A @ B");
    if (op == '/' && !is_operator(b)) {
      double d;
      if (b.is_number(&d) && d == 0) fail_at(eb, "division by zero");
      return op_value(ir::op_scale(prog_, div(constant(1), b.expr), node_of(a, ea)));
    }
    if (op == '/') fail_at(c, "division by an operator", "write inv(...) for an inverse: x * inv(A)");
    return is_operator(a) ? op_value(ir::op_scale(prog_, b.expr, node_of(a, ea)))
                          : op_value(ir::op_scale(prog_, a.expr, node_of(b, eb)));
  }

  Value operator_call(const std::string& name, const Value& v, NetsorParser::CallExprContext* c) {
    auto* arg = c->expr(0);
    if (name == "diag") {
      if (v.kind != Value::Vector)
        fail_at(arg, "diag(...) takes a coordinatewise expression of vectors; this is a " + kind_text(v),
                v.kind == Value::Scalar ? "a multiple of the identity is written c * I"
                                        : "diag(tanh'(h)) is the diagonal matrix of a vector's entries");
      return op_value(ir::op_diag(prog_, v.expr, v.dim));
    }
    ir::OpError err;
    int node = node_of(v, arg);
    if (name == "inv") return op_value(checked(ir::op_inverse(prog_, node, &err), err, c));
    node = sized(node, arg);
    const ir::OpNode& n = prog_.op_nodes[node];
    if (!(n.rows == n.cols))
      fail_at(arg, "tr(...) of a non-square operator: " + ir::op_text(prog_, node) + " is " + ir::shape_text(prog_, node),
              "the trace of X.T @ X is the sum of X's squared singular values");
    ir::Instr in;
    in.op = ir::Op::Trace;
    in.op_node = node;
    VarId s = emit(in, "tr#" + std::to_string(++temp_counter_), VarKind::Scalar, {}, loc_of(c), true);
    return scalar(netsor::var(s));
  }

  // S @ x: matrices become MatMul, diagonals, identities, sums and scalings
  // coordinatewise arithmetic, so the limit pass sees an ordinary program;
  // only an inverse needs an instruction of its own (Op::Apply).
  Value apply_operator(int node, Value x, NetsorParser::MatmulExprContext* c) {
    if (x.kind != Value::Vector)
      fail_at(c->expr(1), "an operator applies to a vector; this is a " + kind_text(x));
    if (ir::unsized(prog_, node)) node = ir::op_sized(prog_, node, x.dim);
    if (!(prog_.op_nodes[node].cols == x.dim))
      fail_at(c, "shape mismatch: " + ir::op_text(prog_, node) + " is " + ir::shape_text(prog_, node) +
                     " but the vector has size " + prog_.dim_name(x.dim),
              "an operator with n columns applies to vectors of size n; a transpose (.T) may be missing");
    return apply_node(node, x, c);
  }

  bool shares_matrix(int a, int b) const {
    auto ma = ir::op_matrices(prog_, a), mb = ir::op_matrices(prog_, b);
    return std::any_of(ma.begin(), ma.end(), [&](VarId m) { return std::find(mb.begin(), mb.end(), m) != mb.end(); });
  }

  bool reads_vectors(int node) const {
    const ir::OpNode& n = prog_.op_nodes[node];
    if (n.kind == ir::OpKind::Diag)
      for (int id : free_vars(n.entries))
        if (prog_.vars[id].kind != VarKind::Scalar) return true;
    return std::any_of(n.args.begin(), n.args.end(), [&](int a) { return reads_vectors(a); });
  }

  Value apply_inverse(int node, Value x, antlr4::ParserRuleContext* c) {
    ir::Instr in;
    in.op = ir::Op::Apply;
    in.op_node = node;
    in.arg = as_var(x, c);
    // T @ (T0 @ u) with T0 applied whole and sharing a matrix with T: (T @ T0) @ u,
    // one operator (the limit of T applied to a vector built from its own
    // matrices has no rule of its own).
    const int def = prog_.vars[in.arg].def;
    if (def >= 0 && prog_.instrs[def].op == ir::Op::Apply && shares_matrix(node, prog_.instrs[def].op_node)) {
      const ir::Instr inner = prog_.instrs[def];  // a copy: emitting adds instructions
      ir::OpError err;
      int fused = ir::op_product(prog_, node, inner.op_node, &err);
      if (fused >= 0) {
        in.op_node = node = fused;
        in.arg = inner.arg;
      }
    }
    VarId y = emit(in, "inv@" + prog_.vars[in.arg].name, VarKind::H, prog_.op_nodes[node].rows, loc_of(c), true);
    x.expr = netsor::var(y);
    x.dim = prog_.op_nodes[node].rows;
    return x;
  }

  Value apply_node(int node, Value x, antlr4::ParserRuleContext* c) {
    const ir::OpNode n = prog_.op_nodes[node];  // a copy: emitting may add nodes
    // An operator with an inverse and no diagonal of program vectors applies
    // whole, as one instruction: the limit pass derives X.T @ inv(X @ X.T +
    // lam * I) @ u by rotation invariance, which splitting off a product by X.T
    // (a MatMul on a vector built from X) would lose.
    if (n.kind == ir::OpKind::Inverse || (ir::contains_inverse(prog_, node) && !reads_vectors(node)))
      return apply_inverse(node, x, c);
    switch (n.kind) {
      case ir::OpKind::Matrix: return emit_matmul(n.matrix, n.transposed, x, c, c);
      case ir::OpKind::Identity: return x;
      case ir::OpKind::Diag: x.expr = mul(n.entries, x.expr); return x;
      case ir::OpKind::Scale: {
        Value r = apply_node(n.args[0], x, c);
        r.expr = mul(n.entries, r.expr);
        return r;
      }
      case ir::OpKind::Sum: {
        x.expr = netsor::var(as_var(x, c));  // computed once, read by every term
        Expr total = constant(0);
        for (int t : n.args) total = add(total, apply_node(t, x, c).expr);
        x.expr = total;
        x.dim = n.rows;
        return x;
      }
      case ir::OpKind::Product:
        for (auto it = n.args.rbegin(); it != n.args.rend(); ++it) x = apply_node(*it, x, c);
        return x;
      case ir::OpKind::Inverse: return apply_inverse(node, x, c);
    }
    return x;
  }

  void operator_decl(NetsorParser::OperatorDeclContext* c) {
    std::string name = target_name(c->target());
    SourceLoc at = loc_of(c->target());
    check_fresh(name, at);
    if (consts_.count(name)) fail_at(at, "'" + name + "' is a constant");
    int node = node_of(eval(c->expr()), c->expr());
    operators_[name] = node;
    prog_.operators.push_back({name, node, at});
    defined_at_[name] = at;
  }

  void spectrum_stmt(NetsorParser::SpectrumStmtContext* c) {
    int node = sized(node_of(eval(c->expr()), c->expr()), c->expr());
    std::string text = ir::op_text(prog_, node);
    const ir::OpNode& n = prog_.op_nodes[node];
    if (!(n.rows == n.cols))
      fail_at(c->expr(), "spectrum of a non-square operator: " + text + " is " + ir::shape_text(prog_, node),
              "the squared singular values of X are the spectrum of X.T @ X");
    std::string why = ir::why_not_symmetric(prog_, node);
    if (!why.empty())
      fail_at(c->expr(), "spectrum needs a symmetric operator, and '" + text + "' is not provably symmetric: " + why,
              "symmetric forms: X @ X.T, X.T @ M @ X with M symmetric, diag(...), I, inv of a symmetric "
              "operator, and sums of these; (W + W.T) / 2 symmetrizes a square matrix");
    SourceLoc at = loc_of(c->expr());
    std::string name = c->expr()->getText();
    if (c->name) {
      name = target_name(c->name);
      at = loc_of(c->name);
      check_fresh(name, at);
      defined_at_[name] = at;
    }
    for (const auto& s : prog_.spectra)
      if (s.name == name)
        fail_at(at, "a second spectrum named '" + name + "' (first at " + where(s.loc) + ")",
                "name it: spectrum ... as other_name");
    prog_.spectra.push_back({name, node, at});
  }

  // U xi with U in R^{n x d}: an initial G-var, jointly Gaussian with every other
  // U xi', Cov = sigma_U^2 xi . xi' / d (primer section 2, consequences).
  Value project_input(VarId U, VarId input, Dim out, antlr4::ParserRuleContext* c) {
    const ir::Matrix& mat = prog_.matrix_of(U);
    const Eigen::VectorXd* xi = nullptr;
    for (const auto& [nm, val] : prog_.inputs)
      if (nm == prog_.vars[input].name) xi = &val;
    int fam = -1;
    for (std::size_t f = 0; f < prog_.families.size(); ++f)
      if (prog_.families[f].source_matrix == U) fam = (int)f;
    if (fam < 0) {
      ir::GaussianFamily f;
      f.source_matrix = U;
      f.loc = loc_of(c);
      prog_.families.push_back(f);
      fam = (int)prog_.families.size() - 1;
      inputs_of_family_.emplace_back();
      family_index_.push_back(fam);
    }
    std::size_t slot = 0;
    while (family_index_[slot] != fam) ++slot;
    auto& used = inputs_of_family_[slot];
    used.push_back(*xi);
    std::size_t k = used.size();
    ir::GaussianFamily& f = prog_.families[fam];
    Eigen::MatrixXd cov(k, k);
    for (std::size_t i = 0; i < k; ++i)
      for (std::size_t j = 0; j < k; ++j) cov(i, j) = mat.variance * used[i].dot(used[j]) / used[i].size();
    f.cov = cov;
    f.mean = Eigen::VectorXd::Zero(k);
    ir::Instr in;
    in.op = ir::Op::Init;
    in.family = fam;
    in.member = (int)k - 1;
    VarId y = emit(in, prog_.vars[U].name + "@" + prog_.vars[input].name, VarKind::G, out, loc_of(c), true);
    f.members.push_back(y);
    Value r;
    r.kind = Value::Vector;
    r.expr = netsor::var(y);
    r.dim = out;
    return r;
  }
  std::vector<std::vector<Eigen::VectorXd>> inputs_of_family_;
  std::vector<int> family_index_;
};

std::string default_stdlib() {
  if (const char* env = std::getenv("NETSOR_STDLIB")) return env;
#ifdef NETSOR_SOURCE_DIR
  return std::string(NETSOR_SOURCE_DIR) + "/stdlib";
#else
  return "stdlib";
#endif
}

ir::Program compile(std::function<parse::SourceFile()> read, const FrontendOptions& opts) {
  FrontendOptions o = opts;
  if (o.stdlib_dir.empty()) o.stdlib_dir = default_stdlib();
  ir::Program result;
  run_on_big_stack([&] {
    auto pf = parse_source(read());
    Lowerer l(o);
    result = l.run(std::move(pf));
  });
  ir::verify(result);
  return result;
}

}  // namespace

// The parser, the lowering and the later passes recurse over trees whose depth
// the front end's limits bound (brackets, statement length, expression size);
// this thread's stack is sized for those bounds.
void run_on_big_stack(const std::function<void()>& fn) {
  struct Job {
    const std::function<void()>* fn;
    std::exception_ptr error;
  } job{&fn, nullptr};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, std::size_t(512) << 20);
  pthread_t th;
  auto body = [](void* p) -> void* {
    auto* j = static_cast<Job*>(p);
    try {
      (*j->fn)();
    } catch (...) {
      j->error = std::current_exception();
    }
    return nullptr;
  };
  if (pthread_create(&th, &attr, body, &job) != 0) {
    pthread_attr_destroy(&attr);
    fn();  // no thread available: run here
    return;
  }
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
  if (job.error) std::rethrow_exception(job.error);
}

ir::Program compile_file(const std::string& path, const FrontendOptions& opts) {
  return compile([&] { return parse::read_source(path, nullptr); }, opts);
}

ir::Program compile_string(const std::string& text, const std::string& name, const FrontendOptions& opts) {
  return compile([&] { return parse::make_source(text, name); }, opts);
}

}  // namespace netsor
