// netsor coordcheck (coordcheck.hpp). The measurement runs the program with two
// moments added per vector, avg(x^2) and avg(|x|). The prediction asks the limit
// pass's order analysis for the order of avg(x^2) of every vector; where the
// analysis refuses a growing vector (an unstable program), that vector's order
// is measured by the same analysis on a probe, the vector is divided by its
// growth n^k (and n^k multiplied back where it is used), and the analysis goes
// on past it. It stops, naming why, where it cannot go on (a nonlinearity of a
// growing argument, a fluctuation-scale quantity).
#include "coordcheck.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <optional>
#include <sstream>
#include <unistd.h>

#include "netsor/exec.hpp"
#include "netsor/limit.hpp"
#include "report.hpp"

namespace netsor::cli {
namespace {

constexpr double kProbeShift = 8;  // the probe divides avg(x^2) by n^(2 * this): growth up to n^8 is seen
// Disagreement: |fitted - predicted| > this + 3 standard errors (from the seeds). The
// rest covers lower-order terms, which bend the log-log line at moderate widths.
constexpr double kTolerance = 0.1;

bool is_vector(const ir::Var& v) { return (v.kind == ir::VarKind::G || v.kind == ir::VarKind::H) && v.def >= 0; }

// Appends a scalar defined by a new instruction; returns its id.
ir::VarId add_scalar(ir::Program& q, const std::string& name, ir::Op op, Expr e, SourceLoc loc) {
  ir::Var v;
  v.name = name;
  v.kind = ir::VarKind::Scalar;
  v.def = (int)q.instrs.size();
  v.loc = loc;
  q.vars.push_back(v);
  ir::Instr in;
  in.op = op;
  in.out = (ir::VarId)q.vars.size() - 1;
  in.expr = std::move(e);
  in.loc = loc;
  q.instrs.push_back(in);
  return in.out;
}

// The first `prefix` instructions of q, no reports of its own, and a report of
// avg(x^2) (and avg(|x|) when `abs`) per vector x defined there, in the order of
// `vectors` (reports 2i and 2i+1 with abs, else i).
ir::Program with_moments(const ir::Program& q, std::size_t prefix, const std::vector<ir::VarId>& vectors, bool abs) {
  ir::Program r = q;
  r.instrs.resize(std::min(prefix, r.instrs.size()));
  for (auto& v : r.vars)
    if (v.def >= (int)r.instrs.size()) v.def = -1;
  r.reports.clear();
  for (ir::VarId x : vectors) {
    if (r.vars[x].def < 0) continue;
    const SourceLoc loc = r.vars[x].loc;  // a copy: add_scalar grows r.vars
    const std::string name = r.vars[x].name;
    ir::VarId s = add_scalar(r, "rms2(" + name + ")", ir::Op::Moment, mul(var(x), var(x)), loc);
    r.reports.push_back({r.vars[s].name, s, loc});
    if (!abs) continue;
    ir::VarId a = add_scalar(r, "abs(" + name + ")", ir::Op::Moment, call(Fn::Abs, var(x)), loc);
    r.reports.push_back({r.vars[a].name, a, loc});
  }
  return r;
}

// The program with vector x divided by n^own[x] where it is defined and
// multiplied back where it is used (only Nonlin vectors are divided; a product
// W x carries its argument's factor). scale[x] receives each vector's factor.
// Instruction 0 of the result defines `n` (the width), so indices shift by one.
ir::Program rescaled(const ir::Program& p, const std::map<ir::VarId, double>& own, std::vector<double>& scale,
                     ir::VarId& width_var) {
  ir::Program q = p;
  scale.assign(p.vars.size(), 0.0);
  q.instrs.clear();
  ir::Var n;
  n.name = "n";
  n.kind = ir::VarKind::Scalar;
  n.def = 0;
  q.vars.push_back(n);
  width_var = (ir::VarId)q.vars.size() - 1;
  ir::Instr w;
  w.op = ir::Op::Width;
  w.out = width_var;
  w.member = 0;
  q.instrs.push_back(w);
  auto times_power = [&](double k, Expr e) { return k == 0 ? e : mul(pow(var(width_var), constant(k)), e); };
  for (const auto& in0 : p.instrs) {
    ir::Instr in = in0;
    if (in.op == ir::Op::MatMul) scale[in.out] = scale[in.arg];
    if (in.op == ir::Op::Nonlin || in.op == ir::Op::Moment || in.op == ir::Op::Scalar) {
      in.expr = substitute(in.expr, [&](int id) { return times_power(id < (int)scale.size() ? scale[id] : 0, var(id)); });
      auto it = own.find(in.out);
      if (in.op == ir::Op::Nonlin && it != own.end()) {
        in.expr = times_power(-it->second, in.expr);
        scale[in.out] = it->second;
      }
    }
    q.instrs.push_back(in);
  }
  for (auto& v : q.vars)
    if (v.def >= 0 && &v != &q.vars[width_var]) v.def += 1;
  return q;
}

limit::Options order_options() {
  limit::Options o;
  o.tol = 1e-8;  // only orders are wanted; values need not be sharp
  o.propagation = limit::Propagation::Bound;
  return o;
}

std::optional<limit::Result> try_limit(const ir::Program& q, std::string* why = nullptr) {
  try {
    return limit::compute(q, order_options());
  } catch (const ProgramError& e) {
    if (why) *why = e.diagnostic().message;
    return std::nullopt;
  }
}

// The growth exponent k of the vector instruction q.instrs[at] (whose inputs
// the analysis accepts): avg(phi^2) n^(-2 shift) vanishes like n^(2k - 2 shift).
std::optional<double> probe_growth(const ir::Program& q, std::size_t at, ir::VarId width_var) {
  ir::Program r = with_moments(q, at, {}, false);
  const auto& in = q.instrs[at];
  ir::VarId m = add_scalar(r, "probe", ir::Op::Moment, mul(in.expr, in.expr), in.loc);
  ir::VarId s = add_scalar(r, "probe.scaled", ir::Op::Scalar,
                           mul(var(m), pow(var(width_var), constant(-2 * kProbeShift))), in.loc);
  r.reports.push_back({"probe", s, in.loc});
  auto res = try_limit(r);
  if (!res || res->quantities[0].estimate.order >= 0) return std::nullopt;
  return res->quantities[0].estimate.order / 2 + kProbeShift;
}

}  // namespace

namespace {

struct Prediction {
  std::vector<std::optional<double>> order;  // by VarId: rms ~ n^order (-inf: zero at every order)
  std::vector<std::string> why;              // by VarId, where there is no order
};

// Records the order of every vector in `vectors` that has a report in res
// (with_moments(..., abs = false) numbering), plus its division factor.
void record(const limit::Result& res, const ir::Program& q, const std::vector<ir::VarId>& vectors,
            const std::vector<double>& scale, Prediction& out) {
  std::size_t k = 0;
  for (ir::VarId x : vectors) {
    if (q.vars[x].def < 0 || k >= res.quantities.size()) continue;
    const auto& e = res.quantities[k++].estimate;
    double o = e.order < 0 ? e.order / 2 : e.value == 0 && e.abs_error == 0 ? -INFINITY : 0.0;
    out.order[x] = o + scale[x];
  }
}

// The largest prefix of q's instructions whose vectors the analysis accepts
// (q as a whole is refused): bisection, the analysis walking in program order.
std::size_t accepted_prefix(const ir::Program& q, const std::vector<ir::VarId>& vectors, std::string& why,
                            std::optional<limit::Result>& accepted) {
  std::size_t lo = 1, hi = q.instrs.size();  // prefix lo is accepted (it only defines n), hi is not
  accepted = try_limit(with_moments(q, lo, vectors, false));
  while (hi - lo > 1) {
    std::size_t mid = (lo + hi) / 2;
    std::string w;
    auto r = try_limit(with_moments(q, mid, vectors, false), &w);
    if (r) lo = mid, accepted = std::move(r);
    else hi = mid, why = w;
  }
  if (why.empty()) try_limit(with_moments(q, hi, vectors, false), &why);
  return lo;
}

// "... grow like n^0.5 ...": the exponent the analysis names when it refuses
// a growing vector (its only report of an order it cannot carry on with).
std::optional<double> growth_in_message(const std::string& why) {
  auto at = why.find("grow like n^");
  if (at == std::string::npos) return std::nullopt;
  try {
    return std::stod(why.substr(at + 12));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

Prediction predict(const ir::Program& p, const std::vector<ir::VarId>& vectors,
                   const std::function<void(const std::string&)>& progress) {
  Prediction out;
  out.order.resize(p.vars.size());
  out.why.resize(p.vars.size());
  std::map<ir::VarId, double> own;
  for (std::size_t round = 0; round <= vectors.size(); ++round) {
    std::vector<double> scale;
    ir::VarId n = -1;
    ir::Program q = rescaled(p, own, scale, n);
    if (progress) progress("coordcheck: order analysis" + std::string(round ? ", past a growing vector" : ""));
    std::string why;
    if (auto all = try_limit(with_moments(q, q.instrs.size(), vectors, false), &why)) {
      record(*all, q, vectors, scale, out);
      return out;
    }
    std::optional<limit::Result> accepted;
    std::size_t at = accepted_prefix(q, vectors, why, accepted);
    const auto& in = q.instrs[at];
    std::optional<double> k;
    if (in.op == ir::Op::Nonlin && is_vector(q.vars[in.out])) k = probe_growth(q, at, n);
    if (k && *k > 1e-9) {  // a deterministic growth: divide it out and go on
      own[in.out] += *k;
      continue;
    }
    // The analysis stops here: what it accepted keeps its orders, the rest is
    // explained. A vector refused as growing with a random coefficient (SP
    // after a step: the output is a fluctuation) still has the exponent the
    // refusal names.
    ir::Program pre = with_moments(q, at, {}, false);
    if (accepted) record(*accepted, pre, vectors, scale, out);
    if (auto g = growth_in_message(why); g && is_vector(q.vars[in.out])) out.order[in.out] = *g + scale[in.out];
    for (ir::VarId x : vectors)
      if (!out.order[x]) out.why[x] = "the order analysis stops at '" + q.vars[in.out].name + "': " + why;
    return out;
  }
  return out;
}

// Copies (y = x) and products (y = W x) have their argument's order: the
// analysis's own rule, applied where it stopped before reaching them.
void inherit_orders(const ir::Program& p, Prediction& out) {
  for (const auto& in : p.instrs) {
    if (!is_vector(p.vars[in.out]) || out.order[in.out]) continue;
    ir::VarId from = in.op == ir::Op::MatMul ? in.arg
                     : in.op == ir::Op::Nonlin && in.expr->op == ExprOp::Var ? (ir::VarId)in.expr->var
                                                                             : -1;
    if (from < 0 || !out.order[from]) continue;
    out.order[in.out] = out.order[from];
    out.why[in.out].clear();
  }
}

}  // namespace

namespace {

// "h[2][1][1]" -> {"2", "1", "1"}; the base name "h" into base.
std::vector<std::string> indices_of(const std::string& name, std::string* base = nullptr) {
  std::vector<std::string> out;
  std::size_t at = name.find('[');
  if (base) *base = name.substr(0, at);
  while (at != std::string::npos) {
    std::size_t close = name.find(']', at);
    if (close == std::string::npos) break;
    out.push_back(name.substr(at + 1, close - at - 1));
    at = name.find('[', close);
  }
  return out;
}

bool selected(const std::string& name, const std::vector<std::string>& only) {
  if (only.empty()) return true;
  std::string base;
  indices_of(name, &base);
  return std::find(only.begin(), only.end(), name) != only.end() ||
         std::find(only.begin(), only.end(), base) != only.end();
}

// Least squares of log rms against log width, with the standard error the
// seeds give it (delta method: sd of log rms = sem / rms at each width).
void fit(const std::vector<std::int64_t>& widths, CoordSeries& s) {
  std::size_t k = widths.size();
  s.fitted_ok = k >= 2 && std::all_of(s.rms.begin(), s.rms.end(), [](double v) { return v > 0 && std::isfinite(v); });
  if (!s.fitted_ok) return;
  double mx = 0, my = 0, sxx = 0, sxy = 0, var = 0;
  for (std::size_t i = 0; i < k; ++i) mx += std::log(double(widths[i])) / k, my += std::log(s.rms[i]) / k;
  for (std::size_t i = 0; i < k; ++i) {
    double dx = std::log(double(widths[i])) - mx;
    sxx += dx * dx;
    sxy += dx * (std::log(s.rms[i]) - my);
  }
  for (std::size_t i = 0; i < k; ++i) {
    double c = (std::log(double(widths[i])) - mx) / sxx, rel = s.rms_sem[i] / s.rms[i];
    var += c * c * rel * rel;
  }
  s.fitted = sxy / sxx;
  s.fitted_se = std::sqrt(var);
}

void measure(const ir::Program& p, const std::vector<ir::VarId>& vectors, const CoordOptions& o, CoordResult& r) {
  ir::Program m = with_moments(p, p.instrs.size(), vectors, true);
  for (auto w : o.widths) {
    if (o.progress) o.progress("coordcheck: width " + std::to_string(w));
    exec::Options eo;
    eo.width = w;
    eo.seeds = o.seeds;
    eo.seed = o.seed;
    eo.threads = o.threads;
    auto run = exec::run(m, eo);
    for (std::size_t i = 0; i < vectors.size(); ++i) {
      const auto& sq = run.quantities[2 * i].per_seed;
      double sum = 0, sum2 = 0;
      for (double v : sq) sum += std::sqrt(std::max(v, 0.0)), sum2 += std::max(v, 0.0);
      double k = sq.size(), mean = sum / k, var = k > 1 ? std::max(0.0, (sum2 - k * mean * mean) / (k - 1)) : 0;
      r.series[i].rms.push_back(mean);
      r.series[i].rms_sem.push_back(std::sqrt(var / k));
      r.series[i].mean_abs.push_back(run.quantities[2 * i + 1].mean);
    }
  }
}

}  // namespace

CoordResult coordcheck(const ir::Program& p, const CoordOptions& o) {
  std::vector<ir::VarId> all, vectors;  // in program order; those checked
  for (const auto& in : p.instrs)
    if (is_vector(p.vars[in.out])) all.push_back(in.out);
  std::copy_if(all.begin(), all.end(), std::back_inserter(vectors),
               [&](ir::VarId v) { return selected(p.vars[v].name, o.only); });
  if (vectors.empty())
    throw UsageError(o.only.empty() ? "the program has no vectors to check" : "--only names no vector of the program");
  CoordResult r;
  r.widths = o.widths;
  r.seeds = o.seeds;
  r.tolerance = kTolerance;
  for (ir::VarId x : vectors) {
    CoordSeries s;
    s.name = p.vars[x].name;
    auto idx = indices_of(s.name);
    if (o.step_index > 0) s.panel = (int)idx.size() >= o.step_index ? "step " + idx[o.step_index - 1] : "no step";
    r.series.push_back(s);
  }
  Prediction pred = predict(p, all, o.progress);
  inherit_orders(p, pred);
  measure(p, vectors, o, r);
  if (o.progress) o.progress("");
  for (std::size_t i = 0; i < vectors.size(); ++i) {
    auto& s = r.series[i];
    fit(r.widths, s);
    const auto& k = pred.order[vectors[i]];
    s.predicted_ok = k.has_value();
    s.predicted_zero = k && std::isinf(*k);
    s.predicted = k && !s.predicted_zero ? *k : 0;
    s.unpredicted = pred.why[vectors[i]];
    if (s.predicted_zero) s.disagree = *std::max_element(s.rms.begin(), s.rms.end()) > 0;
    else if (s.predicted_ok && s.fitted_ok) s.disagree = std::abs(s.fitted - s.predicted) > kTolerance + 3 * s.fitted_se;
  }
  return r;
}

namespace {
std::string fmt(double v, int prec) {
  std::ostringstream s;
  s << std::setprecision(prec) << v;
  return s.str();
}

std::string fixed(double v, int prec) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << (v == 0 ? 0.0 : v);  // no "-0.00"
  return s.str();
}

std::string predicted_text(const CoordSeries& s) {
  return s.predicted_zero ? "zero" : s.predicted_ok ? fixed(s.predicted, 2) : "-";
}
}  // namespace

std::string coordcheck_table(const std::string& file, const CoordResult& r) {
  std::ostringstream o;
  std::size_t w = 6;
  for (const auto& s : r.series) w = std::max(w, s.name.size());
  o << file << ": rms of the coordinates of every vector, " << r.seeds << " seed" << (r.seeds == 1 ? "" : "s")
    << " per width; exponent fitted to log rms vs log width beside the order analysis'\n";
  o << "  " << std::left << std::setw(w) << "vector" << std::right;
  for (auto width : r.widths) o << std::setw(11) << ("n=" + std::to_string(width));
  o << std::setw(12) << "mean|x|" << std::setw(16) << "fitted" << std::setw(11) << "predicted" << "\n";
  std::vector<std::string> reasons;
  std::string panel = "\x01";
  for (const auto& s : r.series) {
    if (s.panel != panel && !s.panel.empty()) o << "  -- " << s.panel << "\n";
    panel = s.panel;
    o << "  " << std::left << std::setw(w) << s.name << std::right;
    for (double v : s.rms) o << std::setw(11) << fmt(v, 4);
    o << std::setw(12) << fmt(s.mean_abs.back(), 4);
    o << std::setw(16) << (s.fitted_ok ? fixed(s.fitted, 2) + " ± " + fixed(s.fitted_se, 2) : "n/a");
    std::string pred = predicted_text(s);
    if (!s.predicted_ok && !s.unpredicted.empty()) {
      auto it = std::find(reasons.begin(), reasons.end(), s.unpredicted);
      if (it == reasons.end()) it = reasons.insert(it, s.unpredicted);
      pred += " (" + std::to_string(it - reasons.begin() + 1) + ")";
    }
    o << std::setw(11) << pred << (s.disagree ? "   <- disagree" : "") << "\n";
  }
  for (std::size_t i = 0; i < reasons.size(); ++i) o << "  (" << i + 1 << ") " << reasons[i] << "\n";
  o << "  disagree: |fitted - predicted| > " << fmt(r.tolerance, 2)
    << " + 3 standard errors of the fit (from the spread over seeds)\n";
  return o.str();
}

nlohmann::json coordcheck_json(const CoordResult& r) {
  using nlohmann::json;
  json j{{"widths", r.widths}, {"seeds", r.seeds}, {"tolerance", r.tolerance}, {"vectors", json::array()}};
  for (const auto& s : r.series) {
    json v{{"name", s.name}, {"rms", s.rms}, {"rms_sem", s.rms_sem}, {"mean_abs", s.mean_abs},
           {"fitted", s.fitted_ok ? json(s.fitted) : json(nullptr)},
           {"fitted_se", s.fitted_ok ? json(s.fitted_se) : json(nullptr)},
           {"predicted", s.predicted_ok && !s.predicted_zero ? json(s.predicted) : json(nullptr)},
           {"disagree", s.disagree}};
    if (!s.panel.empty()) v["panel"] = s.panel;
    if (s.predicted_zero) v["predicted_zero"] = true;
    if (!s.unpredicted.empty()) v["unpredicted"] = s.unpredicted;
    j["vectors"].push_back(v);
  }
  return j;
}

}  // namespace netsor::cli

namespace netsor::cli {

CLI::App* add_coordcheck(CLI::App& app, CoordCommand& c) {
  auto* sub = app.add_subcommand(
      "coordcheck", "coordinate check: each vector's rms size over widths, fitted exponent beside the predicted one");
  auto& o = c.options;
  sub->add_option("--widths", o.widths, "widths to run")
      ->delimiter(',')
      ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 40))
      ->capture_default_str();
  sub->add_option("--seeds", o.seeds, "seeds per width")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--seed", o.seed, "base seed")->capture_default_str();
  sub->add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
  sub->add_option("--only", o.only, "check only these vectors (names, or base names: h selects h[1], h[2]...)");
  sub->add_option("--step-index", o.step_index,
                  "the bracket index of a vector's name that counts steps, one plot panel each "
                  "(2 for stdlib/sgd_mlp.tp's h[l][t][j])")
      ->check(CLI::Range(1, 64));
  sub->add_option("--plot", c.plot, "write the log-log plot of size against width (SVG)");
  c.sub = sub;
  return sub;
}

void run_coordcheck(const CoordCommand& c, const std::string& file, bool json, const ir::Program& p) {
  if (!c.plot.empty()) check_writable(c.plot);
  auto o = c.options;
  if (o.widths.size() < 2) throw CLI::ValidationError("--widths", "give at least two widths to fit an exponent");
  std::sort(o.widths.begin(), o.widths.end());
  o.widths.erase(std::unique(o.widths.begin(), o.widths.end()), o.widths.end());
  bool tty = isatty(fileno(stderr));
  o.progress = [tty](const std::string& what) {
    if (tty) std::cerr << "\r" << what << std::string(30, ' ') << (what.empty() ? "\r" : "") << std::flush;
  };
  auto r = coordcheck(p, o);
  if (json) std::cout << coordcheck_json(r).dump(2) << "\n";
  else std::cout << coordcheck_table(file, r);
  std::cout.flush();
  if (!c.plot.empty()) write_file(c.plot, coordcheck_svg(r, file));
}

}  // namespace netsor::cli
