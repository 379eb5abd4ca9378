#include "report.hpp"

#include <cmath>
#include <iomanip>
#include <set>
#include <sstream>

namespace netsor::cli {

namespace {
std::string num(double v, int prec = 15) {
  std::ostringstream s;
  s << std::setprecision(prec) << v;
  return s.str();
}
std::string err(double e) {
  std::ostringstream s;
  s << std::setprecision(2) << std::scientific << e;
  return s.str();
}
}  // namespace

std::string limit_table(const std::string& file, const limit::Result& r) {
  std::ostringstream o;
  std::size_t w = 8;
  for (const auto& q : r.quantities) w = std::max(w, q.name.size());
  o << file << ": infinite-width limit of " << r.quantities.size() << " quantit"
    << (r.quantities.size() == 1 ? "y" : "ies") << "\n";
  o << "  " << std::left << std::setw(w) << "quantity" << "  " << std::setw(22) << "value" << "  "
    << std::setw(9) << "± error" << "  method\n";
  std::set<std::string> inputs;
  for (const auto& q : r.quantities) {
    o << "  " << std::left << std::setw(w) << q.name << "  " << std::setw(22) << num(q.estimate.value) << "  "
      << std::setw(9) << err(q.estimate.abs_error) << "  " << q.estimate.method << (q.estimate.inputs.empty() ? "" : " *")
      << "\n";
    inputs.insert(q.estimate.inputs.begin(), q.estimate.inputs.end());
  }
  if (!inputs.empty()) {
    o << "  * computed from covariances and coefficients obtained by:\n";
    for (const auto& m : inputs) o << "      " << m << "\n";
  }
  o << "  (error: estimated absolute error, including what earlier estimates carry forward)\n";
  return o.str();
}

nlohmann::json limit_json(const limit::Result& r) {
  nlohmann::json j;
  j["quantities"] = nlohmann::json::object();
  for (const auto& q : r.quantities)
    j["quantities"][q.name] = {{"value", q.estimate.value},
                               {"abs_error", q.estimate.abs_error},
                               {"method", q.estimate.method},
                               {"inputs", q.estimate.inputs}};
  return j;
}

namespace {

struct Names {
  const ir::Program& p;
  const limit::Result& r;
  bool latex;
  std::string leaf(int l) const {
    const auto& L = r.leaves[l];
    const std::string& v = p.vars[L.var].name;
    if (L.arg < 0) return latex ? "Z^{" + tex(v) + "}" : "Z[" + v + "]";
    return latex ? "\\hat Z^{" + tex(v) + "}" : L.name;
  }
  static std::string tex(const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '_') o += "\\_";
      else if (c == '@') o += "";
      else o += c;
    }
    return o;
  }
};

}  // namespace

std::string derive_text(const ir::Program& p, const limit::Result& r, bool latex) {
  Names nm{p, r, latex};
  std::ostringstream o;
  auto leafname = [&](int l) { return nm.leaf(l); };
  if (latex) o << "\\begin{align*}\n";
  o << (latex ? "% " : "") << "Gaussian families (independent of each other):\n";
  for (const auto& F : r.families) {
    o << (latex ? "% " : "  ") << F.name << (F.matrix >= 0 ? "  (Zhat of products by " + F.name + ", scale " + num(F.scale, 6) + ")" : "  (initial vectors)") << ": ";
    for (std::size_t i = 0; i < F.leaves.size(); ++i) o << (i ? ", " : "") << nm.leaf(F.leaves[i]);
    o << "\n";
    if (!latex && F.leaves.size() <= 12) {
      for (int i = 0; i < F.cov.rows(); ++i) {
        o << "      [";
        for (int j = 0; j < F.cov.cols(); ++j) o << (j ? " " : "") << std::setw(11) << num(F.cov(i, j), 6);
        o << " ]\n";
      }
    }
  }
  o << (latex ? "% " : "") << "Z of every vector (primer section 2):\n";
  for (const auto& z : r.zvars) {
    const std::string& v = p.vars[z.var].name;
    if (latex) {
      o << "Z^{" << Names::tex(v) << "} &= " << to_string(z.z, leafname) << " \\\\\n";
      continue;
    }
    o << "  Z[" << v << "] = ";
    if (z.zhat >= 0) {
      o << nm.leaf(z.zhat);
      for (const auto& t : z.zdot)
        o << " + " << num(t.coef, 10) << " Z[" << p.vars[r.leaves[t.leaf].arg].name << "]";
      if (!z.zdot.empty()) {
        o << "\n      Zdot: ";
        for (std::size_t i = 0; i < z.zdot.size(); ++i)
          o << (i ? "; " : "") << "E[dZ/d" << nm.leaf(z.zdot[i].leaf) << "] = " << num(z.zdot[i].expectation.value, 10);
      }
    } else {
      std::string s = to_string(z.z, leafname);
      o << (s.size() > 200 ? s.substr(0, 200) + " ..." : s);
    }
    o << "\n";
  }
  o << (latex ? "% " : "") << "Scalars (deterministic limits):\n";
  for (const auto& [v, e] : r.scalars) {
    const auto& in = p.instrs[p.vars[v].def];
    std::string text = in.op == ir::Op::Moment ? "E[" + to_string(in.expr, [&](int id) { return p.vars[id].name; }) + "]"
                                               : to_string(in.expr, [&](int id) { return p.vars[id].name; });
    if (latex)
      o << "\\mathring{" << Names::tex(p.vars[v].name) << "} &= " << num(e.value) << " \\\\\n";
    else
      o << "  " << p.vars[v].name << " = " << text << " = " << num(e.value) << " ± " << err(e.abs_error) << "  ["
        << e.method << "]\n";
  }
  if (latex) o << "\\end{align*}\n";
  return o.str();
}

nlohmann::json derive_json(const ir::Program& p, const limit::Result& r) {
  using nlohmann::json;
  Names nm{p, r, false};
  json j;
  j["families"] = json::array();
  for (const auto& F : r.families) {
    json f{{"name", F.name}, {"scale", F.scale}};
    f["leaves"] = json::array();
    for (int l : F.leaves) f["leaves"].push_back(nm.leaf(l));
    f["cov"] = json::array();
    for (int i = 0; i < F.cov.rows(); ++i) {
      std::vector<double> row(F.cov.cols());
      for (int c = 0; c < F.cov.cols(); ++c) row[c] = F.cov(i, c);
      f["cov"].push_back(row);
    }
    j["families"].push_back(f);
  }
  j["z"] = json::object();
  for (const auto& z : r.zvars) {
    json e{{"expr", to_string(z.z, [&](int l) { return nm.leaf(l); })}};
    if (z.zhat >= 0) {
      e["zhat"] = nm.leaf(z.zhat);
      e["zdot"] = json::array();
      for (const auto& t : z.zdot)
        e["zdot"].push_back({{"leaf", nm.leaf(t.leaf)}, {"times", p.vars[r.leaves[t.leaf].arg].name},
                             {"expectation", t.expectation.value}, {"coef", t.coef}});
    }
    j["z"][p.vars[z.var].name] = e;
  }
  j["scalars"] = json::object();
  for (const auto& [v, e] : r.scalars)
    j["scalars"][p.vars[v].name] = {{"value", e.value}, {"abs_error", e.abs_error}, {"method", e.method}};
  return j;
}

}  // namespace netsor::cli
