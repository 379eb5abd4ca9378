// The executor's schedule and memory model (schedule.hpp).
#include "schedule.hpp"

#include <algorithm>

#include "netsor/operators.hpp"
#include "operator_engine.hpp"

namespace netsor::exec {

using ir::Op;
using ir::VarId;

bool Schedule::streamed(const ir::Program& p, VarId m) const {
  if (p.matrix_of(m).dist != ir::MatrixDist::Gaussian) return false;
  auto g = groups_using.find(m);
  return forced.count(m) || (g != groups_using.end() && g->second == 1);
}

std::vector<VarId> operands(const ir::Program& p, const ir::Instr& in) {
  if (in.op == Op::MatMul) return {in.arg};
  if (in.op == Op::Init || in.op == Op::Width) return {};
  if (in.op == Op::Apply || in.op == Op::Trace) return operator_operands(p, in);
  return free_vars(in.expr);
}

Schedule make_schedule(const ir::Program& p) {
  Schedule s;
  s.level_of.assign(p.instrs.size(), 0);
  s.last_use.assign(p.vars.size(), -1);
  int top = 0;
  for (std::size_t i = 0; i < p.instrs.size(); ++i) {
    int lv = 0;
    for (VarId v : operands(p, p.instrs[i]))
      if (p.vars[v].def >= 0) lv = std::max(lv, s.level_of[p.vars[v].def] + 1);
    s.level_of[i] = lv;
    top = std::max(top, lv);
  }
  s.levels.resize(top + 1);
  for (std::size_t i = 0; i < p.instrs.size(); ++i) {
    const auto& in = p.instrs[i];
    int lv = s.level_of[i];
    for (VarId v : operands(p, in)) s.last_use[v] = std::max(s.last_use[v], lv);
    auto& groups = s.levels[lv];
    Group* g = nullptr;
    if (in.op == Op::MatMul) {
      auto& span = s.matrix_span.try_emplace(in.matrix, lv, lv).first->second;
      span.first = std::min(span.first, lv);
      span.second = std::max(span.second, lv);
      for (auto& cand : groups)
        if (cand.op == Op::MatMul && cand.matrix == in.matrix && cand.transposed == in.transposed) g = &cand;
    }
    if (!g) {
      groups.push_back({in.op, in.op == Op::MatMul ? in.matrix : -1, in.transposed, {}});
      g = &groups.back();
    }
    g->instrs.push_back((int)i);
  }
  for (const auto& groups : s.levels)
    for (const auto& g : groups)
      if (g.op == Op::MatMul) s.groups_using[g.matrix]++;
  for (const auto& sp : p.spectra)  // what `spectrum` operators read lives to the end
    for (VarId v : ir::op_leaves(p, sp.node)) s.last_use[v] = top + 1;  // past the last level: never released
  // Within a level: initial vectors, then products, then the rest in program order.
  for (auto& groups : s.levels)
    std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
      auto rank = [](Op o) { return o == Op::Init ? 0 : o == Op::MatMul ? 1 : 2; };
      return rank(a.op) < rank(b.op);
    });
  return s;
}

namespace {

// Sizes in bytes are doubles in the memory model: exact below 2^53 bytes, and
// a width such as 2^31 (an n x n matrix of 2^65 bytes) cannot overflow them.
double vector_bytes(const ir::Program& p, VarId v, std::int64_t n) {
  const auto& var = p.vars[v];
  if (var.kind == ir::VarKind::Scalar) return 0;
  return double(dim_size(p, var.rows, n)) * sizeof(double);
}

double matrix_bytes(const ir::Program& p, VarId m, std::int64_t n, bool f32) {
  const auto& var = p.vars[m];
  return double(dim_size(p, var.rows, n)) * double(dim_size(p, var.cols, n)) * (f32 ? 4 : 8);
}

}  // namespace

