// ir::verify: the invariants every pass relies on, checked once the front end
// has lowered a program. A violation is netsor's bug, not the user's: it is
// thrown as InternalError (exit status 3), naming the instruction.
#include <sstream>

#include "netsor/ir.hpp"

namespace netsor::ir {
namespace {

class Verifier {
 public:
  explicit Verifier(const Program& p) : p_(p) {}

  void run() {
    for (std::size_t i = 0; i < p_.instrs.size(); ++i) instr((int)i);
    for (std::size_t f = 0; f < p_.families.size(); ++f) family((int)f);
    for (std::size_t k = 0; k < p_.op_nodes.size(); ++k) op_node((int)k);
    for (const auto& r : p_.reports) {
      at_ = "report '" + r.name + "'";
      expect(valid(r.var) && p_.vars[r.var].kind == VarKind::Scalar, "reports a variable that is not a scalar");
      expect(valid(r.var) && p_.vars[r.var].def >= 0, "reports a variable no instruction defines");
    }
    for (const auto* list : {&p_.operators, &p_.spectra})
      for (const auto& o : *list) {
        at_ = "operator '" + o.name + "'";
        expect(o.node >= 0 && o.node < (int)p_.op_nodes.size(), "names no operator node");
      }
  }

 private:
  const Program& p_;
  std::string at_;

  void expect(bool ok, const std::string& what) const {
    if (!ok) throw InternalError("the lowered program is inconsistent: " + at_ + " " + what);
  }
  bool valid(VarId v) const { return v >= 0 && v < (int)p_.vars.size(); }
  bool vector(VarId v) const {
    return valid(v) && (p_.vars[v].kind == VarKind::G || p_.vars[v].kind == VarKind::H);
  }
  // v is usable by instruction i: defined before it.
  void defined_before(VarId v, int i) const {
    expect(valid(v), "uses variable #" + std::to_string(v) + ", which does not exist");
    expect(p_.vars[v].def >= 0 && p_.vars[v].def < i,
           "uses '" + p_.vars[v].name + "' before the instruction that defines it");
  }
  // The leaves of a coordinatewise expression: vectors of size `size` and scalars.
  void leaves(const Expr& e, int i, const Dim* size) const {
    for (int v : free_vars(e)) {
      defined_before(v, i);
      VarKind k = p_.vars[v].kind;
      expect(k == VarKind::Scalar || (size && vector(v)), "reads '" + p_.vars[v].name + "' of the wrong kind");
      if (size && vector(v)) expect(p_.vars[v].rows == *size, "mixes vectors of different sizes");
    }
  }

  void instr(int i) {
    const Instr& in = p_.instrs[i];
    std::ostringstream o;
    o << "instruction " << i << " (" << op_name(in.op) << ")";
    at_ = o.str();
    expect(valid(in.out), "defines no variable");
    const Var& out = p_.vars[in.out];
    at_ += " defining '" + out.name + "'";
    expect(out.def == i, "is not the variable's recorded definition");
    switch (in.op) {
      case Op::Init: {
        expect(out.kind == VarKind::G, "defines a variable that is not a G-var");
        expect(in.family >= 0 && in.family < (int)p_.families.size(), "names no family");
        const auto& m = p_.families[in.family].members;
        expect(in.member >= 0 && in.member < (int)m.size() && m[in.member] == in.out,
               "is not the member of its family it claims to be");
        break;
      }
      case Op::MatMul: {
        expect(valid(in.matrix) && p_.vars[in.matrix].kind == VarKind::A, "multiplies by a variable that is not a matrix");
        defined_before(in.arg, i);
        expect(vector(in.arg), "multiplies a variable that is not a vector");
        expect(out.kind == VarKind::G, "defines a variable that is not a G-var");
        const Var& W = p_.vars[in.matrix];
        const Dim& from = in.transposed ? W.rows : W.cols;
        const Dim& to = in.transposed ? W.cols : W.rows;
        expect(p_.vars[in.arg].rows == from, "multiplies a vector of the wrong size");
        expect(out.rows == to, "gives a vector of the wrong size");
        break;
      }
      case Op::Nonlin:
        expect(vector(in.out), "defines a variable that is not a vector");
        leaves(in.expr, i, &out.rows);
        break;
      case Op::Moment: {
        expect(out.kind == VarKind::Scalar, "defines a variable that is not a scalar");
        // The average runs over one dimension: every vector read has its size.
        const Dim* size = nullptr;
        for (int v : free_vars(in.expr))
          if (vector(v)) size = &p_.vars[v].rows;
        if (size) leaves(in.expr, i, size);
        else leaves(in.expr, i, nullptr);
        break;
      }
      case Op::Scalar:
        expect(out.kind == VarKind::Scalar, "defines a variable that is not a scalar");
        leaves(in.expr, i, nullptr);
        break;
      case Op::Width:
        expect(out.kind == VarKind::Scalar, "defines a variable that is not a scalar");
        expect(in.member >= 0 && in.member < (int)p_.widths.size(), "names no width");
        break;
      case Op::Apply:
        expect(in.op_node >= 0 && in.op_node < (int)p_.op_nodes.size(), "names no operator node");
        defined_before(in.arg, i);
        expect(vector(in.out) && vector(in.arg), "applies an operator to or into a non-vector");
        expect(p_.vars[in.arg].rows == p_.op_nodes[in.op_node].cols, "applies an operator to a vector of the wrong size");
        expect(out.rows == p_.op_nodes[in.op_node].rows, "gives a vector of the wrong size");
        break;
      case Op::Trace:
        expect(out.kind == VarKind::Scalar, "defines a variable that is not a scalar");
        expect(in.op_node >= 0 && in.op_node < (int)p_.op_nodes.size(), "names no operator node");
        break;
    }
  }

  void family(int f) {
    const GaussianFamily& F = p_.families[f];
    at_ = "family " + std::to_string(f);
    int k = (int)F.members.size();
    expect(F.mean.size() == k && F.cov.rows() == k && F.cov.cols() == k, "has a mean or covariance of the wrong size");
    expect(F.cov.isApprox(F.cov.transpose()), "has a covariance that is not symmetric");
    for (VarId v : F.members) {
      expect(valid(v) && p_.vars[v].kind == VarKind::G, "has a member that is not a G-var");
      expect(p_.vars[v].def >= 0 && p_.instrs[p_.vars[v].def].op == Op::Init, "has a member no Init defines");
      expect(p_.vars[v].rows == p_.vars[F.members[0]].rows, "has members of different sizes");
    }
  }

  void op_node(int k) {
    const OpNode& n = p_.op_nodes[k];
    at_ = "operator node " + std::to_string(k);
    for (int a : n.args) expect(a >= 0 && a < k, "has a child that does not come before it");
    if (n.kind == OpKind::Matrix)
      expect(valid(n.matrix) && p_.vars[n.matrix].kind == VarKind::A, "is a matrix node without a matrix");
  }
};

}  // namespace

void verify(const Program& p) { Verifier(p).run(); }

}  // namespace netsor::ir
