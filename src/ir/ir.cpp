// Printing the IR: text for people (netsor print), JSON for tools (--json).
#include "netsor/ir.hpp"
#include "netsor/operators.hpp"

#include <nlohmann/json.hpp>
#include <sstream>

namespace netsor::ir {

const char* kind_name(VarKind k) {
  switch (k) {
    case VarKind::A: return "A";
    case VarKind::G: return "G";
    case VarKind::H: return "H";
    case VarKind::Scalar: return "scalar";
    case VarKind::Input: return "input";
  }
  return "?";
}

const char* op_name(Op o) {
  switch (o) {
    case Op::Init: return "init";
    case Op::MatMul: return "matmul";
    case Op::Nonlin: return "nonlin";
    case Op::Moment: return "moment";
    case Op::Scalar: return "scalar";
    case Op::Width: return "width";
    case Op::Apply: return "apply";
    case Op::Trace: return "trace";
  }
  return "?";
}

const Matrix& Program::matrix_of(VarId v) const {
  for (const auto& m : matrices)
    if (m.var == v) return m;
  throw std::logic_error("matrix_of: not an A-var");
}

double Program::dim_ratio(const Dim& d) const { return d.is_finite() ? d.finite : widths.at(d.width).ratio; }

std::string Program::dim_name(const Dim& d) const {
  return d.is_finite() ? std::to_string(d.finite) : widths.at(d.width).name;
}

namespace {

// " : n x m" after a name (not [..], which would read as an index).
std::string shape_of(const Program& p, const Var& v) {
  switch (v.kind) {
    case VarKind::A: return " : " + p.dim_name(v.rows) + " x " + p.dim_name(v.cols);
    case VarKind::G: case VarKind::H: return " : " + p.dim_name(v.rows);
    case VarKind::Input: return " : " + std::to_string(v.rows.finite);
    case VarKind::Scalar: return "";
  }
  return "";
}

std::string instr_text(const Program& p, const Instr& in) {
  auto name = [&](int id) { return p.vars.at(id).name; };
  switch (in.op) {
    case Op::Init: {
      const auto& f = p.families.at(in.family);
      std::ostringstream s;
      s << "init family " << in.family << " member " << in.member << "  ~ N(" << f.mean(in.member) << ", "
        << f.cov(in.member, in.member) << ")";
      return s.str();
    }
    case Op::MatMul: return name(in.matrix) + (in.transposed ? ".T" : "") + " @ " + name(in.arg);
    case Op::Nonlin: return to_string(in.expr, name);
    case Op::Moment: return "avg(" + to_string(in.expr, name) + ")";
    case Op::Scalar: return to_string(in.expr, name);
    case Op::Width: return "width " + p.widths.at(in.member).name;
    case Op::Apply: return "(" + op_text(p, in.op_node) + ") @ " + name(in.arg);
    case Op::Trace: return "tr(" + op_text(p, in.op_node) + ")";
  }
  return "";
}

}  // namespace

std::string to_text(const Program& p) {
  std::ostringstream o;
  o << "widths:";
  for (const auto& w : p.widths) o << " " << w.name << " = " << w.ratio << " n;";
  o << "\n";
  for (const auto& m : p.matrices) {
    const Var& v = p.vars[m.var];
    o << "  A      " << v.name << shape_of(p, v) << "  "
      << (m.dist == MatrixDist::Gaussian ? "gaussian" : "orthogonal") << "(var=" << m.variance << ")\n";
  }
  for (std::size_t f = 0; f < p.families.size(); ++f) {
    const auto& fam = p.families[f];
    o << "  family " << f << " (";
    for (std::size_t i = 0; i < fam.members.size(); ++i) o << (i ? ", " : "") << p.vars[fam.members[i]].name;
    o << ") ~ N(mean, cov)";
    if (fam.source_matrix >= 0) o << " from " << p.vars[fam.source_matrix].name << " @ inputs";
    o << "\n    mean = [" << fam.mean.transpose() << "]\n    cov  = [";
    for (int i = 0; i < fam.cov.rows(); ++i) o << (i ? "; " : "") << fam.cov.row(i);
    o << "]\n";
  }
  for (const auto& in : p.instrs) {
    const Var& v = p.vars[in.out];
    std::string k = kind_name(v.kind);
    o << "  " << k << std::string(7 - k.size(), ' ') << v.name << shape_of(p, v) << " = " << instr_text(p, in)
      << "\n";
  }
  for (const auto& r : p.reports) o << "  report " << r.name << " = " << p.vars[r.var].name << "\n";
  for (const auto& op : p.operators) o << "  operator " << op.name << " = " << op_text(p, op.node) << "\n";
  for (const auto& s : p.spectra)
    o << "  spectrum " << s.name << " = " << op_text(p, s.node) << " : " << shape_text(p, s.node) << "\n";
  return o.str();
}

nlohmann::json to_json(const Program& p) {
  using nlohmann::json;
  json j;
  j["widths"] = json::array();
  for (const auto& w : p.widths) j["widths"].push_back({{"name", w.name}, {"ratio", w.ratio}});
  j["vars"] = json::array();
  for (std::size_t i = 0; i < p.vars.size(); ++i) {
    const Var& v = p.vars[i];
    json jv = {{"id", i}, {"name", v.name}, {"kind", kind_name(v.kind)},
               {"loc", {{"file", v.loc.file}, {"line", v.loc.line}, {"col", v.loc.col}}}};
    switch (v.kind) {
      case VarKind::A: jv["shape"] = {p.dim_name(v.rows), p.dim_name(v.cols)}; break;
      case VarKind::G: case VarKind::H: jv["shape"] = {p.dim_name(v.rows)}; break;
      case VarKind::Input: jv["shape"] = {v.rows.finite}; break;
      case VarKind::Scalar: jv["shape"] = json::array(); break;
    }
    if (v.def >= 0) {
      const Instr& in = p.instrs[v.def];
      jv["def"] = {{"index", v.def}, {"op", op_name(in.op)}, {"text", instr_text(p, in)}};
    } else {
      jv["def"] = nullptr;
    }
    j["vars"].push_back(jv);
  }
  j["matrices"] = json::array();
  for (const auto& m : p.matrices)
    j["matrices"].push_back({{"var", p.vars[m.var].name},
                             {"dist", m.dist == MatrixDist::Gaussian ? "gaussian" : "orthogonal"},
                             {"variance", m.variance}});
  j["families"] = json::array();
  for (const auto& f : p.families) {
    json jf;
    jf["members"] = json::array();
    for (auto v : f.members) jf["members"].push_back(p.vars[v].name);
    jf["mean"] = std::vector<double>(f.mean.data(), f.mean.data() + f.mean.size());
    jf["cov"] = json::array();
    for (int r = 0; r < f.cov.rows(); ++r) {
      std::vector<double> row(f.cov.cols());
      for (int c = 0; c < f.cov.cols(); ++c) row[c] = f.cov(r, c);
      jf["cov"].push_back(row);
    }
    if (f.source_matrix >= 0) jf["source_matrix"] = p.vars[f.source_matrix].name;
    j["families"].push_back(jf);
  }
  j["instructions"] = json::array();
  for (const auto& in : p.instrs) {
    json ji = {{"op", op_name(in.op)}, {"out", p.vars[in.out].name}, {"text", instr_text(p, in)}};
    if (in.op == Op::MatMul) {
      ji["matrix"] = p.vars[in.matrix].name;
      ji["transposed"] = in.transposed;
      ji["arg"] = p.vars[in.arg].name;
    }
    if (in.op == Op::Init) ji["family"] = in.family;
    j["instructions"].push_back(ji);
  }
  j["reports"] = json::array();
  for (const auto& r : p.reports) j["reports"].push_back({{"name", r.name}, {"var", p.vars[r.var].name}});
  for (const char* key : {"operators", "spectra"}) {
    j[key] = json::array();
    for (const auto& op : key[0] == 'o' ? p.operators : p.spectra)
      j[key].push_back({{"name", op.name}, {"text", op_text(p, op.node)}, {"shape", shape_text(p, op.node)},
                        {"symmetric", p.op_nodes[op.node].symmetric}});
  }
  return j;
}

}  // namespace netsor::ir
