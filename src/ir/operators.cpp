// Operator expressions (include/netsor/operators.hpp). Nodes are appended to
// the program's arena and never changed, so a node's index is its identity.
#include "netsor/operators.hpp"

#include <algorithm>
#include <set>

namespace netsor::ir {
namespace {

const Dim kNoSize{kUnsized, 0};

int push(Program& p, OpNode n) {
  p.op_nodes.push_back(std::move(n));
  return (int)p.op_nodes.size() - 1;
}

std::string dim_text(const Program& p, const Dim& d) { return d.width == kUnsized ? "?" : p.dim_name(d); }

// Is a the transpose of b? Structural, so it proves a = b^T for every sample.
bool transpose_of(const Program& p, int a, int b);

bool same_tree(const Program& p, int a, int b) {
  if (a == b) return true;
  const OpNode &x = p.op_nodes[a], &y = p.op_nodes[b];
  if (x.kind != y.kind || !(x.rows == y.rows) || !(x.cols == y.cols) || x.args.size() != y.args.size()) return false;
  switch (x.kind) {
    case OpKind::Matrix: return x.matrix == y.matrix && x.transposed == y.transposed;
    case OpKind::Diag: return same(x.entries, y.entries);
    case OpKind::Scale: if (!same(x.entries, y.entries)) return false; break;
    default: break;
  }
  for (std::size_t i = 0; i < x.args.size(); ++i)
    if (!same_tree(p, x.args[i], y.args[i])) return false;
  return true;
}

bool transpose_of(const Program& p, int a, int b) {
  const OpNode &x = p.op_nodes[a], &y = p.op_nodes[b];
  if (x.symmetric && same_tree(p, a, b)) return true;
  if (x.kind != y.kind || x.args.size() != y.args.size()) return false;
  std::size_t k = x.args.size();
  switch (x.kind) {
    case OpKind::Matrix: return x.matrix == y.matrix && x.transposed != y.transposed;
    case OpKind::Scale: return same(x.entries, y.entries) && transpose_of(p, x.args[0], y.args[0]);
    case OpKind::Product:
      for (std::size_t i = 0; i < k; ++i)
        if (!transpose_of(p, x.args[i], y.args[k - 1 - i])) return false;
      return true;
    case OpKind::Sum: case OpKind::Inverse:
      for (std::size_t i = 0; i < k; ++i)
        if (!transpose_of(p, x.args[i], y.args[i])) return false;
      return true;
    default: return false;  // Diag and Identity are symmetric: handled above
  }
}

// The reason a node is not proven symmetric, or "" when it is.
std::string asymmetry(const Program& p, int node) {
  const OpNode& n = p.op_nodes[node];
  switch (n.kind) {
    case OpKind::Diag: case OpKind::Identity: return "";
    case OpKind::Matrix:
      return "'" + op_text(p, node) + "' has independent entries, so it is not symmetric";
    case OpKind::Scale: case OpKind::Inverse: return asymmetry(p, n.args[0]);
    case OpKind::Sum:
      for (int t : n.args) {
        if (p.op_nodes[t].symmetric) continue;
        bool paired = std::any_of(n.args.begin(), n.args.end(), [&](int u) { return transpose_of(p, u, t); });
        if (!paired) return "the term '" + op_text(p, t) + "' is not symmetric and its transpose is not a term";
      }
      return "";
    case OpKind::Product: {
      std::size_t k = n.args.size();
      for (std::size_t i = 0; i < k / 2; ++i)
        if (!transpose_of(p, n.args[i], n.args[k - 1 - i]))
          return "factor " + std::to_string(i + 1) + " '" + op_text(p, n.args[i]) + "' is not the transpose of factor " +
                 std::to_string(k - i) + " '" + op_text(p, n.args[k - 1 - i]) + "'";
      if (k % 2) {
        std::string mid = asymmetry(p, n.args[k / 2]);
        if (!mid.empty()) return "the middle factor of X @ M @ X.T is not symmetric: " + mid;
      }
      return "";
    }
  }
  return "";
}

int finish(Program& p, OpNode n) {
  int id = push(p, std::move(n));
  p.op_nodes[id].symmetric = asymmetry(p, id).empty();
  return id;
}

void collect(const Program& p, int node, std::set<VarId>& leaves, std::set<VarId>& mats) {
  const OpNode& n = p.op_nodes[node];
  if (n.kind == OpKind::Matrix) mats.insert(n.matrix);
  if (n.entries)
    for (int v : free_vars(n.entries)) leaves.insert(v);
  for (int a : n.args) collect(p, a, leaves, mats);
}

}  // namespace

bool unsized(const Program& p, int node) { return p.op_nodes[node].rows.width == kUnsized; }

std::string shape_text(const Program& p, int node) {
  const OpNode& n = p.op_nodes[node];
  return dim_text(p, n.rows) + " x " + dim_text(p, n.cols);
}

int op_matrix(Program& p, VarId m, bool transposed) {
  OpNode n;
  n.kind = OpKind::Matrix;
  n.matrix = m;
  n.transposed = transposed;
  n.rows = transposed ? p.vars[m].cols : p.vars[m].rows;
  n.cols = transposed ? p.vars[m].rows : p.vars[m].cols;
  return finish(p, std::move(n));
}

int op_diag(Program& p, Expr entries, Dim d) {
  OpNode n;
  n.kind = OpKind::Diag;
  n.entries = std::move(entries);
  n.rows = n.cols = d;
  return finish(p, std::move(n));
}

int op_identity(Program& p) {
  OpNode n;
  n.rows = n.cols = kNoSize;
  return finish(p, std::move(n));
}

int op_scale(Program& p, Expr factor, int a) {
  double c;
  if (is_const(factor, &c) && c == 1) return a;
  OpNode n;
  n.kind = OpKind::Scale;
  n.rows = p.op_nodes[a].rows;
  n.cols = p.op_nodes[a].cols;
  n.entries = std::move(factor);
  n.args = {a};
  return finish(p, std::move(n));
}

int op_sized(Program& p, int a, Dim d) {
  if (!unsized(p, a)) return a;
  OpNode n = p.op_nodes[a];
  n.rows = n.cols = d;
  for (int& x : n.args) x = op_sized(p, x, d);
  return finish(p, std::move(n));
}

// A sum or product with an unsized identity on one side takes the other's size.
static void fit_sizes(Program& p, int& a, int& b, Dim size_for_a, Dim size_for_b) {
  if (unsized(p, a) && !unsized(p, b)) a = op_sized(p, a, size_for_a);
  else if (unsized(p, b) && !unsized(p, a)) b = op_sized(p, b, size_for_b);
}

// a + b or a @ b, with sums of sums and products of products flattened (so
// that the symmetry proof sees every factor).
static int flat(Program& p, OpKind kind, int a, int b, Dim rows, Dim cols) {
  OpNode n;
  n.kind = kind;
  n.rows = rows;
  n.cols = cols;
  for (int t : {a, b}) {
    const OpNode& x = p.op_nodes[t];
    if (x.kind == kind) n.args.insert(n.args.end(), x.args.begin(), x.args.end());
    else n.args.push_back(t);
  }
  return finish(p, std::move(n));
}

int op_sum(Program& p, int a, int b, OpError* err) {
  fit_sizes(p, a, b, p.op_nodes[b].rows, p.op_nodes[a].rows);
  const OpNode &x = p.op_nodes[a], &y = p.op_nodes[b];
  if (!(x.rows == y.rows) || !(x.cols == y.cols)) {
    bool identity = x.kind == OpKind::Identity || y.kind == OpKind::Identity;
    *err = {"shape mismatch: " + op_text(p, a) + " is " + shape_text(p, a) + " but " + op_text(p, b) + " is " +
                shape_text(p, b),
            identity ? "I is square: it can only be added to a square operator"
                     : "operators added together must have the same shape"};
    return -1;
  }
  return flat(p, OpKind::Sum, a, b, x.rows, x.cols);
}

int op_product(Program& p, int a, int b, OpError* err) {
  fit_sizes(p, a, b, p.op_nodes[b].rows, p.op_nodes[a].cols);
  const OpNode &x = p.op_nodes[a], &y = p.op_nodes[b];
  if (!(x.cols == y.rows)) {
    *err = {"shape mismatch in a product: " + op_text(p, a) + " is " + shape_text(p, a) + " but " + op_text(p, b) +
                " is " + shape_text(p, b),
            "in A @ B the columns of A must match the rows of B; a transpose (.T) may be missing"};
    return -1;
  }
  return flat(p, OpKind::Product, a, b, x.rows, y.cols);
}

int op_inverse(Program& p, int a, OpError* err) {
  const OpNode& x = p.op_nodes[a];
  if (!(x.rows == x.cols)) {
    *err = {"inv(...) of a non-square operator: " + op_text(p, a) + " is " + shape_text(p, a),
            "only square operators have inverses; for a rectangular X, invert X.T @ X + lam * I"};
    return -1;
  }
  OpNode n;
  n.kind = OpKind::Inverse;
  n.rows = n.cols = x.rows;
  n.args = {a};
  return finish(p, std::move(n));
}

int op_transpose(Program& p, int a) {
  const OpNode& x = p.op_nodes[a];
  if (x.symmetric) return a;
  OpNode n = x;
  std::swap(n.rows, n.cols);
  if (n.kind == OpKind::Matrix) n.transposed = !n.transposed;
  for (int& c : n.args) c = op_transpose(p, c);
  if (n.kind == OpKind::Product) std::reverse(n.args.begin(), n.args.end());
  return finish(p, std::move(n));
}

bool contains_inverse(const Program& p, int node) {
  const OpNode& n = p.op_nodes[node];
  if (n.kind == OpKind::Inverse) return true;
  return std::any_of(n.args.begin(), n.args.end(), [&](int a) { return contains_inverse(p, a); });
}

std::string why_not_symmetric(const Program& p, int node) { return asymmetry(p, node); }

std::string op_text(const Program& p, int node) {
  const OpNode& n = p.op_nodes[node];
  auto name = [&](int id) { return p.vars.at(id).name; };
  auto inner = [&](int a) {
    OpKind k = p.op_nodes[a].kind;
    std::string t = op_text(p, a);
    return k == OpKind::Sum || k == OpKind::Scale ? "(" + t + ")" : t;
  };
  std::string s;
  switch (n.kind) {
    case OpKind::Matrix: return name(n.matrix) + (n.transposed ? ".T" : "");
    case OpKind::Diag: return "diag(" + to_string(n.entries, name) + ")";
    case OpKind::Identity: return "I";
    case OpKind::Scale: return to_string(n.entries, name) + " * " + inner(n.args[0]);
    case OpKind::Inverse: return "inv(" + op_text(p, n.args[0]) + ")";
    case OpKind::Sum:
      for (int a : n.args) s += (s.empty() ? "" : " + ") + op_text(p, a);
      return s;
    case OpKind::Product:
      for (int a : n.args) s += (s.empty() ? "" : " @ ") + inner(a);
      return s;
  }
  return s;
}

std::vector<VarId> op_leaves(const Program& p, int node) {
  std::set<VarId> leaves, mats;
  collect(p, node, leaves, mats);
  return {leaves.begin(), leaves.end()};
}

std::vector<VarId> op_matrices(const Program& p, int node) {
  std::set<VarId> leaves, mats;
  collect(p, node, leaves, mats);
  return {mats.begin(), mats.end()};
}

}  // namespace netsor::ir
