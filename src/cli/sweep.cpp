#include "sweep.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "netsor/diagnostics.hpp"
#include "report.hpp"

namespace netsor::cli {

bool finite_number(const std::string& s, double& v) {
  std::size_t used = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == s.size() && std::isfinite(v);
}

namespace {

// A grid larger than this is a typo (a:b:k with k in the millions), not a plan.
constexpr std::size_t kMaxPoints = 10000;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

[[noreturn]] void bad(const std::string& name, const std::string& what) {
  throw UsageError("-D: the value of '" + name + "' " + what);
}

double number(const std::string& name, const std::string& text) {
  double v;
  if (!finite_number(text, v)) bad(name, "is not a finite number" + (text.empty() ? "" : ": '" + text + "'"));
  return v;
}

// a:b:k or a:b:k:log
std::vector<double> range(const std::string& name, const std::string& spec) {
  auto parts = split(spec, ':');
  bool log = parts.size() == 4 && parts[3] == "log";
  if (parts.size() != 3 && !log)
    bad(name, "is not a range: write FROM:TO:COUNT (e.g. 0.1:1:10) or FROM:TO:COUNT:log");
  double a = number(name, parts[0]), b = number(name, parts[1]), k = number(name, parts[2]);
  if (k != std::floor(k) || k < 2 || k > double(kMaxPoints))
    bad(name, "asks for " + parts[2] + " points: COUNT is a whole number from 2 to " + std::to_string(kMaxPoints));
  if (log && !(a > 0 && b > 0)) bad(name, "is a log range, which needs FROM and TO above 0");
  std::vector<double> v;
  for (int i = 0; i < int(k); ++i) {
    double t = double(i) / (k - 1);
    // Ends exact, so that 0.1:1:10 ends at 1 and not at 0.9999999999999999.
    v.push_back(i == 0 ? a : i + 1 == int(k) ? b : log ? a * std::pow(b / a, t) : a + (b - a) * t);
  }
  return v;
}

}  // namespace

std::size_t Sweep::size() const {
  std::size_t n = 1;
  for (const auto& a : axes) n *= a.values.size();
  return n;
}

std::vector<double> Sweep::values_at(std::size_t i) const {
  std::vector<double> v(axes.size());
  for (std::size_t k = axes.size(); k-- > 0;) {
    v[k] = axes[k].values[i % axes[k].values.size()];
    i /= axes[k].values.size();
  }
  return v;
}

std::map<std::string, double> Sweep::defines_at(std::size_t i) const {
  auto d = fixed;
  auto v = values_at(i);
  for (std::size_t k = 0; k < axes.size(); ++k) d[axes[k].name] = v[k];
  return d;
}

Sweep parse_defines(const std::vector<std::string>& defines) {
  Sweep s;
  auto seen = [&](const std::string& name) {
    if (s.fixed.count(name)) return true;
    for (const auto& a : s.axes)
      if (a.name == name) return true;
    return false;
  };
  for (const auto& d : defines) {
    auto eq = d.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError("-D: expected NAME=value, got '" + d + "'");
    std::string name = d.substr(0, eq), value = d.substr(eq + 1);
    if (seen(name)) throw UsageError("-D: '" + name + "' is given twice");
    if (value.find(',') != std::string::npos) {
      SweepAxis a{name, {}};
      for (const auto& item : split(value, ',')) a.values.push_back(number(name, item));
      s.axes.push_back(std::move(a));
    } else if (value.find(':') != std::string::npos) {
      s.axes.push_back({name, range(name, value)});
    } else {
      s.fixed[name] = number(name, value);
    }
    if (s.size() > kMaxPoints)
      throw UsageError("-D: the sweep has more than " + std::to_string(kMaxPoints) + " points");
  }
  return s;
}

namespace {

// "3:12: message" for a table cell: the first line of the diagnostic, without the file.
std::string short_error(const Diagnostic& d) {
  std::ostringstream o;
  if (d.loc.line > 0) o << d.loc.line << ":" << d.loc.col << ": ";
  o << d.message;
  return o.str();
}

struct Point {
  std::vector<double> at;
  bool ok = false;
  PointOutput out;
  Diagnostic error;
};

void print_table(std::ostream& o, const std::string& file, const std::string& command, const Sweep& s,
                 const std::vector<Point>& pts) {
  std::vector<std::string> cols;
  for (const auto& p : pts)
    for (const auto& [c, _] : p.out.cells)
      if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  std::vector<std::string> head;
  for (const auto& a : s.axes) head.push_back(a.name);
  head.insert(head.end(), cols.begin(), cols.end());
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : pts) {
    std::vector<std::string> r;
    for (double v : p.at) r.push_back(num(v, 6));
    if (p.ok) {
      for (const auto& c : cols) {
        auto it = std::find_if(p.out.cells.begin(), p.out.cells.end(), [&](const auto& x) { return x.first == c; });
        r.push_back(it == p.out.cells.end() ? "-" : it->second);
      }
    } else {
      r.push_back("refused: " + short_error(p.error));
    }
    rows.push_back(std::move(r));
  }
  std::vector<std::size_t> w(head.size());
  for (std::size_t k = 0; k < head.size(); ++k) w[k] = head[k].size();
  for (const auto& r : rows)
    for (std::size_t k = 0; k < r.size() && k < w.size(); ++k)
      if (k + 1 < r.size() || r.size() == head.size()) w[k] = std::max(w[k], r[k].size());
  std::ostringstream grid;
  for (std::size_t k = 0; k < s.axes.size(); ++k)
    grid << (k ? " x " : "") << s.axes[k].values.size() << " " << s.axes[k].name;
  o << file << ": " << command << " at " << pts.size() << " points (" << grid.str() << ")\n";
  auto line = [&](const std::vector<std::string>& r) {
    o << " ";
    for (std::size_t k = 0; k < r.size(); ++k) {
      bool last = k + 1 == r.size();
      o << " " << (last ? r[k] : r[k] + std::string(w[k] - r[k].size(), ' ')) << (k + 1 == s.axes.size() ? " |" : "");
    }
    o << "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
}

std::string csv_of(const Sweep& s, const std::vector<Point>& pts) {
  std::vector<std::string> cols;
  bool any_error = false;
  for (const auto& p : pts) {
    any_error |= !p.ok;
    for (const auto& [c, _] : p.out.csv)
      if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  }
  auto quote = [](const std::string& t) {
    std::string q = "\"";
    for (char ch : t) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  std::ostringstream o;
  o << std::setprecision(17);
  std::string sep;
  for (const auto& a : s.axes) o << std::exchange(sep, ",") << quote(a.name);
  for (const auto& c : cols) o << std::exchange(sep, ",") << quote(c);
  if (any_error) o << "," << "error";
  o << "\n";
  for (const auto& p : pts) {
    sep.clear();
    for (double v : p.at) o << std::exchange(sep, ",") << v;
    for (const auto& c : cols) {
      o << ",";
      auto it = std::find_if(p.out.csv.begin(), p.out.csv.end(), [&](const auto& x) { return x.first == c; });
      if (it != p.out.csv.end()) o << it->second;
    }
    if (any_error) o << "," << (p.ok ? "" : quote(short_error(p.error)));
    o << "\n";
  }
  return o.str();
}

}  // namespace

PointOutput limit_point(const std::string& file, const limit::Result& r) {
  PointOutput p{limit_table(file, r), limit_json(r), {}, {}};
  for (const auto& q : r.quantities) {
    const auto& e = q.estimate;
    p.cells.push_back({q.name, e.order < 0 ? "0 (n^" + num(e.order, 3) + ")" : num(e.value, 10) + " ± " + err(e.abs_error)});
    p.csv.push_back({q.name, e.value});
    p.csv.push_back({q.name + "_error", e.abs_error});
  }
  return p;
}

PointOutput run_point(const std::string& file, const exec::RunResult& r) {
  PointOutput p{run_table(file, r), run_json(r), {}, {}};
  for (const auto& q : r.quantities) {
    p.cells.push_back({q.name, num(q.mean, 8) + " ± " + err(q.sem)});
    p.csv.push_back({q.name, q.mean});
    p.csv.push_back({q.name + "_sem", q.sem});
  }
  return p;
}

PointOutput converge_point(const exec::ConvergeResult& r) {
  PointOutput p{"", converge_json(r), {}, {}};
  for (const auto& s : r.series) {
    // The limit, and how the largest width's runs approach it.
    std::string slope = std::isnan(s.slope) ? "" : ", slope " + num(s.slope, 2);
    p.cells.push_back({s.name, num(s.limit.value, 8) + ": " + s.verdict + slope});
    p.csv.push_back({s.name + "_limit", s.limit.value});
    p.csv.push_back({s.name + "_limit_error", s.limit.abs_error});
    if (!s.rows.empty()) {
      p.csv.push_back({s.name + "_mean", s.rows.back().mean});
      p.csv.push_back({s.name + "_sem", s.rows.back().sem});
    }
    p.csv.push_back({s.name + "_slope", s.slope});
  }
  return p;
}

int run_sweep(const std::string& file, const std::string& command, const Sweep& sweep, const FrontendOptions& base,
              const PointFn& fn, bool json, const std::string& csv_path) {
  bool tty = isatty(fileno(stderr)) && !sweep.axes.empty();
  std::vector<Point> pts(sweep.size());
  int failed = 0;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    Point& p = pts[i];
    p.at = sweep.values_at(i);
    if (tty) {
      std::cerr << "\rpoint " << i + 1 << "/" << pts.size() << " (";
      for (std::size_t k = 0; k < p.at.size(); ++k) std::cerr << (k ? ", " : "") << sweep.axes[k].name << "=" << p.at[k];
      std::cerr << ")" << std::string(10, ' ') << std::flush;
    }
    FrontendOptions o = base;
    o.defines = sweep.defines_at(i);
    try {
      p.out = fn(compile_file(file, o));
      p.ok = true;
    } catch (const ProgramError& e) {
      p.error = e.diagnostic();
      ++failed;
    }
  }
  if (tty) std::cerr << "\r" << std::string(78, ' ') << "\r" << std::flush;
  // The same error at every point is the program's, not the sweep's: shown alone.
  if (failed == (int)pts.size()) throw ProgramError(pts[0].error);
  if (sweep.axes.empty()) {
    std::cout << (json ? pts[0].out.json.dump(2) + "\n" : pts[0].out.text);
  } else if (json) {
    nlohmann::json j;
    j["command"] = command;
    j["axes"] = nlohmann::json::array();
    for (const auto& a : sweep.axes) j["axes"].push_back({{"name", a.name}, {"values", a.values}});
    j["fixed"] = sweep.fixed;
    j["points"] = nlohmann::json::array();
    for (std::size_t i = 0; i < pts.size(); ++i) {
      nlohmann::json q{{"defines", sweep.defines_at(i)}};
      if (pts[i].ok) q["result"] = pts[i].out.json;
      else q["error"] = {{"message", pts[i].error.message}, {"line", pts[i].error.loc.line},
                         {"col", pts[i].error.loc.col}, {"hint", pts[i].error.hint}};
      j["points"].push_back(std::move(q));
    }
    std::cout << j.dump(2) << "\n";
  } else {
    print_table(std::cout, file, command, sweep, pts);
  }
  std::cout.flush();
  if (!csv_path.empty()) write_file(csv_path, csv_of(sweep, pts));
  if (!failed) return 0;
  for (const auto& p : pts)
    if (!p.ok) {
      std::cerr << failed << " of " << pts.size() << " points refused; the first:\n" << format(p.error);
      break;
    }
  return 1;
}

}  // namespace netsor::cli
