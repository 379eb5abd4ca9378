// Small helpers shared by the limit-pass unit tests: the reports of a program
// given as text, and the message of its refusal.
#pragma once

#include <map>
#include <string>

#include "netsor/diagnostics.hpp"
#include "netsor/frontend.hpp"
#include "netsor/limit.hpp"

namespace netsor_test {

inline std::map<std::string, netsor::limit::Estimate> limits_of(const std::string& src,
                                                                 netsor::limit::Options lo = {}) {
  auto p = netsor::compile_string(src, std::string(NETSOR_SOURCE_DIR) + "/tests/unit/snippet.tp");
  std::map<std::string, netsor::limit::Estimate> m;
  for (const auto& q : netsor::limit::compute(p, lo).quantities) m[q.name] = q.estimate;
  return m;
}

// The message of the ProgramError the limit pass refuses src with ("" if none).
inline std::string refusal(const std::string& src) {
  try {
    limits_of(src);
  } catch (const netsor::ProgramError& e) {
    return e.diagnostic().message;
  }
  return "";
}

}  // namespace netsor_test