// The peak of one seed, following SeedRun level by level: live vectors, live
// stored matrices, the storage of released matrices kept for a later one of
// the same shape (SeedRun::release), the tape's registers (kept by each thread
// once allocated, src/ir/tape.cpp), and each group's temporaries.
double peak_of(const ir::Program& p, const Schedule& s, std::int64_t n, bool f32) {
  const double word = f32 ? 4 : 8;
  auto shape = [&](VarId m) {
    return std::pair{dim_size(p, p.vars[m].rows, n), dim_size(p, p.vars[m].cols, n)};
  };
  double live = 0, peak = 0, tape = 0;
  std::multimap<std::pair<std::int64_t, std::int64_t>, double> pool;  // spare storage by shape
  auto pooled = [&] {
    double b = 0;
    for (const auto& e : pool) b += e.second;
    return b;
  };
  // An operator's stored matrices stay with the seed's operators from their
  // first use to the seed's end (in double, whatever the precision).
  std::set<VarId> resident;
  auto hold = [&](int node) {
    for (VarId m : ir::op_matrices(p, node))
      if (!s.forced.count(m) && resident.insert(m).second) live += matrix_bytes(p, m, n, false);
    return double(operator_workspace(p, node, n, s.forced));
  };
  for (std::size_t lv = 0; lv < s.levels.size(); ++lv) {
    double staging = 0;
    for (const auto& [m, span] : s.matrix_span) {
      if (span.first != (int)lv || s.streamed(p, m)) continue;
      auto spare = pool.find(shape(m));
      if (spare != pool.end()) pool.erase(spare);  // its storage is reused
      live += matrix_bytes(p, m, n, f32);
      // A Haar matrix: the QR of a Gaussian one in double, its Q, and the scaled copy.
      if (p.matrix_of(m).dist == ir::MatrixDist::Orthogonal)
        staging = std::max(staging, 3 * double(shape(m).first) * double(shape(m).second) * 8);
    }
    for (const auto& g : s.levels[lv]) {
      double out = 0;
      for (int i : g.instrs) out += vector_bytes(p, p.instrs[i].out, n);
      live += out;
      if (g.op == Op::MatMul) {
        // X in double and at the matrix's precision, the product at that
        // precision and in double (the outputs are counted in `live`); panels
        // of kPanel columns beyond kThin vectors.
        const auto [rows, cols] = shape(g.matrix);
        double k = double(g.instrs.size());
        const double in = double(g.transposed ? rows : cols) * k * 8;
        double temp = in + (in + out) * word / 8;
        if (s.streamed(p, g.matrix) && k > kThin) temp += double(rows) * double(std::min<std::int64_t>(kPanel, cols)) * word;
        staging = std::max(staging, temp);
      } else if (g.op == Op::Init) {
        // The family's normals and their transform (an inner dimension of k:
        // Eigen evaluates it in place).
        staging = std::max(staging, 2 * double(dim_size(p, p.vars[p.instrs[g.instrs[0]].out].rows, n)) *
                                        double(p.families[p.instrs[g.instrs[0]].family].members.size()) * 8);
      } else if (g.op == Op::Apply || g.op == Op::Trace) {
        // The operator's stored matrices, factors and blocks (src/exec/operators.cpp).
        for (int i : g.instrs) staging = std::max(staging, hold(p.instrs[i].op_node));
      } else if (g.op == Op::Nonlin || g.op == Op::Moment) {
        for (int i : g.instrs) {
          double len = 0;
          for (VarId v : operands(p, p.instrs[i])) len = std::max(len, vector_bytes(p, v, n));
          tape = std::max(tape, double(node_count(p.instrs[i].expr)) * len);
          if (g.op == Op::Moment) staging = std::max(staging, len);  // the array averaged
        }
      }
    }
    peak = std::max(peak, live + pooled() + tape + staging);
    for (const auto& [m, span] : s.matrix_span)
      if (span.second == (int)lv && !s.streamed(p, m)) {
        live -= matrix_bytes(p, m, n, f32);
        pool.emplace(shape(m), matrix_bytes(p, m, n, f32));
      }
    std::erase_if(pool, [&](const auto& e) {
      for (const auto& [m, span] : s.matrix_span)
        if (span.first > (int)lv && !s.streamed(p, m) && shape(m) == e.first) return false;
      return true;
    });
    for (const auto& g : s.levels[lv])
      for (int i : g.instrs) {
        VarId v = p.instrs[i].out;
        if (s.last_use[v] <= (int)lv) live -= vector_bytes(p, v, n);
      }
    for (std::size_t v = 0; v < p.vars.size(); ++v)
      if (s.last_use[v] == (int)lv && p.vars[v].def >= 0 && s.level_of[p.vars[v].def] < (int)lv)
        live -= vector_bytes(p, (VarId)v, n);
  }
  if (s.spectrum_work) {  // after the last level, with what `spectrum` operators read kept alive
    double staging = 0;
    for (const auto& sp : p.spectra) staging = std::max(staging, hold(sp.node));
    for (const auto& sp : p.spectra)
      staging = std::max(staging, s.spectrum_work(dim_size(p, p.op_nodes[sp.node].rows, n)).first);
    peak = std::max(peak, live + pooled() + staging);
  }
  return peak;
}

namespace {

// The Gaussian matrices that may be streamed to save memory: those of the
// program's products and operators, except what an operator forms densely
// (exact traces, dense inverses, spectra by the dense solver).
std::vector<VarId> streamable(const ir::Program& p, const Schedule& s, std::int64_t n) {
  std::vector<int> roots, dense;
  for (const auto& in : p.instrs)
    if (in.op == Op::Apply || in.op == Op::Trace) {
      roots.push_back(in.op_node);
      if (in.op == Op::Trace && dim_size(p, p.op_nodes[in.op_node].rows, n) <= OperatorEngine::kDenseMax)
        dense.push_back(in.op_node);
    }
  if (s.spectrum_work)
    for (const auto& sp : p.spectra) {
      roots.push_back(sp.node);
      if (s.spectrum_work(dim_size(p, p.op_nodes[sp.node].rows, n)).second) dense.push_back(sp.node);
    }
  std::set<VarId> formed = densely_formed(p, roots, dense, n), used;
  for (int r : roots)
    for (VarId m : ir::op_matrices(p, r)) used.insert(m);
  for (const auto& [m, span] : s.matrix_span)
    if (!s.streamed(p, m)) used.insert(m);
  std::vector<VarId> out;
  for (VarId m : used)
    if (!formed.count(m) && p.matrix_of(m).dist == ir::MatrixDist::Gaussian) out.push_back(m);
  return out;
}

}  // namespace

double plan_memory(const ir::Program& p, Schedule& s, std::int64_t width, bool float32, std::size_t limit) {
  double peak = peak_of(p, s, width, float32);
  if (peak <= double(limit)) return peak;
  std::vector<VarId> cand = streamable(p, s, width);
  std::stable_sort(cand.begin(), cand.end(), [&](VarId a, VarId b) {
    return matrix_bytes(p, a, width, false) > matrix_bytes(p, b, width, false);
  });
  for (VarId m : cand) {
    s.forced.insert(m);
    peak = peak_of(p, s, width, float32);
    if (peak <= double(limit)) break;
  }
  return peak;
}

}  // namespace netsor::exec
