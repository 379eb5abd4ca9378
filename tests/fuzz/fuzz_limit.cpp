// libFuzzer target: the limit pass on every input the front end accepts (up to
// a small size). A refusal is a ProgramError; a NaN or infinite value or error
// bar in a result that is not refused is a finding (silent NaN), like a crash.
#include <cmath>
#include <cstdlib>

#include "fuzz_common.hpp"
#include "netsor/limit.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto p = fuzz::compile(data, size);
  if (!p || !fuzz::small(*p)) return 0;
  try {
    netsor::limit::Result r;
    netsor::run_on_big_stack([&] { r = netsor::limit::compute(*p); });
    for (const auto& q : r.quantities)
      if (!std::isfinite(q.estimate.value) || !std::isfinite(q.estimate.abs_error)) std::abort();
  } catch (const netsor::ProgramError& e) {
    (void)netsor::format(e.diagnostic());
  }
  return 0;
}
