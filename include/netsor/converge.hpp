// Convergence checking: the executor at growing widths beside the limit pass.
#pragma once

#include <string>
#include <vector>

#include "netsor/exec.hpp"
#include "netsor/limit.hpp"

namespace netsor::exec {

struct ConvergeOptions {
  std::vector<std::int64_t> widths{256, 512, 1024, 2048, 4096, 8192};
  // seeds (at the largest width), seed, threads, float32, memory limit. A
  // smaller width n runs seeds * min(8, n_max / n) seeds: its runs are cheaper
  // (cost ~ n^2) and more seeds there steady the fitted rate.
  Options run;
  bool more_seeds_when_small = true;
  limit::Options limit;
  std::function<void(std::int64_t width, int done, int total)> progress;
};

struct Row {
  std::int64_t width = 0;
  int seeds = 0;
  double mean = 0, sem = 0;
  double error = 0;  // |mean - limit|, or |mean - c n^e| for a quantity vanishing like c n^e
  double rmse = 0;   // sqrt(mean over seeds of (value - limit)^2): the typical error of one run
};

struct Series {
  std::string name;
  limit::Estimate limit;
  std::vector<Row> rows;
  double slope = 0;         // fitted d log(rmse) / d log(width); about -1/2 when converging
  double growth = 0;        // fitted d log|mean| / d log(width) (the rate of a vanishing quantity)
  std::string verdict;      // "converging", "not converging", "within noise", "exact", "unstable ..."
};

struct ConvergeResult {
  std::vector<std::int64_t> widths;  // those that ran
  std::vector<std::string> notes;    // widths skipped (memory) and why
  int seeds = 0;  // at the largest width
  std::vector<Series> series;
};

ConvergeResult converge(const ir::Program& p, const ConvergeOptions& o);

// The predicted wall time of run(p, o), in seconds, from pilot runs of one seed
// at two small widths fitted to a + b n^2 (the matrices' entries dominate) and
// scaled to o.width, o.seeds and the seeds that run at once (a width of at
// most 1024 is simply timed). The pilots cost about three seeds at n = 1024.
double predicted_seconds(const ir::Program& p, const Options& o);
// The same for the runs of converge (the limit pass not included).
double predicted_seconds(const ir::Program& p, const ConvergeOptions& o);

}  // namespace netsor::exec
