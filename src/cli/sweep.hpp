// Sweeps: -D NAME=0.1,0.2,0.5 or -D NAME=0.1:1:10 runs a command once per value,
// several such -D make a grid, and the results come back as one table (text,
// CSV or JSON) with one row per point.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <vector>

#include "netsor/converge.hpp"
#include "netsor/exec.hpp"
#include "netsor/frontend.hpp"
#include "netsor/limit.hpp"
#include "netsor/ir.hpp"

namespace netsor::cli {

// The whole of s is a finite decimal number (not nan, inf or 1e999).
bool finite_number(const std::string& s, double& v);

struct SweepAxis {
  std::string name;
  std::vector<double> values;
};

// The -D options: constants fixed at one value, and the axes of a grid.
struct Sweep {
  std::map<std::string, double> fixed;
  std::vector<SweepAxis> axes;  // in the order given; the first varies slowest
  std::size_t size() const;     // grid points (1 without axes)
  std::vector<double> values_at(std::size_t i) const;
  std::map<std::string, double> defines_at(std::size_t i) const;
};

// Parses NAME=VALUE, NAME=a,b,c (a list), NAME=a:b:k (k points from a to b,
// evenly spaced) and NAME=a:b:k:log (geometrically spaced). Throws UsageError.
Sweep parse_defines(const std::vector<std::string>& defines);

// What a command gives for one point of the grid.
struct PointOutput {
  std::string text;                                        // the command's own table (without a sweep)
  nlohmann::json json;                                     // the command's own JSON
  std::vector<std::pair<std::string, std::string>> cells;  // column, text
  std::vector<std::pair<std::string, double>> csv;         // column, number
};
using PointFn = std::function<PointOutput(const ir::Program&)>;

// One point of each command: its table, its JSON, a cell and CSV columns per report.
PointOutput limit_point(const std::string& file, const limit::Result& r);
PointOutput run_point(const std::string& file, const exec::RunResult& r);
PointOutput converge_point(const exec::ConvergeResult& r);

// Compiles the program at every point and runs `fn` on it; prints one table
// (or JSON) to stdout and writes `csv_path` if given. Without axes it prints the
// command's own output (and still writes the one-row CSV). A point the program or
// its limit refuses becomes a row saying why; the others still run. Returns
// the exit status: 0 when every point ran, else 1 (and the first refusal is
// shown in full on stderr).
int run_sweep(const std::string& file, const std::string& command, const Sweep& sweep, const FrontendOptions& base,
              const PointFn& fn, bool json, const std::string& csv_path);

}  // namespace netsor::cli
