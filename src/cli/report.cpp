#include "report.hpp"

#include "netsor/frontend.hpp"
#include "netsor/operators.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

namespace netsor::cli {

std::string num(double v, int prec) {
  std::ostringstream s;
  s << std::setprecision(prec) << v;
  return s.str();
}
std::string err(double e) {
  std::ostringstream s;
  s << std::setprecision(2) << std::scientific << e;
  return s.str();
}

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
  if (!r.sampling.empty()) o << "  sampled limit: " << r.sampling << "\n";
  o << "  (error: estimated absolute error, including what earlier estimates carry forward)\n";
  return o.str();
}

nlohmann::json limit_json(const limit::Result& r) {
  nlohmann::json j;
  j["quantities"] = nlohmann::json::object();
  for (const auto& q : r.quantities) {
    j["quantities"][q.name] = {{"value", q.estimate.value},
                               {"abs_error", q.estimate.abs_error},
                               {"method", q.estimate.method},
                               {"inputs", q.estimate.inputs}};
    if (q.estimate.order < 0) {
      j["quantities"][q.name]["order"] = q.estimate.order;
      j["quantities"][q.name]["coefficient"] = q.estimate.coefficient;
    }
  }
  if (!r.sampling.empty()) j["sampling"] = r.sampling;
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

namespace {

// LaTeX for a coordinatewise expression.
std::string latex_of(const Expr& e, const std::function<std::string(int)>& name) {
  std::function<std::string(const Expr&, int)> go = [&](const Expr& x, int ctx) -> std::string {
    std::string s;
    int p = 5;
    switch (x->op) {
      case ExprOp::Const: s = num(x->value, 10); p = x->value < 0 ? 1 : 5; break;
      case ExprOp::Var: s = name(x->var); break;
      case ExprOp::Add: s = go(x->a, 1) + " + " + go(x->b, 2); p = 1; break;
      case ExprOp::Sub: s = go(x->a, 1) + " - " + go(x->b, 2); p = 1; break;
      case ExprOp::Mul: s = go(x->a, 2) + " \\, " + go(x->b, 3); p = 2; break;
      case ExprOp::Div: s = "\\frac{" + go(x->a, 0) + "}{" + go(x->b, 0) + "}"; break;
      case ExprOp::Neg: s = "-" + go(x->a, 4); p = 3; break;
      case ExprOp::Pow: s = "{" + go(x->a, 5) + "}^{" + go(x->b, 0) + "}"; p = 4; break;
      case ExprOp::Call: {
        std::string f = fn_name(x->fn);
        bool std_fn = f == "tanh" || f == "sin" || f == "cos" || f == "exp" || f == "log";
        s = (std_fn ? "\\" + f : "\\operatorname{" + f + "}") + "\\left(" + go(x->a, 0) + "\\right)";
        break;
      }
    }
    return p < ctx ? "\\left(" + s + "\\right)" : s;
  };
  return go(e, 0);
}

}  // namespace

std::string derive_text(const ir::Program& p, const limit::Result& r, bool latex) {
  Names nm{p, r, latex};
  std::ostringstream o;
  std::map<int, double> scalar;
  for (const auto& [v, e] : r.scalars) scalar[v] = e.value;
  // Program variables print as Z[x] (or Z^{x}); scalars as their limits.
  auto zname = [&](int id) -> std::string {
    const auto& v = p.vars[id];
    if (v.kind == ir::VarKind::Scalar) return latex ? "\\mathring{" + Names::tex(v.name) + "}" : v.name;
    return latex ? "Z^{" + Names::tex(v.name) + "}" : "Z[" + v.name + "]";
  };
  auto expr = [&](const Expr& e) { return latex ? latex_of(e, zname) : to_string(e, zname); };
  const char* c = latex ? "% " : "";
  if (latex) o << "\\begin{align*}\n";
  o << c << "Gaussian families (independent of each other):\n";
  for (const auto& F : r.families) {
    o << (latex ? "% " : "  ") << F.name
      << (F.matrix >= 0 ? "  (Zhat of products by " + F.name + ", Cov = " + num(F.scale, 6) + " E[Z Z'])"
          : F.applied   ? "  (Zhat of rotation-invariant operators T applied to vectors u, Cov = (tr(T T'^T) - c c') E[Z^u Z^u'])"
                        : "  (initial vectors)")
      << ": ";
    for (std::size_t i = 0; i < F.leaves.size(); ++i) o << (i ? ", " : "") << nm.leaf(F.leaves[i]);
    o << "\n";
    if (F.leaves.size() <= 12) {
      for (int i = 0; i < F.cov.rows(); ++i) {
        o << c << "      [";
        for (int j = 0; j < F.cov.cols(); ++j) o << (j ? " " : "") << std::setw(11) << num(F.cov(i, j), 6);
        o << " ]\n";
      }
    }
  }
  o << c << "Z of every vector (primer section 2):\n";
  for (const auto& z : r.zvars) {
    const auto& in = p.instrs[p.vars[z.var].def];
    std::string lhs = zname(z.var);
    std::string rhs;
    if (in.op == ir::Op::MatMul || in.op == ir::Op::Apply) {
      rhs = nm.leaf(z.zhat);
      for (const auto& t : z.zdot) rhs += " + " + num(t.coef, 10) + (latex ? " \\, " : " ") + zname(r.leaves[t.leaf].arg);
    } else if (in.op == ir::Op::Init) {
      rhs = nm.leaf(z.zhat >= 0 ? z.zhat : 0);
      for (std::size_t l = 0; l < r.leaves.size(); ++l)
        if (r.leaves[l].var == z.var) rhs = nm.leaf((int)l);
    } else {
      rhs = expr(in.expr);
    }
    if (latex) o << lhs << " &= " << rhs << " \\\\\n";
    else o << "  " << lhs << " = " << rhs << "\n";
    if (in.op == ir::Op::Apply)
      for (const auto& t : z.zdot)
        o << (latex ? "% " : "      ") << "c = tr(" << ir::op_text(p, in.op_node) << ") = " << num(t.expectation, 12)
          << " ± " << err(t.abs_error) << "  [" << r.methods[t.method] << "]\n";
    if (in.op == ir::Op::MatMul) {
      const auto& fam = r.families[r.leaves[z.zhat].family];
      for (const auto& t : z.zdot) {
        o << (latex ? "% " : "      ") << "Zdot term: " << num(fam.scale, 6) << " * " << zname(r.leaves[t.leaf].arg)
          << " * E[d" << zname(in.arg) << " / d" << (latex ? r.leaves[t.leaf].name : nm.leaf(t.leaf))
          << "] = " << num(fam.scale, 6) << " * " << num(t.expectation, 12) << " ± "
          << err(t.abs_error) << "  [" << r.methods[t.method] << "]\n";
      }
    }
  }
  o << c << "Scalars (deterministic limits):\n";
  for (const auto& [v, e] : r.scalars) {
    const auto& in = p.instrs[p.vars[v].def];
    if (in.op == ir::Op::Width) {
      o << c << "  " << p.vars[v].name << " = the width (a power of n, kept symbolic by the order analysis)\n";
      continue;
    }
    std::string text = in.op == ir::Op::Trace    ? "tr(" + ir::op_text(p, in.op_node) + ")"  // its pencil: below
                       : in.op == ir::Op::Moment ? (latex ? "\\mathbb{E}\\left[" + expr(in.expr) + "\\right]"
                                                          : "E[" + expr(in.expr) + "]")
                                                 : expr(in.expr);
    if (latex)
      o << zname(v) << " &= " << text << " = " << num(e.value) << " \\\\\n";
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
  auto zname = [&](int id) { return "Z[" + p.vars[id].name + "]"; };
  for (const auto& z : r.zvars) {
    // Each Z in terms of the earlier ones (its full expansion in Gaussians can
    // be exponentially long to print).
    const auto& in = p.instrs[p.vars[z.var].def];
    std::string text;
    if (in.op == ir::Op::MatMul) {
      text = nm.leaf(z.zhat);
      for (const auto& t : z.zdot) text += " + " + num(t.coef, 12) + " " + zname(r.leaves[t.leaf].arg);
    } else if (in.op == ir::Op::Init) {
      for (std::size_t l = 0; l < r.leaves.size(); ++l)
        if (r.leaves[l].var == z.var) text = nm.leaf((int)l);
    } else {
      text = to_string(in.expr, zname);
    }
    json e{{"expr", text}};
    if (z.zhat >= 0) {
      e["zhat"] = nm.leaf(z.zhat);
      e["zdot"] = json::array();
      for (const auto& t : z.zdot)
        e["zdot"].push_back({{"leaf", nm.leaf(t.leaf)}, {"times", p.vars[r.leaves[t.leaf].arg].name},
                             {"expectation", t.expectation}, {"coef", t.coef}});
    }
    j["z"][p.vars[z.var].name] = e;
  }
  j["scalars"] = json::object();
  for (const auto& [v, e] : r.scalars)
    j["scalars"][p.vars[v].name] = {{"value", e.value}, {"abs_error", e.abs_error}, {"method", e.method}};
  return j;
}

std::string run_table(const std::string& file, const exec::RunResult& r) {
  std::ostringstream o;
  std::size_t w = 8;
  for (const auto& q : r.quantities) w = std::max(w, q.name.size());
  o << file << ": width " << r.width << ", " << r.seeds << " seed" << (r.seeds == 1 ? "" : "s") << "\n";
  o << streamed_note(r.streamed_matrices);
  o << "  " << std::left << std::setw(w) << "quantity" << "  " << std::setw(22) << "mean" << "  " << std::setw(9)
    << "sem" << "  sd over seeds\n";
  for (const auto& q : r.quantities)
    o << "  " << std::left << std::setw(w) << q.name << "  " << std::setw(22) << num(q.mean, 12) << "  " << std::setw(9)
      << err(q.sem) << "  " << err(q.sd) << "\n";
  return o.str();
}

void keep_reports(ir::Program& p, const std::vector<std::string>& only) {
  if (only.empty()) return;
  std::string names;
  for (const auto& r : p.reports) names += (names.empty() ? "" : ", ") + r.name;
  for (const auto& n : only)
    if (std::none_of(p.reports.begin(), p.reports.end(), [&](const ir::Report& r) { return r.name == n; }))
      throw UsageError("--only " + n + ": the program reports no '" + n + "' (its reports: " + names + ")");
  std::erase_if(p.reports, [&](const ir::Report& r) { return std::find(only.begin(), only.end(), r.name) == only.end(); });
}

std::string streamed_note(int matrices) {
  if (matrices == 0) return "";
  return "  note: " + std::to_string(matrices) + " matri" + (matrices == 1 ? "x" : "ces") +
         " generated again at every use instead of stored, to fit in the memory limit (--memory)\n";
}

nlohmann::json run_json(const exec::RunResult& r) {
  nlohmann::json j{{"width", r.width}, {"seeds", r.seeds}, {"streamed_matrices", r.streamed_matrices},
                   {"quantities", nlohmann::json::object()}};
  for (const auto& q : r.quantities)
    j["quantities"][q.name] = {{"mean", q.mean}, {"sem", q.sem}, {"sd", q.sd}, {"per_seed", q.per_seed}};
  return j;
}

std::string converge_table(const std::string& file, const exec::ConvergeResult& r) {
  std::ostringstream o;
  o << file << ": " << r.seeds << " seeds at the largest width (more at smaller widths)\n";
  for (const auto& n : r.notes) o << "  note: " << n << "\n";
  for (const auto& s : r.series) {
    o << "\n" << s.name << "   limit " << num(s.limit.value, 12) << " ± " << err(s.limit.abs_error) << "  ["
      << s.limit.method << "]\n";
    o << "    " << std::right << std::setw(7) << "width" << "  " << std::setw(5) << "seeds" << "  " << std::setw(20) << "mean ± sem" << "  "
      << std::setw(10) << "|mean-lim|" << "  " << std::setw(10) << "rms error" << "\n";
    for (const auto& row : s.rows) {
      std::ostringstream ms;
      ms << num(row.mean, 7) << " ± " << err(row.sem);
      o << "    " << std::setw(7) << row.width << "  " << std::setw(5) << row.seeds << "  " << std::setw(20) << ms.str() << "  " << std::setw(10)
        << err(row.error) << "  " << std::setw(10) << err(row.rmse) << "\n";
    }
    o << "    slope of log(rms error) vs log(width): " << (std::isnan(s.slope) ? std::string("n/a") : num(s.slope, 3))
      << "  ->  " << s.verdict << "\n";
  }
  return o.str();
}

std::string converge_csv(const exec::ConvergeResult& r) {
  std::ostringstream o;
  o << "quantity,width,seeds,mean,sem,limit,limit_error,abs_error,rmse\n";
  o << std::setprecision(17);
  for (const auto& s : r.series)
    for (const auto& row : s.rows)
      o << s.name << "," << row.width << "," << row.seeds << "," << row.mean << "," << row.sem << "," << s.limit.value << ","
        << s.limit.abs_error << "," << row.error << "," << row.rmse << "\n";
  return o.str();
}

nlohmann::json converge_json(const exec::ConvergeResult& r) {
  using nlohmann::json;
  json j;
  j["limit"] = json::object();
  j["rows"] = json::array();
  j["slopes"] = json::object();
  j["verdicts"] = json::object();
  j["seeds"] = r.seeds;
  j["notes"] = r.notes;
  for (const auto& s : r.series) {
    j["limit"][s.name] = {{"value", s.limit.value}, {"abs_error", s.limit.abs_error}, {"method", s.limit.method}};
    if (s.limit.order < 0) {
      j["limit"][s.name]["order"] = s.limit.order;
      j["limit"][s.name]["coefficient"] = s.limit.coefficient;
    }
    j["growth"][s.name] = std::isnan(s.growth) ? json(nullptr) : json(s.growth);
    for (const auto& row : s.rows)
      j["rows"].push_back({{"quantity", s.name}, {"width", row.width}, {"seeds", row.seeds}, {"mean", row.mean}, {"sem", row.sem},
                           {"abs_error", row.error}, {"rmse", row.rmse}});
    j["slopes"][s.name] = std::isnan(s.slope) ? json(nullptr) : json(s.slope);
    j["verdicts"][s.name] = s.verdict;
  }
  return j;
}

namespace {
std::string list(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + num(x, 6);
  return "[" + s + "]";
}
}  // namespace

std::string abc_text(const abc::Parametrization& p, const abc::Verdict& v) {
  std::ostringstream o;
  o << "abc-parametrization of an MLP with L = " << p.L << " hidden layer" << (p.L == 1 ? "" : "s") << "\n";
  o << "  a = " << list(p.a) << "   b = " << list(p.b) << "   c = " << num(p.c, 6) << "\n";
  o << "  one-step change of h^l ~ n^{-r_l}:";
  for (int l = 0; l < p.L; ++l) o << "  r_" << l + 1 << " = " << num(v.r_l[l], 6);
  o << "   r = min r_l = " << num(v.r, 6) << "\n";
  o << "  stability (all must hold):\n";
  for (const auto& k : v.stability) {
    o << "    " << (k.holds ? "ok    " : "FAILS ") << std::left << std::setw(30) << k.text << " lhs = " << num(k.lhs, 6);
    if (!k.holds) o << "   (off by " << num(k.by, 6) << ")";
    o << "\n";
  }
  if (v.stable) {
    o << "  nontriviality (one must hold):\n";
    for (const auto& k : v.nontriviality)
      o << "    " << (k.holds ? "ok    " : "no    ") << std::left << std::setw(30) << k.text << " lhs = " << num(k.lhs, 6)
        << "\n";
  }
  o << "  verdict: ";
  if (v.regime == "unstable") o << "UNSTABLE: some quantity blows up as n grows\n";
  else if (v.regime == "trivial") o << "stable but trivial: the function does not move in the limit\n";
  else if (v.regime == "feature_learning") o << "stable, nontrivial, FEATURE LEARNING (r = 0)\n";
  else o << "stable, nontrivial, KERNEL regime (r = " << num(v.r, 6) << " > 0: features move like n^-" << num(v.r, 6) << ")\n";
  return o.str();
}

nlohmann::json abc_json(const abc::Parametrization& p, const abc::Verdict& v) {
  nlohmann::json j{{"stable", v.stable}, {"nontrivial", v.nontrivial}, {"regime", v.regime}, {"r", v.r},
                   {"r_l", v.r_l}, {"L", p.L}, {"a", p.a}, {"b", p.b}, {"c", p.c}};
  j["failed"] = nlohmann::json::array();
  for (const auto& k : v.stability)
    if (!k.holds) j["failed"].push_back({{"condition", k.text}, {"lhs", k.lhs}, {"by", k.by}});
  return j;
}

namespace {

struct Measured {
  std::vector<std::int64_t> widths;
  std::vector<double> predicted, measured;
};

// Runs the one-step program over widths and fits log(delta[l]) against log(n).
Measured measure_exponents(const abc::Parametrization& p, const std::function<void(const std::string&)>& progress) {
  auto prog = compile_string(abc::one_step_program(p), std::string(NETSOR_SOURCE_DIR) + "/abc_verify.tp");
  Measured m;
  m.widths = {256, 512, 1024, 2048};
  m.predicted = abc::first_step_exponents(p);
  std::vector<std::vector<double>> logs(p.L);
  for (auto w : m.widths) {
    progress("abc --verify: width " + std::to_string(w));
    exec::Options o;
    o.width = w;
    o.seeds = 4;
    auto r = exec::run(prog, o);
    for (int l = 0; l < p.L; ++l) logs[l].push_back(std::log(std::max(r.quantities[l].mean, 1e-300)));
  }
  progress("");
  for (int l = 0; l < p.L; ++l) {
    double mx = 0, my = 0, sxy = 0, sxx = 0;
    for (std::size_t i = 0; i < m.widths.size(); ++i) mx += std::log(double(m.widths[i])), my += logs[l][i];
    mx /= m.widths.size();
    my /= m.widths.size();
    for (std::size_t i = 0; i < m.widths.size(); ++i) {
      double dx = std::log(double(m.widths[i])) - mx;
      sxy += dx * (logs[l][i] - my);
      sxx += dx * dx;
    }
    m.measured.push_back(sxy / sxx);
  }
  return m;
}

}  // namespace

std::string abc_verify_text(const abc::Parametrization& p, const abc::Verdict& v,
                            const std::function<void(const std::string&)>& progress) {
  Measured m = measure_exponents(p, progress);
  std::ostringstream o;
  o << "\nverify: one SGD step of this MLP (stdlib/sgd_mlp.tp, tanh, eta = 0.5) at n = 256..2048, 4 seeds;\n"
    << "        exponent of the rms change of h^l, fitted against log n\n";
  o << "    layer   -r_l   predicted (first step)   measured   |diff|\n";
  for (int l = 0; l < p.L; ++l)
    o << "    " << std::setw(5) << l + 1 << "  " << std::setw(5) << num(0.0 - v.r_l[l] + 0.0, 3) << "  " << std::setw(23)
      << num(m.predicted[l], 3) << "  " << std::setw(9) << num(m.measured[l], 3) << "  " << std::setw(6)
      << num(std::abs(m.measured[l] - m.predicted[l]), 2) << "\n";
  o << "    (the first step sees an O(1) loss derivative; r_l's min(a_{L+1}+b_{L+1}, 2a_{L+1}+c) describes later\n"
    << "     steps, and a layer moves at least as fast as the layers feeding it)\n";
  return o.str();
}

nlohmann::json abc_verify_json(const abc::Parametrization& p, const abc::Verdict&,
                               const std::function<void(const std::string&)>& progress) {
  Measured m = measure_exponents(p, progress);
  return {{"widths", m.widths}, {"predicted", m.predicted}, {"measured", m.measured}};
}

namespace {
[[noreturn]] void cannot_write(const std::string& path, int error) {
  Diagnostic d;
  d.loc.file = path;
  d.message = std::string("cannot write this file: ") + std::strerror(error);
  d.hint = "choose a path in a folder you can write to";
  throw ProgramError(d);
}

// The temporary being written, for the signal handler to remove: an
// interrupted command leaves no partial file behind. A fixed buffer, because
// the handler may call only async-signal-safe functions.
char g_temp[4096];
volatile std::sig_atomic_t g_temp_live = 0;

void on_terminate(int sig) {
  if (g_temp_live) ::unlink(g_temp);
  static const char msg[] = "netsor: interrupted\n";
  if (::write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
  }
  ::_exit(128 + sig);
}

// A new file beside `path` (same folder, so that rename replaces `path` in one step).
int open_temporary(const std::string& path, std::string& temp) {
  temp = path + ".XXXXXX";
  int fd = ::mkstemp(temp.data());
  if (fd < 0) cannot_write(path, errno);
  if (temp.size() < sizeof g_temp) {
    std::memcpy(g_temp, temp.c_str(), temp.size() + 1);
    g_temp_live = 1;
  }
  return fd;
}

void temporary_gone() { g_temp_live = 0; }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

void check_writable(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) cannot_write(path, EISDIR);
  if (::access(path.c_str(), F_OK) == 0 && ::access(path.c_str(), W_OK) != 0) cannot_write(path, errno);
  std::string temp;
  ::close(open_temporary(path, temp));
  ::unlink(temp.c_str());
  temporary_gone();
}

void write_file(const std::string& path, const std::string& text) {
  // Written whole to a temporary, then renamed over the old file: a failure
  // midway (a full disk) leaves the old file as it was.
  std::string temp;
  int fd = open_temporary(path, temp);
  std::size_t done = 0;
  int error = 0;
  while (done < text.size() && !error) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno != EINTR) error = errno;
    else if (n > 0) done += std::size_t(n);
  }
  if (::close(fd) != 0 && !error) error = errno;
  // mkstemp makes the file private (0600); a table is as readable as any new file.
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (!error && ::chmod(temp.c_str(), 0666 & ~mask) != 0) error = errno;
  if (!error && std::rename(temp.c_str(), path.c_str()) != 0) error = errno;
  if (error) ::unlink(temp.c_str());
  temporary_gone();
  if (error) cannot_write(path, error);
}

}  // namespace netsor::cli
