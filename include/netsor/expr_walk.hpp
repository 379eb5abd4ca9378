// One walker over the expression DAG (include/netsor/expr.hpp): a memoized,
// iterative bottom-up fold. Every pass over an Expr that computes something
// per node (a derivative, a substitution, a range, an affine form, the order
// analysis of the limit pass) is a set of rules, one method per operation:
//
//   T constant(const Expr& e)                            Const
//   T variable(const Expr& e)                            Var
//   T add(const Expr& e, const T& a, const T& b)         Add   (a, b: the operands' results)
//   T sub(const Expr& e, const T& a, const T& b)         Sub
//   T mul(const Expr& e, const T& a, const T& b)         Mul
//   T div(const Expr& e, const T& a, const T& b)         Div
//   T neg(const Expr& e, const T& a)                     Neg
//   T pow(const Expr& e, const T& a, const T& b)         Pow
//   T call(const Expr& e, const T& a)                    Call
//
// The list of operations lives in this file only: dispatch() below is a
// switch with no default, compiled with -Wswitch as an error, so a new ExprOp
// fails to compile here until it has a case, and that case names a rule
// method that every rule set must then provide.
//
// A rule set may also define std::optional<T> stop(const Expr& e): where it
// returns a value, that is the node's result and its operands are not walked
// (additive_terms stops at a nonlinearity).
//
// Each distinct node is visited once (shared subexpressions are not re-walked)
// and the walk keeps its own stack, so depth is bounded by memory, not by the
// call stack. Rules may take an operand's result by value (fold() moves it in
// at its last use) or by const reference.
#pragma once

#include <cstddef>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "netsor/expr.hpp"

namespace netsor {

// The operands of a node, in order (Const and Var have none; Neg and Call one).
inline int arity(ExprOp op) {
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wswitch"
  switch (op) {
    case ExprOp::Const: case ExprOp::Var: return 0;
    case ExprOp::Neg: case ExprOp::Call: return 1;
    case ExprOp::Add: case ExprOp::Sub: case ExprOp::Mul: case ExprOp::Div: case ExprOp::Pow: return 2;
  }
#pragma GCC diagnostic pop
  return 0;
}

// What a node holds besides its operands: equal for Const of equal value, Var
// of equal id, Call of the same function.
inline bool same_payload(const ExprNode& a, const ExprNode& b) {
  if (a.op != b.op) return false;
  if (a.op == ExprOp::Const) return a.value == b.value;
  if (a.op == ExprOp::Var) return a.var == b.var;
  if (a.op == ExprOp::Call) return a.fn == b.fn;
  return true;
}

namespace detail {

// The walk behind Fold and fold(). Persistent (Fold): every result is kept
// for the life of the walker, with its node (so that re-entrant walks over
// new expressions never meet a reused address). One-shot (fold()): the DAG
// is alive throughout; an operand's result is handed to its last user by
// move and dropped, so a long chain (x + 1 + 1 + ... 16000 deep) costs memory
// for the results still needed, not for all of them.
template <class T, class Rules, bool kOneShot>
class Walk {
 public:
  explicit Walk(Rules& rules) : rules_(rules) {}

  const T& run(const Expr& e) {
    if (auto it = memo_.find(e.get()); it != memo_.end() && it->second.value) return *it->second.value;
    if constexpr (kOneShot) count_uses(e);
    // (node, its operands already pushed)
    std::vector<std::pair<const Expr*, bool>> stack{{&e, false}};
    while (!stack.empty()) {
      auto& [xp, expanded] = stack.back();
      const Expr& x = *xp;
      if (done(x)) {
        stack.pop_back();
        continue;
      }
      if (!expanded) {
        expanded = true;
        // Rules may settle a node before its operands are walked (stop()).
        if constexpr (requires { rules_.stop(x); }) {
          if (auto r = rules_.stop(x)) {
            store(x, std::move(*r));
            stack.pop_back();
            continue;
          }
        }
        // Push b before a, so that a (the left operand) is folded first:
        // rules with side effects (errors, provenance) see operands left to
        // right. Rules with kRightToLeft see b first.
        int k = arity(x->op);
        bool right_first = false;
        if constexpr (requires { Rules::kRightToLeft; }) right_first = Rules::kRightToLeft;
        if (right_first && k >= 1 && !done(x->a)) stack.push_back({&x->a, false});
        if (k == 2 && !done(x->b)) stack.push_back({&x->b, false});
        if (!right_first && k >= 1 && !done(x->a)) stack.push_back({&x->a, false});
        continue;
      }
      T r = dispatch(x);
      store(x, std::move(r));
      stack.pop_back();
    }
    return *memo_.at(e.get()).value;
  }

  // One-shot: the root's result, moved out.
  T take(const Expr& e) { return std::move(*memo_.at(e.get()).value); }

 private:
  struct Entry {
    Expr node;   // persistent: keeps the node (and its address) alive
    int uses = 0;  // one-shot: users not yet folded
    std::optional<T> value;
  };

