// The executor's schedule and memory model (executor.cpp runs it): the
// instructions grouped by dependency level, products by one matrix batched,
// matrices stored or streamed, and the peak memory of one seed computed from
// the schedule before anything is allocated. Internal to src/exec.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "netsor/ir.hpp"

namespace netsor::exec {

constexpr int kPanel = 512;  // columns generated at once for a streamed product of more than kThin vectors
constexpr int kThin = 16;    // at most this many vectors: the fused kernels

// Instructions of one level that run together: products by one matrix (and
// one side) as a block, the others one by one.
struct Group {
  ir::Op op;
  ir::VarId matrix = -1;  // MatMul groups
  bool transposed = false;
  std::vector<int> instrs;
};

struct Schedule {
  std::vector<std::vector<Group>> levels;
  std::vector<int> level_of;             // per instruction
  std::vector<int> last_use;             // per var: last level reading it (-1: none)
  std::map<ir::VarId, std::pair<int, int>> matrix_span;  // first and last level using each matrix
  std::map<ir::VarId, int> groups_using;                 // batched products per matrix
  // A Gaussian matrix used by a single batched product is never stored: it is
  // generated a block of columns at a time and multiplied in (streamed).
  // So is one in `forced`: chosen by plan_memory only when storing it would
  // not fit in memory (each product and operator application then generates it again).
  bool streamed(const ir::Program& p, ir::VarId m) const;
  std::set<ir::VarId> forced;
  // netsor spectrum's work after the program: see Options::spectrum_work.
  std::function<std::pair<double, bool>(std::int64_t)> spectrum_work;
};

// What an instruction reads.
std::vector<ir::VarId> operands(const ir::Program& p, const ir::Instr& in);
Schedule make_schedule(const ir::Program& p);
// The peak bytes of one seed at width n, following SeedRun level by level.
double peak_of(const ir::Program& p, const Schedule& s, std::int64_t n, bool f32);
// The peak after streaming Gaussian matrices, largest first, until it fits
// within `limit`: each product or application then generates its matrix
// again (the same entries), trading normals for memory. Sets s.forced.
double plan_memory(const ir::Program& p, Schedule& s, std::int64_t width, bool float32, std::size_t limit);

}  // namespace netsor::exec
