// netsor coordcheck: the coordinate check of muP practice (mup's get_coord_data)
// for any tensor program: each vector's typical coordinate size at growing
// widths, its fitted exponent, and the exponent the order analysis of the
// limit pass predicts, side by side.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "netsor/ir.hpp"

namespace netsor::cli {

struct CoordOptions {
  std::vector<std::int64_t> widths{256, 512, 1024, 2048};
  int seeds = 4;
  std::uint64_t seed = 0;
  int threads = 0;
  std::vector<std::string> only;  // vector names or base names (h selects h[1], h[2][0]...); empty: all
  int step_index = 0;             // which bracket index of a name counts steps (1-based); 0: one panel
  std::function<void(const std::string&)> progress;
};

struct CoordSeries {
  std::string name;
  std::string panel;                 // "step 1", or "" with no step index
  std::vector<double> rms, rms_sem;  // per width: mean over seeds of sqrt(avg(x^2)), its standard error
  std::vector<double> mean_abs;      // per width: mean over seeds of avg(|x|)
  double fitted = 0, fitted_se = 0;  // d log(rms) / d log(width), and its standard error from the seeds
  bool fitted_ok = false;            // false when some rms is 0 (nothing to fit)
  double predicted = 0;              // the order analysis: rms ~ n^predicted
  bool predicted_ok = false;
  bool predicted_zero = false;       // zero at every order
  std::string unpredicted;           // why there is no prediction
  bool disagree = false;
};

struct CoordResult {
  std::vector<std::int64_t> widths;
  int seeds = 0;
  double tolerance = 0;  // the part of the disagreement threshold not from the seeds
  std::vector<CoordSeries> series;
};

CoordResult coordcheck(const ir::Program& p, const CoordOptions& o);
std::string coordcheck_table(const std::string& file, const CoordResult& r);
nlohmann::json coordcheck_json(const CoordResult& r);
// Log-log size against width, one panel per step, the predicted slope dashed.
std::string coordcheck_svg(const CoordResult& r, const std::string& title);

// The subcommand: add_coordcheck registers its own flags on `app` (the caller
// adds the file, --json and -D, as for every command); run_coordcheck prints the
// table or JSON and writes the plot.
struct CoordCommand {
  CLI::App* sub = nullptr;
  CoordOptions options;
  std::string plot;
};
CLI::App* add_coordcheck(CLI::App& app, CoordCommand& c);
void run_coordcheck(const CoordCommand& c, const std::string& file, bool json, const ir::Program& p);

}  // namespace netsor::cli