  bool done(const Expr& x) const {
    auto it = memo_.find(x.get());
    return it != memo_.end() && it->second.value;
  }
  void store(const Expr& x, T&& r) {
    Entry& en = memo_[x.get()];
    if constexpr (!kOneShot) en.node = x;
    en.value.emplace(std::move(r));
  }
  // How many operand slots of the DAG below e refer to each node.
  void count_uses(const Expr& e) {
    std::vector<const ExprNode*> stack{e.get()};
    memo_[e.get()].uses = 1;  // the caller's
    while (!stack.empty()) {
      const ExprNode* n = stack.back();
      stack.pop_back();
      int k = arity(n->op);
      for (const ExprNode* c : {n->a.get(), n->b.get()}) {
        if (k-- <= 0) break;
        if (memo_[c].uses++ == 0) stack.push_back(c);
      }
    }
  }
  // An operand's result for its user: persistent, by reference; one-shot, a
  // copy, or the result itself at its last use.
  decltype(auto) operand(const Expr& c) {
    if constexpr (kOneShot) {
      Entry& en = memo_.at(c.get());
      if (--en.uses > 0) return T(*en.value);
      T r = std::move(*en.value);
      memo_.erase(c.get());
      return r;
    } else {
      return static_cast<const T&>(*memo_.at(c.get()).value);
    }
  }

  T dispatch(const Expr& x) {
#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Wswitch"
    switch (x->op) {
      case ExprOp::Const: return rules_.constant(x);
      case ExprOp::Var: return rules_.variable(x);
      case ExprOp::Add: return rules_.add(x, operand(x->a), operand(x->b));
      case ExprOp::Sub: return rules_.sub(x, operand(x->a), operand(x->b));
      case ExprOp::Mul: return rules_.mul(x, operand(x->a), operand(x->b));
      case ExprOp::Div: return rules_.div(x, operand(x->a), operand(x->b));
      case ExprOp::Neg: return rules_.neg(x, operand(x->a));
      case ExprOp::Pow: return rules_.pow(x, operand(x->a), operand(x->b));
      case ExprOp::Call: return rules_.call(x, operand(x->a));
    }
#pragma GCC diagnostic pop
    return rules_.constant(x);  // not reached: every op has a case above
  }

  Rules& rules_;
  std::unordered_map<const ExprNode*, Entry> memo_;
};

}  // namespace detail

// A walker that keeps every result: for rules asked about many
// subexpressions (an affine form memo) or re-entered by their own rules (the
// order analysis). f(e) is e's result, valid while the Fold lives.
template <class T, class Rules>
class Fold {
 public:
  explicit Fold(Rules& rules) : walk_(rules) {}
  const T& operator()(const Expr& e) { return walk_.run(e); }

 private:
  detail::Walk<T, Rules, false> walk_;
};

// Fold e once: the result at the root.
template <class T, class Rules>
T fold(const Expr& e, Rules&& rules) {
  detail::Walk<T, std::remove_reference_t<Rules>, true> w(rules);
  w.run(e);
  return w.take(e);
}

// Rules that rebuild a node from its rebuilt operands with the folding
// constructors of expr.hpp (constants fold, identities drop). A rebuilding
// pass derives from it and overrides what it changes (substitute overrides
// variable()).
struct Rebuild {
  Expr constant(const Expr& e) { return e; }
  Expr variable(const Expr& e) { return e; }
  Expr add(const Expr&, const Expr& a, const Expr& b) { return netsor::add(a, b); }
  Expr sub(const Expr&, const Expr& a, const Expr& b) { return netsor::sub(a, b); }
  Expr mul(const Expr&, const Expr& a, const Expr& b) { return netsor::mul(a, b); }
  Expr div(const Expr&, const Expr& a, const Expr& b) { return netsor::div(a, b); }
  Expr neg(const Expr&, const Expr& a) { return netsor::neg(a); }
  Expr pow(const Expr&, const Expr& a, const Expr& b) { return netsor::pow(a, b); }
  Expr call(const Expr& e, const Expr& a) { return netsor::call(e->fn, a); }
};

// Every distinct node of e once, each before its operands; stops at the
// first node where pred is true (and says whether there was one).
template <class Pred>
bool any_node(const Expr& e, Pred&& pred) {
  std::vector<const Expr*> stack{&e};
  std::unordered_set<const ExprNode*> seen;
  while (!stack.empty()) {
    const Expr& x = *stack.back();
    stack.pop_back();
    if (!seen.insert(x.get()).second) continue;
    if (pred(x)) return true;
    int k = arity(x->op);
    if (k == 2) stack.push_back(&x->b);
    if (k >= 1) stack.push_back(&x->a);
  }
  return false;
}

// Every distinct node of e once.
template <class F>
void for_each_node(const Expr& e, F&& f) {
  any_node(e, [&](const Expr& x) { return f(x), false; });
}

}  // namespace netsor
