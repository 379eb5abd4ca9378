// Shared by the fuzz targets: compile the input as a .tp file, answering bad
// input with a ProgramError (formatted, so the diagnostic code runs too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "netsor/frontend.hpp"

namespace fuzz {

inline std::optional<netsor::ir::Program> compile(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::optional<netsor::ir::Program> p;
  netsor::FrontendOptions o;
  o.max_work = 200000;  // 1/50 of the default: a few ms per input, not seconds
  try {
    netsor::run_on_big_stack([&] { p = netsor::compile_string(text, "fuzz.tp", o); });
  } catch (const netsor::ProgramError& e) {
    (void)netsor::format(e.diagnostic());
  }
  return p;
}

// Small enough that one input stays well inside libFuzzer's time budget: the
// limit pass and the executor are fuzzed for robustness, not for scale.
inline bool small(const netsor::ir::Program& p) {
  return p.instrs.size() <= 40 && p.reports.size() <= 8 && p.matrices.size() <= 6;
}

}  // namespace fuzz
